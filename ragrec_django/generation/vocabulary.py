"""Colour, material and product-type words, with their synonyms, and a matcher for them.

Each vocabulary maps a canonical term to the spellings that mean it; matching
is case-insensitive, on word boundaries, longest spelling first (so "stainless
steel" is one material, not "steel"), and spaces and hyphens inside a spelling
are interchangeable ("off white" is "off-white"). Words that are common in
other senses ("clear", "rust", "stone", "light") are left out on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """A vocabulary term found in text: its canonical name and the words that matched."""

    canonical: str
    text: str
    start: int


class Vocabulary:
    """Canonical terms and their spellings, compiled into one case-insensitive pattern."""

    def __init__(self, spellings: dict[str, tuple[str, ...]]):
        self.spellings = spellings
        self._canonical = {_fold(spelling): name for name, words in spellings.items() for spelling in words}
        alternatives = sorted((word for words in spellings.values() for word in words), key=len, reverse=True)
        self._pattern = re.compile(r"(?<!\w)(?:%s)(?!\w)" % "|".join(map(_loose, alternatives)), re.IGNORECASE)

    def find(self, text: str) -> list[Term]:
        """Every occurrence of a spelling in ``text``, in order."""
        return [Term(self._canonical[_fold(m.group())], m.group(), m.start()) for m in self._pattern.finditer(text)]

    def canonical(self, text: str) -> list[str]:
        """The canonical names of the terms in ``text``, each once, in order of first appearance."""
        return list(dict.fromkeys(term.canonical for term in self.find(text)))


def _loose(spelling: str) -> str:
    """A pattern for ``spelling`` in which spaces and hyphens are interchangeable."""
    return r"[\s-]?".join(r"[\s-]+".join(map(re.escape, part.split())) for part in spelling.split("-"))


def _fold(spelling: str) -> str:
    return re.sub(r"[\s-]+", "", spelling.lower())


COLOURS = Vocabulary(
    {
        "black": ("black", "jet black", "onyx"),
        "white": ("white", "off-white", "snow white"),
        "grey": ("grey", "gray", "charcoal", "graphite", "slate", "anthracite"),
        "silver": ("silver",),
        "gold": ("gold", "golden", "rose gold"),
        "red": ("red", "crimson", "scarlet", "burgundy", "maroon", "wine red"),
        "pink": ("pink", "fuchsia", "magenta"),
        "orange": ("orange", "terracotta"),
        "yellow": ("yellow", "mustard"),
        "green": ("green", "olive", "khaki", "sage", "emerald", "lime"),
        "blue": ("blue", "navy", "cobalt", "azure"),
        "turquoise": ("turquoise", "teal", "aqua", "cyan"),
        "purple": ("purple", "violet", "lilac", "lavender", "plum", "mauve"),
        "brown": ("brown", "tan", "camel", "mocha", "cognac"),
        "beige": ("beige", "cream", "ivory", "ecru", "oatmeal", "taupe"),
        "multicolour": ("multicolour", "multicolor", "multicoloured", "multicolored", "rainbow"),
        "transparent": ("transparent", "see-through"),
    }
)

#: Colours that imply a broader one: data saying "teal" supports a draft saying "blue".
COLOUR_FAMILIES: dict[str, str] = {"turquoise": "blue", "beige": "brown", "silver": "grey", "gold": "yellow"}

MATERIALS = Vocabulary(
    {
        "stainless steel": ("stainless steel", "stainless"),
        "carbon steel": ("carbon steel",),
        "cast iron": ("cast iron",),
        "steel": ("steel",),
        "iron": ("iron",),
        "copper": ("copper",),
        "aluminium": ("aluminium", "aluminum"),
        "brass": ("brass",),
        "bronze": ("bronze",),
        "titanium": ("titanium",),
        "silver": ("silver", "sterling silver"),
        "gold": ("gold", "gold-plated"),
        "zinc": ("zinc",),
        "oak": ("oak",),
        "walnut": ("walnut",),
        "beech": ("beech",),
        "pine": ("pine",),
        "teak": ("teak",),
        "bamboo": ("bamboo",),
        "wood": ("wood", "wooden", "timber", "hardwood"),
        "cotton": ("cotton",),
        "linen": ("linen",),
        "wool": ("wool", "woollen", "woolen", "merino"),
        "cashmere": ("cashmere",),
        "silk": ("silk",),
        "leather": ("leather",),
        "suede": ("suede",),
        "denim": ("denim",),
        "polyester": ("polyester",),
        "nylon": ("nylon",),
        "elastane": ("elastane", "spandex", "lycra"),
        "acrylic": ("acrylic",),
        "viscose": ("viscose", "rayon"),
        "fleece": ("fleece",),
        "down": ("goose down", "duck down"),
        "ceramic": ("ceramic", "ceramics"),
        "porcelain": ("porcelain",),
        "stoneware": ("stoneware",),
        "glass": ("glass",),
        "marble": ("marble",),
        "granite": ("granite",),
        "plastic": ("plastic", "polypropylene", "polycarbonate"),
        "silicone": ("silicone",),
        "rubber": ("rubber",),
        "cork": ("cork",),
        "rattan": ("rattan", "wicker"),
        "paper": ("paper", "cardboard"),
        "carbon fibre": ("carbon fibre", "carbon fiber"),
    }
)

#: Materials that imply a broader one: data saying "stainless steel" supports a draft saying "steel".
MATERIAL_FAMILIES: dict[str, str] = {
    "stainless steel": "steel",
    "carbon steel": "steel",
    "cast iron": "iron",
    "oak": "wood",
    "walnut": "wood",
    "beech": "wood",
    "pine": "wood",
    "teak": "wood",
    "porcelain": "ceramic",
    "stoneware": "ceramic",
    "suede": "leather",
}


def with_families(names: set[str] | list[str], families: dict[str, str]) -> set[str]:
    """``names`` and the broader terms they imply."""
    return set(names) | {families[name] for name in names if name in families}


PRODUCT_TYPES = Vocabulary(
    {
        "jacket": ("jacket", "jackets", "coat", "coats", "parka", "anorak"),
        "shirt": ("shirt", "shirts", "t-shirt", "t-shirts", "blouse"),
        "jumper": ("jumper", "jumpers", "sweater", "sweaters", "hoodie", "hoodies", "cardigan"),
        "trousers": ("trousers", "pants", "jeans", "chinos", "leggings", "shorts"),
        "dress": ("dress", "dresses", "skirt", "skirts"),
        "shoes": ("shoe", "shoes", "boot", "boots", "sneaker", "sneakers", "trainers", "sandals"),
        "hat": ("hat", "hats", "cap", "caps", "beanie"),
        "bag": ("bag", "bags", "backpack", "backpacks", "rucksack", "handbag", "tote", "wallet"),
        "watch": ("watch", "watches"),
        "jewellery": ("ring", "rings", "necklace", "bracelet", "earrings", "jewellery", "jewelry"),
        "mug": ("mug", "mugs", "cup", "cups"),
        "plate": ("plate", "plates", "bowl", "bowls"),
        "pan": ("pan", "pans", "frying pan", "skillet", "saucepan", "wok"),
        "knife": ("knife", "knives"),
        "bottle": ("bottle", "bottles", "flask"),
        "chair": ("chair", "chairs", "stool", "stools", "armchair"),
        "table": ("table", "tables", "desk", "desks"),
        "sofa": ("sofa", "sofas", "couch"),
        "lamp": ("lamp", "lamps"),
        "rug": ("rug", "rugs", "carpet"),
        "cushion": ("cushion", "cushions", "pillow", "pillows", "blanket"),
        "vase": ("vase", "vases"),
        "tool": ("wrench", "spanner", "screwdriver", "hammer", "drill", "pliers"),
        "phone": ("phone", "phones", "smartphone"),
        "headphones": ("headphones", "earphones", "earbuds", "headset"),
        "speaker": ("speaker", "speakers"),
        "camera": ("camera", "cameras"),
    }
)
