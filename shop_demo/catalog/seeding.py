"""A deterministic demo catalogue: the same ``seed`` and ``count`` always give the same products.

``generate(count, seed)`` returns plain ``ProductSpec`` values (no database):
products come in families (a parent and sometimes variants in other colours
or sizes), spread over the categories in turn, so that even a small count
covers every category. A larger count with the same seed extends a smaller
one: the first N products are the same (a family cut short at N is completed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils.text import slugify

from .imaging import COLOURS, ImageStyle, random_style


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    name: str
    noun: str
    shape: str  # key of imaging.SHAPES
    materials: tuple[str, ...]
    sizes: tuple[str, ...]
    price: tuple[int, int]
    colours: tuple[str, ...]
    intro: tuple[str, ...]  # first sentence templates
    size_sentence: str
    features: tuple[str, ...]


ALL_COLOURS = tuple(COLOURS)

CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "mugs",
        "Mugs",
        "Mug",
        "mug",
        ("ceramic", "stoneware", "porcelain", "enamel"),
        ("250 ml", "350 ml", "450 ml"),
        (8, 34),
        ALL_COLOURS,
        (
            "The {line} mug is made from {material} with a glossy {colour} glaze.",
            "A {colour} {material} mug from our {line} range, thrown for everyday coffee and tea.",
        ),
        "It holds {size}, enough for a proper coffee or a large cup of tea.",
        (
            "Dishwasher and microwave safe.",
            "The wide handle fits two fingers comfortably.",
            "It stacks neatly in the cupboard.",
            "The thick walls keep drinks hot for longer.",
            "Each glaze is fired twice for a deep, even colour.",
        ),
    ),
    CategorySpec(
        "t-shirts",
        "T-shirts",
        "T-shirt",
        "tshirt",
        ("organic cotton", "cotton", "linen", "bamboo jersey"),
        ("XS", "S", "M", "L", "XL"),
        (15, 45),
        ALL_COLOURS,
        (
            "The {line} t-shirt is cut from soft {material} and dyed a {colour} that lasts wash after wash.",
            "A {colour} crew-neck t-shirt in {material} from the {line} collection.",
        ),
        "This one is size {size}, with a regular fit and short sleeves.",
        (
            "Pre-shrunk, so it keeps its shape.",
            "The ribbed collar does not stretch out.",
            "Side-seamed for a clean drape.",
            "Machine wash at 30 degrees.",
            "Breathable enough for summer, heavy enough to layer.",
        ),
    ),
    CategorySpec(
        "sneakers",
        "Sneakers",
        "Sneaker",
        "sneaker",
        ("canvas", "leather", "suede", "recycled mesh"),
        ("EU 38", "EU 39", "EU 40", "EU 41", "EU 42", "EU 43", "EU 44", "EU 45"),
        (45, 140),
        ALL_COLOURS,
        (
            "The {line} sneaker pairs a {colour} {material} upper with a cushioned rubber sole.",
            "Low-top {colour} sneakers in {material}, part of the {line} line.",
        ),
        "This pair is size {size}; the fit is true to size.",
        (
            "The padded collar is kind to ankles.",
            "A removable insole supports the arch.",
            "Flat cotton laces come in a matching colour.",
            "The grippy sole works on wet pavements.",
            "Light enough to wear all day.",
        ),
    ),
    CategorySpec(
        "backpacks",
        "Backpacks",
        "Backpack",
        "backpack",
        ("nylon", "canvas", "recycled polyester", "waxed cotton"),
        ("15 L", "20 L", "28 L"),
        (35, 120),
        ALL_COLOURS,
        (
            "The {line} backpack is made of water-resistant {colour} {material}.",
            "A roomy {colour} backpack in {material} from our {line} range.",
        ),
        "It carries {size}, with a padded sleeve for a 15-inch laptop.",
        (
            "A front pocket keeps keys and cards to hand.",
            "Padded shoulder straps spread the weight.",
            "The top handle makes it easy to grab.",
            "Zips are YKK and built to last.",
            "A luggage strap slides over a suitcase handle.",
        ),
    ),
    CategorySpec(
        "lamps",
        "Lamps",
        "Table Lamp",
        "lamp",
        ("brass", "ceramic", "powder-coated steel", "linen"),
        ("small", "medium", "large"),
        (29, 180),
        ALL_COLOURS,
        (
            "The {line} table lamp has a {colour} {material} shade and base.",
            "A {colour} table lamp in {material}, designed for the {line} collection.",
        ),
        "This is the {size} version, made for a bedside table or a desk.",
        (
            "It takes a standard E27 bulb.",
            "The shade spreads a soft, warm light.",
            "An inline switch sits on the fabric cable.",
            "A weighted base keeps it steady.",
            "Pair two for a symmetrical sideboard.",
        ),
    ),
    CategorySpec(
        "chairs",
        "Chairs",
        "Chair",
        "chair",
        ("oak", "walnut", "steel", "moulded plastic"),
        ("dining height", "counter height", "bar height"),
        (60, 320),
        ALL_COLOURS,
        (
            "The {line} chair is built from {material} and finished in {colour}.",
            "A {colour} {material} chair with a straight back from the {line} range.",
        ),
        "This is the {size} model.",
        (
            "The seat is shaped for long dinners.",
            "It arrives fully assembled.",
            "Felt pads protect wooden floors.",
            "It stacks up to four high.",
            "The finish wipes clean with a damp cloth.",
        ),
    ),
    CategorySpec(
        "watches",
        "Watches",
        "Watch",
        "watch",
        ("stainless steel", "titanium", "leather strap", "silicone strap"),
        ("36 mm", "40 mm", "42 mm"),
        (70, 450),
        ALL_COLOURS,
        (
            "The {line} watch has a {colour} {material} and a clean white dial.",
            "A {colour} analogue watch with a {material}, from the {line} collection.",
        ),
        "The case measures {size} across.",
        (
            "Water resistant to 50 metres.",
            "A Japanese quartz movement keeps accurate time.",
            "Sapphire-coated glass resists scratches.",
            "The strap changes without tools.",
            "Luminous hands are easy to read at night.",
        ),
    ),
    CategorySpec(
        "hats",
        "Hats",
        "Hat",
        "hat",
        ("wool felt", "cotton twill", "straw", "recycled felt"),
        ("S", "M", "L"),
        (20, 90),
        ALL_COLOURS,
        (
            "The {line} hat is shaped from {colour} {material} with a wide brim.",
            "A {colour} {material} hat with a contrast band from the {line} range.",
        ),
        "This is size {size}; an inner band adjusts the fit.",
        (
            "The brim shades eyes and neck.",
            "It packs flat and springs back into shape.",
            "A tonal band circles the crown.",
            "Light enough for long walks.",
            "Each one is blocked by hand.",
        ),
    ),
    CategorySpec(
        "bottles",
        "Bottles",
        "Water Bottle",
        "bottle",
        ("stainless steel", "glass", "Tritan plastic", "aluminium"),
        ("500 ml", "750 ml", "1 L"),
        (12, 45),
        ALL_COLOURS,
        (
            "The {line} bottle is made of {material} with a {colour} finish.",
            "A {colour} reusable water bottle in {material} from our {line} range.",
        ),
        "It holds {size}.",
        (
            "The leak-proof cap is safe in a bag.",
            "Keeps drinks cold for 24 hours.",
            "BPA free and easy to clean.",
            "The wide mouth takes ice cubes.",
            "A carry loop clips onto a backpack.",
        ),
    ),
    CategorySpec(
        "plants",
        "Plants",
        "Potted Plant",
        "plant",
        ("terracotta", "ceramic", "concrete", "glazed stoneware"),
        ("small", "medium", "large"),
        (14, 85),
        (
            "red",
            "orange",
            "yellow",
            "blue",
            "navy",
            "pink",
            "brown",
            "black",
            "white",
            "grey",
            "beige",
            "teal",
            "purple",
        ),
        (
            "The {line} plant is a leafy green houseplant in a {colour} {material} pot.",
            "A green potted plant from the {line} range, planted in a {colour} {material} pot.",
        ),
        "This is the {size} size, pot included.",
        (
            "It is happy in bright, indirect light.",
            "Water it when the top of the soil is dry.",
            "The pot has a drainage hole and a saucer.",
            "It cleans the air in a bedroom or office.",
            "Easy to care for, even for beginners.",
        ),
    ),
    CategorySpec(
        "umbrellas",
        "Umbrellas",
        "Umbrella",
        "umbrella",
        ("nylon canopy", "polyester canopy", "pongee canopy", "recycled canopy"),
        ("compact", "standard", "golf"),
        (18, 70),
        ALL_COLOURS,
        (
            "The {line} umbrella opens into a {colour} {material} on a steel frame.",
            "A {colour} umbrella with a {material} and a curved handle, from the {line} range.",
        ),
        "This is the {size} size.",
        (
            "Fibreglass ribs flex in strong wind.",
            "The canopy sheds water quickly.",
            "A wooden crook handle is comfortable to hold.",
            "It closes with a press-stud strap.",
            "Comes with a matching sleeve.",
        ),
    ),
    CategorySpec(
        "headphones",
        "Headphones",
        "Headphones",
        "headphones",
        ("aluminium", "matte plastic", "vegan leather", "recycled plastic"),
        ("over-ear", "on-ear"),
        (49, 350),
        ALL_COLOURS,
        (
            "The {line} headphones come in {colour} {material} with soft ear cushions.",
            "Wireless {colour} headphones in {material} from the {line} range.",
        ),
        "This is the {size} model.",
        (
            "The battery lasts for 40 hours.",
            "Active noise cancelling blocks out the commute.",
            "They fold flat into the case.",
            "A 3.5 mm cable is included for wired listening.",
            "Memory-foam cushions stay comfortable for hours.",
        ),
    ),
)

LINES = (
    "Harbour",
    "Nordic",
    "Alpine",
    "Meadow",
    "Urban",
    "Coastal",
    "Summit",
    "Cedar",
    "Aurora",
    "Atlas",
    "Ember",
    "Fjord",
    "Granite",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Orbit",
    "Pebble",
    "Quarry",
    "Rowan",
    "Sierra",
    "Tundra",
    "Willow",
    "Zephyr",
    "Birch",
    "Canyon",
    "Delta",
    "Echo",
    "Falcon",
    "Glacier",
    "Haven",
    "Iris",
    "Jasper",
    "Lagoon",
    "Mesa",
    "Nova",
    "Prairie",
    "Ridge",
    "Terra",
    "Vale",
    "Wren",
    "Moss",
    "Solstice",
)
STYLES = ("Classic", "Everyday", "Studio", "Travel", "Heritage", "Minimal", "Essential", "Signature", "Field", "Loft")
CLOSERS = (
    "Ships in plastic-free packaging.",
    "Covered by our two-year guarantee.",
    "Free returns within 30 days.",
    "Designed in our studio and made in small batches.",
    "Part of our responsibly sourced range.",
)


@dataclass(frozen=True)
class ProductSpec:
    slug: str
    title: str
    description: str
    category: CategorySpec
    price: Decimal
    stock: int
    colour: str
    material: str
    size: str
    is_active: bool
    parent_slug: str | None  # None for a parent or a standalone product
    style: ImageStyle = field(default_factory=ImageStyle)

    @property
    def image_name(self) -> str:
        return "products/%s.jpg" % self.slug


def _price(rng: random.Random, low: int, high: int) -> Decimal:
    whole = rng.randint(low, high)
    return Decimal("%d.%s" % (whole, rng.choice(("00", "50", "95", "99"))))


def _description(rng, category: CategorySpec, line: str, colour: str, material: str, size: str) -> str:
    values = {"line": line, "colour": colour, "material": material, "size": size}
    sentences = [rng.choice(category.intro).format(**values), category.size_sentence.format(**values)]
    sentences += rng.sample(category.features, 2)
    sentences.append(rng.choice(CLOSERS))
    return " ".join(sentences)


def generate(count: int, seed: int = 42) -> list[ProductSpec]:
    """``count`` product specs, deterministic for (count, seed); parents come before their variants."""
    rng = random.Random(seed)
    products: list[ProductSpec] = []
    used_titles: set[str] = set()
    used_slugs: set[str] = set()
    family_number = 0
    while len(products) < count:
        category = CATEGORIES[family_number % len(CATEGORIES)]
        family_number += 1
        line, style = rng.choice(LINES), rng.choice(STYLES)
        material = rng.choice(category.materials)
        base_price = _price(rng, *category.price)
        # About a third of the families have variants: other colours, or other sizes of one colour.
        members = 1 if rng.random() < 0.65 else rng.randint(2, 4)
        if members > 1 and rng.random() < 0.5 and len(category.sizes) >= members:
            colours = [rng.choice(category.colours)] * members
            sizes = rng.sample(category.sizes, members)
        else:
            colours = rng.sample(category.colours, members)
            sizes = [rng.choice(category.sizes)] * members
        by_size = len(set(sizes)) > 1
        parent_slug = None
        for index, (colour, size) in enumerate(zip(colours, sizes)):
            title = "%s %s %s %s %s" % (line, style, colour.capitalize(), material.title(), category.noun)
            if by_size:
                title = "%s, %s" % (title, size)
            if title in used_titles:
                title = "%s (%s)" % (title, line[:2].upper() + str(family_number))
            used_titles.add(title)
            slug = base_slug = slugify(title)[:200]
            suffix = 2
            while slug in used_slugs:
                slug, suffix = "%s-%d" % (base_slug, suffix), suffix + 1
            used_slugs.add(slug)
            # Larger sizes cost a little more.
            step = category.sizes.index(size) - min(category.sizes.index(s) for s in sizes) if by_size else 0
            price = base_price + 2 * step
            stock = 0 if rng.random() < 0.08 else rng.randint(1, 240)
            products.append(
                ProductSpec(
                    slug=slug,
                    title=title,
                    description=_description(rng, category, line, colour, material, size),
                    category=category,
                    price=price,
                    stock=stock,
                    colour=colour,
                    material=material,
                    size=size,
                    is_active=rng.random() >= 0.02,
                    parent_slug=parent_slug,
                    style=random_style(rng),
                )
            )
            if index == 0:
                parent_slug = slug
    return products[:count]
