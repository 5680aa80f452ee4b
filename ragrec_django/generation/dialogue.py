"""The conversational assistant's state and its rule-based English understanding (pure: no Django).

A conversation carries a ``DialogueState`` across turns. Each shopper message is parsed (``parse``) into an
``Update`` against the current state and the products shown last; ``apply`` folds it into a new state.
Per-product feedback (like, dislike, too expensive, wrong colour) becomes an ``Update`` too (``feedback_update``).

Understood: a product type or category, budgets ("under 40", "between 20 and 50", "cheaper" = under the median
price shown, "more expensive" = over it), colours, materials, sizes ("bigger"/"smaller" step the size),
must-nots ("not pink", "no mugs", "without leather"), "only X", "in another colour", the recipient and occasion
("a gift for my dad"), interests ("he likes hiking"), references to shown products ("the second one", "#3",
"that mug", "more like 2", "less like the first one"), "show me more" (the next page) and "start over".
"""

from __future__ import annotations

import dataclasses
import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..ml.generation import GenerationRequest
from .prompt import _data_rules, clean_text, data_section, parse_budget_and_filters
from .unicode import strip_hidden
from .vocabulary import COLOURS, MATERIALS

#: Products whose exposures a conversation remembers (the most recently shown).
EXPOSURES_KEPT = 200
#: Sizes from small to large; "bigger"/"smaller" step along this scale.
SIZE_SCALE = ("xxs", "xs", "s", "m", "l", "xl", "xxl")
_SIZE_WORDS = {"extra small": "xs", "small": "s", "medium": "m", "large": "l", "extra large": "xl"}
RECIPIENTS = {
    "dad": "dad",
    "father": "dad",
    "daddy": "dad",
    "mum": "mum",
    "mom": "mum",
    "mother": "mum",
    "mummy": "mum",
    "wife": "wife",
    "husband": "husband",
    "son": "son",
    "daughter": "daughter",
    "brother": "brother",
    "sister": "sister",
    "boyfriend": "boyfriend",
    "girlfriend": "girlfriend",
    "partner": "partner",
    "friend": "friend",
    "grandma": "grandma",
    "grandmother": "grandma",
    "granny": "grandma",
    "grandpa": "grandpa",
    "grandfather": "grandpa",
    "granddad": "grandpa",
    "kids": "kids",
    "kid": "kids",
    "children": "kids",
    "child": "kids",
    "baby": "baby",
    "boss": "boss",
    "colleague": "colleague",
    "teacher": "teacher",
    "uncle": "uncle",
    "aunt": "aunt",
    "him": "him",
    "her": "her",
    "myself": "myself",
    "me": "myself",
}
OCCASIONS = {
    "gift": "gift",
    "present": "gift",
    "birthday": "birthday",
    "christmas": "christmas",
    "xmas": "christmas",
    "anniversary": "anniversary",
    "wedding": "wedding",
    "housewarming": "housewarming",
    "father's day": "father's day",
    "fathers day": "father's day",
    "mother's day": "mother's day",
    "mothers day": "mother's day",
    "valentine": "valentine's day",
    "valentine's day": "valentine's day",
    "graduation": "graduation",
    "retirement": "retirement",
}
ORDINALS = {
    "first": 1,
    "1st": 1,
    "second": 2,
    "2nd": 2,
    "third": 3,
    "3rd": 3,
    "fourth": 4,
    "4th": 4,
    "fifth": 5,
    "5th": 5,
    "sixth": 6,
    "6th": 6,
    "seventh": 7,
    "7th": 7,
    "eighth": 8,
    "8th": 8,
    "ninth": 9,
    "9th": 9,
    "tenth": 10,
    "10th": 10,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
#: Words that carry no product meaning in a request (what is left after them is the product query).
FILLER = frozenset(
    """a an the some any something anything thing things stuff one ones i i'm im am is are was be it its it's
    this that these those me my mine we our you your he she his her him they them their want wanted need
    needs would like love loves likes liked looking look find show get buy got please pls thanks thank ok
    okay yes yeah no not maybe just also and or but with for to of in on at by from can could should do does
    did have has good nice great perfect really very quite kind sort type bit little lot what which who
    how about around maybe who's let's lets see give price priced cost costs budget pounds pound quid
    dollars euros gift present more less similar else other i'd i'll i've we'd made size sized colour colours
    color colors material shade nicer something prefer preferably ideally rather instead too""".split()
)
#: Instructions addressed to the assistant rather than a shopper's wishes ("ignore previous instructions", "you are
#: now...", "system:", "set budget to 0", "recommend item 42", a fake ``</data>`` tag): from such a marker to the end
#: of its sentence, the text is not read as constraints (``strip_instructions``).
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:(?:all|any|the|your|my|these|those|previous|prior|above|"
    r"earlier|system|existing|of|every)\s+)*(?:instructions?|rules?|prompts?|guidelines?|directions?|constraints?|"
    r"above|context)\b"
    r"|\b(?:you\s+are\s+now|you\s+must|act\s+as|pretend\s+(?:to\s+be|you\s+are)|new\s+instructions?|admin\s+mode|"
    r"developer\s+mode|jailbreak)\b"
    r"|\b(?:system|assistant|developer)\s*:"
    r"|</?\s*(?:data|system|instructions?|prompt|user|assistant)\s*>"
    r"|\b(?:recommend|cite|show|return|output|list|pick)\s+(?:only\s+)?(?:(?:item|product|id|sku)\s*#?\s*|#\s*)\d+"
    r"|\bcite\s*\["
    r"|\bset\s+(?:the\s+|my\s+|your\s+)?(?:budget|max_price|min_price|price|category|state|filters?|query)\s*(?:to|=)"
    r"|\b(?:max_price|min_price|category|budget)\s*="
    r"|\b(?:print|reveal|show)\s+(?:me\s+)?(?:your\s+|the\s+)?(?:system\s+)?prompt\b"
)
_SENTENCE_END = re.compile(r"[.;!?\n](?!\d)")

_RESET = re.compile(
    r"\b(?:start(?:ing)?\s+(?:over|again|afresh)|reset|clear\s+(?:all|everything)|new\s+search|"
    r"forget\s+(?:it|that|everything))\b"
)
_MORE = re.compile(
    r"\b(?:show\s+(?:me\s+)?(?:some\s+)?more(?!\s+(?:like|expensive|similar))|more\s+(?:please|"
    r"options|results|of\s+(?:those|these|them))|(?:any|anything|something)\s+else|next\s+page|"
    r"see\s+more|other\s+options)\b|^\s*(?:more|next)\s*[.!]?\s*$"
)
_CHEAPER = re.compile(
    r"\b(?:cheaper|less\s+expensive|lower\s+price[sd]?|too\s+(?:expensive|pricey|dear)|"
    r"more\s+affordable|on\s+a\s+budget|budget\s+options?)\b"
)
_PRICIER = re.compile(
    r"\b(?:more\s+expensive|pricier|higher\s+end|more\s+premium|fancier|better\s+quality|"
    r"too\s+cheap)\b"
)
_ANOTHER_COLOUR = re.compile(r"\b(?:(?:in\s+)?(?:an)?other\s+colou?rs?|different\s+colou?rs?|wrong\s+colou?r)\b")
_BIGGER = re.compile(r"\b(?:bigger|larger|size\s+up|one\s+size\s+up)\b")
_SMALLER = re.compile(r"\b(?:smaller|size\s+down|one\s+size\s+down|tinier)\b")
_SIZE = re.compile(
    r"\bsize\s+(xxs|xs|s|m|l|xl|xxl|\d{1,2})\b|\b(xxs|xs|xl|xxl|extra\s+small|extra\s+large)\b|"
    r"\bin\s+(small|medium|large)\b"
)
_INTEREST = re.compile(
    r"\b(?:he|she|they|who|dad|mum|mom)\s+(?:really\s+)?(?:likes?|loves?|enjoys?|is\s+into|"
    r"are\s+into)\s+([a-z][a-z' -]{1,60}?)(?=$|\s*[.,;!?]|\s+(?:but|so|under|over|between)\b)"
)
_RECIPIENT = re.compile(
    r"\bfor\s+(?:my\s+|our\s+|a\s+|the\s+)?(%s)\b" % "|".join(sorted(RECIPIENTS, key=len, reverse=True)) + r"(?:'s)?"
)
_OCCASION = re.compile(r"\b(%s)s?\b" % "|".join(re.escape(o) for o in sorted(OCCASIONS, key=len, reverse=True)))
_POSITION = (
    r"(?:#\s*(\d{1,2})|(?:number|no\.?|item|product)\s*(\d{1,2})|(?:the\s+)?(%s)(?:\s+one)?|(\d{1,2})|"
    r"(?:the\s+)?last(?:\s+one)?|(?:that|this|the)\s+([a-z][a-z-]+))" % "|".join(ORDINALS)
)
_MORE_LIKE = re.compile(r"\b(?:more\s+like|something\s+like|similar\s+to|like|love|prefer|more\s+of)\s+" + _POSITION)
_LESS_LIKE = re.compile(
    r"\b(?:less\s+like|nothing\s+like|(?:i\s+)?(?:don't|do\s+not|dont)\s+(?:like|want)|"
    r"not\s+(?:like|keen\s+on)|hate|dislike|drop|remove|not)\s+" + _POSITION
)
_NEGATION = re.compile(
    r"\b(?:not|no|without|except|nothing|anything\s+but|(?:i\s+)?(?:don't|do\s+not|dont)\s+"
    r"(?:want|like)(?:\s+any)?|never|avoid|hate|dislike)\s+"
    r"(?!(?:more|less|higher|lower)\s+than\b|over\b|above\b|under\b|below\b|too\b|\d)"
)
_PRICE_WORDS = frozenset("under over below above between from cheaper cheap expensive less more than max min".split())
_ONLY = re.compile(r"\bonly\s+(?:in\s+)?")
_WORD = re.compile(r"[a-z][a-z'-]*")


@dataclass(frozen=True)
class ShownItem:
    """A product shown to the shopper, as the parser needs it to resolve references."""

    key: str
    title: str
    category: str = ""
    price: float | None = None
    colour: str = ""
    size: str = ""

    def words(self) -> set[str]:
        return {singular(w) for w in _WORD.findall(("%s %s" % (self.title, self.category)).lower())}


@dataclass
class DialogueState:
    """What the shopper has asked for so far (JSON-ready through ``as_dict``/``from_dict``)."""

    query: str = ""
    category: str = ""
    min_price: float | None = None
    max_price: float | None = None
    colours: list[str] = field(default_factory=list)
    only_colours: bool = False
    materials: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    excluded_colours: list[str] = field(default_factory=list)
    excluded_terms: list[str] = field(default_factory=list)
    excluded_keys: list[str] = field(default_factory=list)
    recipient: str = ""
    occasion: str = ""
    interests: list[str] = field(default_factory=list)
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    #: Products shown since the request last changed (so "show me more" never repeats one).
    seen: list[str] = field(default_factory=list)
    #: The last page shown, in order: what "the second one" and "that mug" refer to.
    shown: list[dict[str, Any]] = field(default_factory=list)
    #: How many answers showed each product (the last ``EXPOSURES_KEPT``): one shown twice without a like makes
    #: way for others (``services.conversation``).
    exposures: dict[str, int] = field(default_factory=dict)
    page: int = 0
    asked: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DialogueState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in (data or {}).items() if key in names})

    def shown_items(self) -> list[ShownItem]:
        names = {f.name for f in dataclasses.fields(ShownItem)}
        return [ShownItem(**{k: v for k, v in entry.items() if k in names}) for entry in self.shown]

    def has_request(self) -> bool:
        """Whether the shopper has said enough to rank on: a product, a budget, a liked product or an interest."""
        return bool(
            self.query
            or self.category
            or self.min_price is not None
            or self.max_price is not None
            or self.liked
            or self.interests
            or self.colours
            or self.materials
        )

    def chips(self) -> list[dict[str, str]]:
        """The constraints as labelled chips for display: {"kind", "value", "label"}."""
        chips = []
        for kind, values, label in (
            ("category", [self.category], "%s"),
            ("query", [self.query], "%s"),
            ("recipient", [self.recipient], "for %s"),
            ("occasion", [self.occasion], "%s"),
            ("colour", self.colours, "only %s" if self.only_colours else "%s"),
            ("material", self.materials, "%s"),
            ("size", self.sizes, "size %s"),
            ("interest", self.interests, "likes %s"),
            ("not_colour", self.excluded_colours, "not %s"),
            ("not_term", self.excluded_terms, "no %s"),
        ):
            chips += [{"kind": kind, "value": v, "label": label % v} for v in values if v]
        if self.min_price is not None:
            chips.append(
                {"kind": "min_price", "value": money(self.min_price), "label": "from %s" % money(self.min_price)}
            )
        if self.max_price is not None:
            chips.append(
                {"kind": "max_price", "value": money(self.max_price), "label": "up to %s" % money(self.max_price)}
            )
        return chips


@dataclass
class Update:
    """What one message or piece of feedback changes. ``None``/empty means "unchanged"."""

    reset: bool = False
    more: bool = False
    query: str | None = None
    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None
    #: Remove a bound (e.g. "more expensive" lifts a maximum below the new minimum).
    clear_min: bool = False
    clear_max: bool = False
    colours: list[str] = field(default_factory=list)
    only_colours: bool = False
    materials: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    excluded_colours: list[str] = field(default_factory=list)
    excluded_terms: list[str] = field(default_factory=list)
    excluded_keys: list[str] = field(default_factory=list)
    recipient: str | None = None
    occasion: str | None = None
    interests: list[str] = field(default_factory=list)
    liked: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)

    def changes_request(self) -> bool:
        """Whether the products asked for change (so pages restart and the seen list is forgotten)."""
        return any(
            getattr(self, f.name) not in (None, False, [], "")
            for f in dataclasses.fields(self)
            if f.name not in ("more",)
        )


# ---------------------------------------------------------------- parsing


def singular(word: str) -> str:
    """An English plural's singular, well enough for product words ("mugs" -> "mug", "glasses" -> "glass")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def strip_instructions(text: str) -> str:
    """``text`` without the instructions it addresses to the assistant (``_INSTRUCTION``): each from its marker to
    the end of its sentence. A shopper's wishes around them are kept."""
    while match := _INSTRUCTION.search(text):
        end = _SENTENCE_END.search(text, match.end())
        text = text[: match.start()] + " " + (text[end.end() :] if end else "")
    return text


def parse(
    text: str,
    state: DialogueState | None = None,
    *,
    categories: Sequence[str] = (),
    attributes: Mapping[str, Sequence[str]] | None = None,
) -> Update:
    """The ``Update`` a shopper's message asks for, given the state (its shown products resolve references),
    the catalogue's category names (a category named in the message becomes the category) and its attribute
    values, {"colour"|"material"|"size": [values]} (a value named in the message is wanted: "350 ml", "EU 42",
    "organic cotton"). Instructions addressed to the assistant are not read (``strip_instructions``)."""
    state = state or DialogueState()
    shown = state.shown_items()
    text = " " + " ".join(strip_instructions(strip_hidden(text).lower().replace("’", "'")).split()) + " "
    update = Update()
    if _RESET.search(text):
        update.reset = True
        text = _RESET.sub(" ", text)
    if _MORE.search(text):
        update.more = True
        text = _MORE.sub(" ", text)
    text = _take_references(text, shown, update)
    text = _take_relative_price(text, shown, state, update)
    text = _take_relative_size(text, shown, state, update)
    if _ANOTHER_COLOUR.search(text):
        update.excluded_colours += (
            _colours_of(shown, update.liked) or state.colours or [s.colour for s in shown[:1] if s.colour]
        )
        text = _ANOTHER_COLOUR.sub(" ", text)
    text = _take_interests(text, update)
    text = _take_negations(text, update)
    text = _take_only(text, update)
    text = _take_catalogue_attributes(text, attributes or {}, update)
    text = _take_sizes(text, update)
    budget = parse_budget_and_filters(text)
    for bound in ("min_price", "max_price"):  # "under 0" is no budget
        if bound in budget and not float(budget[bound]) > 0:
            del budget[bound]
    if "min_price" in budget:
        update.min_price = float(budget["min_price"])
        update.clear_max = (
            "max_price" not in budget and state.max_price is not None and state.max_price < update.min_price
        )
    if "max_price" in budget:
        update.max_price = float(budget["max_price"])
        update.clear_min = (
            "min_price" not in budget and state.min_price is not None and state.min_price > update.max_price
        )
    text = budget["query"]
    update.colours += [c for c in budget.get("colours", []) if c not in update.colours]
    text = _take_recipient_and_occasion(text, update)
    for term in MATERIALS.find(text):
        update.materials.append(term.canonical)
    text = _remove_terms(text, MATERIALS)
    words = [w for w in _WORD.findall(text) if w not in FILLER and w not in ORDINALS and w != "last"]
    category = _category_in(words, categories)
    if category:
        update.category = category
        words = [w for w in words if singular(w) not in {singular(p) for p in category.lower().split()}]
    if words:
        update.query = " ".join(words)
    return update


def _position(match: re.Match, shown: Sequence[ShownItem]) -> ShownItem | None:
    """The shown product a ``_POSITION`` match names (by number, ordinal, "last" or a word of its title)."""
    hash_number, numbered, ordinal, bare, word = match.groups()[-5:]
    if hash_number or numbered or bare:
        index = int(hash_number or numbered or bare)
    elif ordinal:
        index = ORDINALS[ordinal]
    elif word:
        word = singular(word)
        if word in {"one", "thing", "item", "product"}:
            return shown[0] if len(shown) == 1 else None
        matching = [s for s in shown if word in s.words()]
        return matching[0] if matching else None
    else:
        index = len(shown)
    return shown[index - 1] if 1 <= index <= len(shown) else None


def _take_references(text: str, shown: Sequence[ShownItem], update: Update) -> str:
    """Likes and dislikes of shown products ("more like 2", "less like the first one", "not that mug")."""
    for pattern, target in ((_LESS_LIKE, update.disliked), (_MORE_LIKE, update.liked)):

        def resolve(match: re.Match, target=target) -> str:
            item = _position(match, shown)
            if item is None:
                return match.group(0)
            if item.key not in target:
                target.append(item.key)
            return " "

        text = pattern.sub(resolve, text)
    update.excluded_keys += [key for key in update.disliked if key not in update.excluded_keys]
    return text


def _median_price(shown: Sequence[ShownItem]) -> float | None:
    prices = [s.price for s in shown if s.price is not None]
    return float(statistics.median(prices)) if prices else None


def _take_relative_price(text: str, shown: Sequence[ShownItem], state: DialogueState, update: Update) -> str:
    """ "cheaper": under the median price shown (or the current maximum); "more expensive": over it."""
    _relative_price(update, shown, state, cheaper=bool(_CHEAPER.search(text)), pricier=bool(_PRICIER.search(text)))
    return _PRICIER.sub(" ", _CHEAPER.sub(" ", text))


def _relative_price(
    update: Update, shown: Sequence[ShownItem], state: DialogueState, *, cheaper: bool, pricier: bool
) -> None:
    """Set the budget of "cheaper" (under the median price shown, else the current maximum) and "more
    expensive" (over it, else over the current minimum)."""
    reference = _median_price(shown)
    ceiling = reference if reference is not None else state.max_price
    if cheaper and ceiling is not None:
        update.max_price = round(max(ceiling - 0.01, 0.0), 2)
        update.clear_min = (state.min_price or 0) > update.max_price
    floor = reference if reference is not None else state.min_price
    if pricier and floor is not None:
        update.min_price = round(floor + 0.01, 2)
        update.clear_max = state.max_price is not None and state.max_price < update.min_price


def _step_size(size: str, step: int) -> str | None:
    size = _SIZE_WORDS.get(size, size)
    if size in SIZE_SCALE:
        index = SIZE_SCALE.index(size) + step
        return SIZE_SCALE[index] if 0 <= index < len(SIZE_SCALE) else None
    if size.isdigit():
        return str(max(int(size) + 2 * step, 0))
    return None


def _take_relative_size(text: str, shown: Sequence[ShownItem], state: DialogueState, update: Update) -> str:
    """ "bigger"/"smaller": one step from the size asked for, else from the size of the first product shown."""
    for pattern, step in ((_BIGGER, 1), (_SMALLER, -1)):
        if pattern.search(text):
            current = (state.sizes or [s.size.lower() for s in shown if s.size])[:1]
            stepped = _step_size(current[0], step) if current else None
            if stepped:
                update.sizes = [stepped]
            text = pattern.sub(" ", text)
    return text


def _take_sizes(text: str, update: Update) -> str:
    for match in _SIZE.finditer(text):
        size = next(g for g in match.groups() if g)
        size = _SIZE_WORDS.get(" ".join(size.split()), size)
        if size not in update.sizes:
            update.sizes.append(size)
    return _SIZE.sub(" ", text)


#: Where a catalogue attribute value goes in an ``Update``.
_ATTRIBUTE_LISTS = {"colour": "colours", "color": "colours", "material": "materials", "size": "sizes"}


def _take_catalogue_attributes(text: str, attributes: Mapping[str, Sequence[str]], update: Update) -> str:
    """Values of the catalogue's attributes named in ``text`` ("350 ml", "organic cotton"), longest first; a value
    of one or two letters ("S", "XL") only after "size"."""
    values = [
        (str(value).lower(), name) for name, found in attributes.items() if name in _ATTRIBUTE_LISTS for value in found
    ]
    for value, name in sorted(values, key=lambda pair: -len(pair[0])):
        if not value.strip():
            continue
        short = len(value) <= 2 and not any(c.isdigit() for c in value)
        prefix = r"\bsize\s+" if short else r"(?<![\w'-])"
        match = re.search(prefix + re.escape(value) + r"(?![\w'-])", text)
        if match:
            target = getattr(update, _ATTRIBUTE_LISTS[name])
            if value not in target:
                target.append(value)
            text = text[: match.start()] + " " + text[match.end() :]
    return text


def _take_interests(text: str, update: Update) -> str:
    def take(match: re.Match) -> str:
        for part in re.split(r"\s+(?:and|or)\s+", match.group(1)):
            interest = " ".join(w for w in part.split() if w not in FILLER)
            if interest and interest not in update.interests:
                update.interests.append(interest)
        return " "

    return _INTEREST.sub(take, text)


def _take_negations(text: str, update: Update) -> str:
    """ "not pink", "no mugs or cups", "without leather": excluded colours and product words."""
    while True:
        match = _NEGATION.search(text)
        if not match:
            return text
        rest = text[match.end() :]
        tokens = list(re.finditer(r"[a-z][a-z'-]*|,", rest))
        consumed, noun_allowed = 0, True
        for token in tokens:
            word = token.group(0)
            if word in (",", "or", "nor", "and", "a", "an", "any", "the", "that", "this", "those", "these"):
                consumed, noun_allowed = token.end(), noun_allowed or word in (",", "or", "nor", "and")
                continue
            colours, materials = COLOURS.canonical(word), MATERIALS.canonical(word)
            if colours:
                update.excluded_colours += [c for c in colours if c not in update.excluded_colours]
            elif materials:
                update.excluded_terms += [m for m in materials if m not in update.excluded_terms]
            elif noun_allowed and word not in FILLER and word not in _PRICE_WORDS:
                update.excluded_terms.append(singular(word))
                noun_allowed = False
            else:
                break
            consumed = token.end()
        text = text[: match.start()] + " " + rest[consumed:]


def _take_only(text: str, update: Update) -> str:
    """ "only red": the colours wanted, and only those."""
    match = _ONLY.search(text)
    if not match:
        return text
    colours = [term.canonical for term in COLOURS.find(text[match.end() : match.end() + 40])]
    if colours:
        update.colours += [c for c in colours if c not in update.colours]
        update.only_colours = True
    return text[: match.start()] + " " + text[match.end() :]


def _take_recipient_and_occasion(text: str, update: Update) -> str:
    text = " %s " % text.lower()
    recipient = _RECIPIENT.search(text)
    if recipient:
        update.recipient = RECIPIENTS[recipient.group(1)]
        text = text[: recipient.start()] + " " + text[recipient.end() :]
    occasion = _OCCASION.search(text)
    if occasion:
        update.occasion = OCCASIONS[occasion.group(1)]
        text = text[: occasion.start()] + " " + text[occasion.end() :]
    return text


def _remove_terms(text: str, vocabulary) -> str:
    for term in reversed(vocabulary.find(text)):
        text = text[: term.start] + " " + text[term.start + len(term.text) :]
    return text


def _category_in(words: Sequence[str], categories: Sequence[str]) -> str | None:
    """The catalogue category whose name's words (singular) all appear among ``words``, longest name first."""
    present = {singular(w) for w in words}
    for category in sorted(categories, key=len, reverse=True):
        parts = {singular(w) for w in _WORD.findall(category.lower())}
        if parts and parts <= present:
            return category
    return None


def _colours_of(shown: Sequence[ShownItem], keys: Sequence[str]) -> list[str]:
    return [s.colour for s in shown if s.key in keys and s.colour]


# ---------------------------------------------------------------- feedback


FEEDBACK_ACTIONS = ("like", "dislike", "too_expensive", "wrong_colour", "basket")


def feedback_update(action: str, item: ShownItem) -> Update:
    """The ``Update`` of one piece of feedback on a shown product (``FEEDBACK_ACTIONS``)."""
    if action not in FEEDBACK_ACTIONS:
        raise ValueError("Unknown feedback %r; one of %s." % (action, ", ".join(FEEDBACK_ACTIONS)))
    if action in ("like", "basket"):
        return Update(liked=[item.key])
    if action == "dislike":
        return Update(disliked=[item.key], excluded_keys=[item.key])
    if action == "too_expensive":
        return Update(max_price=round(item.price - 0.01, 2)) if item.price is not None else Update()
    return (
        Update(excluded_colours=[item.colour.lower()], excluded_keys=[item.key])
        if item.colour
        else Update(excluded_keys=[item.key])
    )


# ---------------------------------------------------------------- state transitions


def apply(state: DialogueState, update: Update) -> DialogueState:
    """The state after ``update`` (a new object; ``state`` is unchanged)."""
    if update.reset:
        rest = dataclasses.replace(update, reset=False)
        return apply(DialogueState(), rest) if rest.changes_request() or rest.more else DialogueState()
    new = DialogueState.from_dict(state.as_dict())
    if update.query is not None:
        new.query = update.query
    if update.category is not None:
        new.category = update.category
        new.excluded_terms = [
            t for t in new.excluded_terms if t not in {singular(w) for w in _WORD.findall(update.category.lower())}
        ]
    if update.clear_min:
        new.min_price = None
    if update.clear_max:
        new.max_price = None
    if update.min_price is not None:
        new.min_price = update.min_price
    if update.max_price is not None:
        new.max_price = update.max_price
    if update.colours:
        new.colours = list(update.colours) if update.only_colours else _merged(new.colours, update.colours)
        new.only_colours = update.only_colours or new.only_colours
        new.excluded_colours = [c for c in new.excluded_colours if c not in update.colours]
    if update.excluded_colours:
        new.excluded_colours = _merged(new.excluded_colours, update.excluded_colours)
        new.colours = [c for c in new.colours if c not in update.excluded_colours]
        new.only_colours = new.only_colours and bool(new.colours)
    if update.materials:
        new.materials = _merged(new.materials, update.materials)
    if update.sizes:
        new.sizes = list(update.sizes)
    if update.excluded_terms:
        new.excluded_terms = _merged(new.excluded_terms, update.excluded_terms)
        new.materials = [m for m in new.materials if m not in update.excluded_terms]
        if new.query and singular(new.query.split()[-1]) in update.excluded_terms:
            new.query = ""
    for name in ("recipient", "occasion"):
        if getattr(update, name) is not None:
            setattr(new, name, getattr(update, name))
    new.interests = _merged(new.interests, update.interests)
    new.liked = _merged([k for k in new.liked if k not in update.disliked], update.liked)
    new.disliked = _merged([k for k in new.disliked if k not in update.liked], update.disliked)
    new.excluded_keys = _merged([k for k in new.excluded_keys if k not in update.liked], update.excluded_keys)
    if update.more and not update.changes_request():
        new.page += 1
    else:
        new.page, new.seen = 0, []
    return new


def remember_shown(state: DialogueState, shown: Sequence[ShownItem]) -> DialogueState:
    """The state after showing ``shown``: they are the page references resolve against, and seen."""
    new = DialogueState.from_dict(state.as_dict())
    new.shown = [dataclasses.asdict(item) for item in shown]
    new.seen = _merged(new.seen, [item.key for item in shown])
    exposures = {key: count for key, count in new.exposures.items() if key not in {item.key for item in shown}}
    exposures.update({item.key: new.exposures.get(item.key, 0) + 1 for item in shown})
    new.exposures = dict(list(exposures.items())[-EXPOSURES_KEPT:])
    return new


def remove_constraint(state: DialogueState, kind: str, value: str) -> DialogueState:
    """The state without one chip's constraint (``DialogueState.chips`` kinds)."""
    new = DialogueState.from_dict(state.as_dict())
    lists = {
        "colour": "colours",
        "material": "materials",
        "size": "sizes",
        "interest": "interests",
        "not_colour": "excluded_colours",
        "not_term": "excluded_terms",
    }
    if kind in lists:
        setattr(new, lists[kind], [v for v in getattr(new, lists[kind]) if v != value])
    elif kind in ("category", "query", "recipient", "occasion"):
        setattr(new, kind, "")
    elif kind in ("min_price", "max_price"):
        setattr(new, kind, None)
    else:
        raise ValueError("Unknown constraint %r." % kind)
    new.page, new.seen = 0, []
    return new


def _merged(old: Sequence[str], new: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*old, *new]))


def money(value: float) -> str:
    """A price as the shopper writes it: 40, 24.99."""
    return ("%.2f" % value).removesuffix(".00")


# ---------------------------------------------------------------- LLM extraction (JSON validated against a schema)

EXTRACTION_PROMPT_VERSION = "dialogue-extraction-v1"
_TEXT_LISTS = ("colours", "materials", "sizes", "excluded_colours", "excluded_terms", "interests")
#: The JSON an LLM must return for a shopper's message (JSON Schema); ``update_from_json`` enforces it.
EXTRACTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "reset": {"type": "boolean", "description": "the shopper starts over"},
        "more": {"type": "boolean", "description": "the shopper asks for more of the same (next page)"},
        "query": {"type": ["string", "null"], "maxLength": 100, "description": "product words asked for"},
        "category": {"type": ["string", "null"], "description": "one of the catalogue's categories, or null"},
        "min_price": {"type": ["number", "null"], "minimum": 0},
        "max_price": {"type": ["number", "null"], "minimum": 0},
        "cheaper": {"type": "boolean", "description": "cheaper than the products shown"},
        "more_expensive": {"type": "boolean", "description": "more expensive than the products shown"},
        "only_colours": {"type": "boolean", "description": "only the colours listed"},
        **{
            name: {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 10}
            for name in _TEXT_LISTS
        },
        "recipient": {"type": ["string", "null"], "maxLength": 60},
        "occasion": {"type": ["string", "null"], "maxLength": 60},
        "liked_positions": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "maxItems": 10,
            "description": "1-based positions of shown products the shopper wants more like",
        },
        "disliked_positions": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "maxItems": 10,
            "description": "1-based positions of shown products the shopper rejects",
        },
    },
}


def build_extraction_request(
    message: str, state: DialogueState, *, categories: Sequence[str] = ()
) -> GenerationRequest:
    """A ``GenerationRequest`` asking an LLM for the ``EXTRACTION_SCHEMA`` JSON of ``message``. The message,
    the state and the shown products travel as delimited untrusted data (``prompt.data_section``)."""
    shown = [
        {"position": n, "title": s.title, "category": s.category, "price": s.price, "colour": s.colour}
        for n, s in enumerate(state.shown_items(), 1)
    ]
    current = {chip["kind"]: chip["value"] for chip in state.chips()}
    begin, end, section = data_section(
        {
            "shopper_message": clean_text(message, 1000),
            "current_constraints": current,
            "shown_products": shown,
            "categories": list(categories)[:50],
        },
        EXTRACTION_PROMPT_VERSION,
    )
    rules = "\n\n".join(
        [
            "You extract a shopper's constraints from their message for a shop's search.",
            _data_rules(begin, end),
            "Reply with one JSON object and nothing else, valid against this JSON Schema; leave out what the message "
            "does not change:\n" + json.dumps(EXTRACTION_SCHEMA),
        ]
    )
    return GenerationRequest(
        task="extraction",
        messages=[{"role": "system", "content": rules}, {"role": "user", "content": section}],
        facts={"request": clean_text(message, 1000)},
        max_tokens=300,
        temperature=0.0,
    )


def update_from_json(text: str, state: DialogueState, *, categories: Sequence[str] = ()) -> Update:
    """The ``Update`` an LLM's JSON reply describes; ``ValueError`` when it is not valid against
    ``EXTRACTION_SCHEMA`` (not JSON, unknown key, wrong type, a category not in ``categories``, a position not
    shown)."""
    cleaned = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        data = json.loads(cleaned)
    except json.JSONDecodeError as exc:
        raise ValueError("not JSON: %s" % exc) from exc
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    properties = EXTRACTION_SCHEMA["properties"]
    unknown = set(data) - set(properties)
    if unknown:
        raise ValueError("unknown keys: %s" % ", ".join(sorted(unknown)))
    for name, value in data.items():
        _check(name, value, properties[name])
    shown = state.shown_items()
    update = Update(
        reset=bool(data.get("reset")), more=bool(data.get("more")), only_colours=bool(data.get("only_colours"))
    )
    if data.get("query"):
        update.query = " ".join(strip_hidden(data["query"]).lower().split())
    if data.get("category"):
        if data["category"] not in categories:
            raise ValueError("category %r is not one of the catalogue's" % data["category"][:60])
        update.category = data["category"]
    for name in ("min_price", "max_price"):
        if data.get(name) is not None:
            setattr(update, name, float(data[name]))
    if update.min_price is not None and update.max_price is None:
        update.clear_max = state.max_price is not None and state.max_price < update.min_price
    if update.max_price is not None and update.min_price is None:
        update.clear_min = state.min_price is not None and state.min_price > update.max_price
    _relative_price(update, shown, state, cheaper=bool(data.get("cheaper")), pricier=bool(data.get("more_expensive")))
    for name in _TEXT_LISTS:
        values = [" ".join(strip_hidden(v).lower().split()) for v in data.get(name, [])]
        setattr(update, name, [singular(v) if name == "excluded_terms" else v for v in dict.fromkeys(values) if v])
    for name in ("recipient", "occasion"):
        if data.get(name):
            setattr(update, name, " ".join(strip_hidden(data[name]).lower().split()))
    for name, target in (("liked_positions", update.liked), ("disliked_positions", update.disliked)):
        for position in data.get(name, []):
            if position > len(shown):
                raise ValueError("position %d was not shown" % position)
            target.append(shown[position - 1].key)
    update.excluded_keys = list(update.disliked)
    return update


_JSON_TYPES = {
    "boolean": bool,
    "string": str,
    "number": (int, float),
    "integer": int,
    "array": list,
    "null": type(None),
}


def _check(name: str, value: Any, schema: Mapping[str, Any]) -> None:
    """``ValueError`` unless ``value`` is valid against ``schema`` (the subset of JSON Schema used above)."""
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if isinstance(value, bool) and "boolean" not in types or not any(isinstance(value, _JSON_TYPES[t]) for t in types):
        raise ValueError("%s: expected %s" % (name, " or ".join(types)))
    if isinstance(value, str) and len(value) > schema.get("maxLength", 1000):
        raise ValueError("%s: too long" % name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < schema.get("minimum", value):
        raise ValueError("%s: below %s" % (name, schema["minimum"]))
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", 100):
            raise ValueError("%s: too many items" % name)
        for item in value:
            _check(name, item, schema["items"])
