"""What a reviewer must look at in a generated draft before it is published.

A draft may only state what the product's own data states. ``check_draft``
flags colours, materials, sizes, numbers and units that the data never
mentions, banned claims, sentences without citations, citations of fields or
sources that do not exist, and anything sanitising removed. Numbers are
compared by value ("1,200" is 1200, "1.50" is 1.5), and a mixed number is its
own value: "1-9/16" is 25/16, never 9/16.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .prompt import clean_sources
from .sanitise import Sentence, html_to_text, sanitise_output, split_citations, strip_citations
from .unicode import strip_hidden
from .vocabulary import COLOUR_FAMILIES, COLOURS, MATERIAL_FAMILIES, MATERIALS, PRODUCT_TYPES, Vocabulary, with_families

UNITS = {
    "mm": ("mm", "millimetre", "millimetres", "millimeter", "millimeters"),
    "cm": ("cm", "centimetre", "centimetres", "centimeter", "centimeters"),
    "m": ("m", "metre", "metres", "meter", "meters"),
    "km": ("km",),
    "in": ("in", "inch", "inches", '"', "″"),
    "ft": ("ft", "foot", "feet", "'", "′"),
    "g": ("g", "gram", "grams"),
    "kg": ("kg", "kilogram", "kilograms", "kilo", "kilos"),
    "lb": ("lb", "lbs"),
    "oz": ("oz",),
    "ml": ("ml",),
    "cl": ("cl",),
    "l": ("l", "litre", "litres", "liter", "liters"),
    "w": ("w", "watt", "watts"),
    "kw": ("kw",),
    "v": ("v", "volt", "volts"),
    "mah": ("mah",),
    "mb": ("mb",),
    "gb": ("gb",),
    "tb": ("tb",),
    "hz": ("hz",),
    "ghz": ("ghz",),
    "°c": ("°c", "ºc"),
    "°f": ("°f", "ºf"),
    "%": ("%", "percent", "per cent"),
    "£": ("£", "gbp"),
    "$": ("$", "usd"),
    "€": ("€", "eur", "euro", "euros"),
}
_UNIT_NAMES = {spelling: unit for unit, spellings in UNITS.items() for spelling in spellings}
#: Spellings that are units only when written against the number ("12in", '12"'); as words they mean other things.
ATTACHED_ONLY = ("in", '"', "″", "'", "′")
_NUMBER = re.compile(
    r"(?<![\w.,/])(?P<currency>[£$€])?\s?"
    r"(?:(?P<whole>\d+)(?:-|\s)(?P<num>\d+)/(?P<den>\d+)|(?P<fnum>\d+)/(?P<fden>\d+)"
    r"|(?P<dec>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?))"
    r"(?:(?P<attached>%s)|\s?(?P<unit>%s))?(?![\w/])"
    % (
        "|".join(map(re.escape, ATTACHED_ONLY)),
        "|".join(re.escape(s) for s in sorted(set(_UNIT_NAMES) - set(ATTACHED_ONLY), key=len, reverse=True)),
    ),
    re.IGNORECASE,
)
_TIMES = re.compile(r"(?<=\d)\s*[x×]\s*(?=\d)")
_SIZE = re.compile(r"(?<![\w.-])(?:[2-6]?X{1,3}[SL]|XS|S|M|L)(?![\w-])")


@dataclass(frozen=True)
class Flag:
    """Something a reviewer must look at: its kind, a sentence for people, and the offending text."""

    kind: str
    message: str
    span: str


@dataclass(frozen=True)
class Quantity:
    """A number found in text, its unit (canonical, or None) and the text it was read from."""

    value: Fraction
    unit: str | None
    text: str


# --- Public helpers ----------------------------------------------------------------------------


def colour_words(text: str) -> list[str]:
    """Canonical colours named in ``text`` ("Gray" -> "grey"), in order, each once."""
    return COLOURS.canonical(strip_hidden(text))


def type_words(text: str) -> list[str]:
    """Canonical product types named in ``text`` ("trainers" -> "shoes"), in order, each once."""
    return PRODUCT_TYPES.canonical(strip_hidden(text))


def quantities(text: str) -> list[Quantity]:
    """Every number in ``text`` with its unit: fractions, mixed numbers, decimals, percentages, prices."""
    return [Quantity(_value(m), _unit(m), m.group().strip()) for m in _NUMBER.finditer(_TIMES.sub(" x ", text))]


def _value(match: re.Match) -> Fraction:
    if match.group("whole"):
        return int(match.group("whole")) + Fraction(int(match.group("num")), int(match.group("den")) or 1)
    if match.group("fnum"):
        return Fraction(int(match.group("fnum")), int(match.group("fden")) or 1)
    return Fraction(match.group("dec").replace(",", ""))


def _unit(match: re.Match) -> str | None:
    unit = match.group("attached") or match.group("unit") or match.group("currency")
    return _UNIT_NAMES[unit.lower()] if unit else None


# --- The check ---------------------------------------------------------------------------------


def check_draft(
    draft_text: str,
    product: Mapping[str, Any],
    sources: Sequence[Mapping[str, Any]],
    *,
    banned_claims: Iterable[str] = (),
    allow_links: bool = False,
    max_chars: int = 1200,
) -> list[Flag]:
    """The flags a reviewer must clear before ``draft_text`` about ``product`` is published.

    The draft is checked as it would be published (sanitised with
    ``allow_links`` and ``max_chars``, citations removed); anything sanitising
    removed is flagged too.
    """
    sanitised = sanitise_output(draft_text, allow_links=allow_links, max_chars=max_chars)
    sentences, cleaned_sources = split_citations(sanitised.html), clean_sources(sources)
    claims = _claims_text(sentences, cleaned_sources)
    data = _ProductData(product)
    flags = [_removal_flag(entry) for entry in sanitised.removed]
    flags += _vocabulary_flags(claims, data)
    flags += _number_flags(claims, data)
    flags += _size_flags(claims, data)
    flags += _banned_claim_flags(strip_citations(html_to_text(sanitised.html)), banned_claims)
    flags += _citation_flags(sentences, product, cleaned_sources)
    return list(dict.fromkeys(flags))


def _claims_text(sentences: list[Sentence], sources: list[dict[str, Any]]) -> str:
    """The draft's sentences, each without the titles of the sources it cites.

    "Like Steel Socket, it is made of copper [material][source:9]" names
    another product, and says nothing about this one's material by doing so.
    """
    titles = {"source:" + source["id"]: source.get("title", "") for source in sources}
    lines = []
    for sentence in sentences:
        text = sentence.text
        for title in filter(None, (titles.get(name) for name in sentence.citations)):
            text = re.sub(re.escape(title), " ", text, flags=re.IGNORECASE)
        lines.append(text)
    return "\n".join(lines)


class _ProductData:
    """The product's own data as text, numbers and size codes, the reference every claim is held to."""

    def __init__(self, product: Mapping[str, Any]):
        leaves = list(_leaves(product))
        self.text = "\n".join(strip_hidden(value) for value in leaves if isinstance(value, str))
        numbers = [value for value in leaves if _is_number(value)]
        self.quantities = [Quantity(Fraction(str(n)), None, str(n)) for n in numbers] + quantities(self.text)
        self.sizes = {code.upper() for code in re.findall(_SIZE.pattern, self.text, re.IGNORECASE)}
        self.colours = with_families(COLOURS.canonical(self.text), COLOUR_FAMILIES)
        self.materials = with_families(MATERIALS.canonical(self.text), MATERIAL_FAMILIES)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool) and math.isfinite(value)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield value if isinstance(value, (int, float, Decimal, str)) else str(value)


_REMOVALS = {
    "hidden": ("removed_hidden", "the draft contained hidden characters: %s"),
    "image": ("removed_image", "sanitising removed an image: %s"),
    "link": ("removed_link", "sanitising removed a link: %s"),
    "url": ("removed_link", "sanitising removed a URL: %s"),
    "comment": ("removed_markup", "sanitising removed an HTML comment: %s"),
    "markup": ("removed_markup", "sanitising removed markup: %s"),
    "truncated": ("removed_text", "the draft was cut short: %s"),
}


def _removal_flag(entry: str) -> Flag:
    kind, _, detail = entry.partition(": ")
    flag_kind, message = _REMOVALS[kind]
    return Flag(flag_kind, message % detail, detail)


def _vocabulary_flags(published: str, data: _ProductData) -> list[Flag]:
    """Materials, then colours, the draft names but the data never mentions (one flag per word)."""
    flags, seen = [], set()
    for vocabulary, supported, kind in (
        (MATERIALS, data.materials, "unsupported_material"),
        (COLOURS, data.colours, "unsupported_colour"),
    ):
        for term in vocabulary.find(published):
            if term.canonical not in supported and term.text.lower() not in seen:
                seen.add(term.text.lower())
                flags.append(Flag(kind, "draft says %r but the product data never mentions it" % term.text, term.text))
    return flags


def _number_flags(published: str, data: _ProductData) -> list[Flag]:
    """Numbers the data never states, and numbers it states only with another unit."""
    flags = []
    for quantity in quantities(published):
        same_value = [q for q in data.quantities if q.value == quantity.value]
        if not same_value:
            flags.append(
                Flag(
                    "unsupported_number",
                    "draft says %r but the product data never states that number" % quantity.text,
                    quantity.text,
                )
            )
        elif quantity.unit and not any(q.unit in (None, quantity.unit) for q in same_value):
            stated = ", ".join(sorted({q.text for q in same_value}))
            flags.append(
                Flag(
                    "unsupported_unit",
                    "draft says %r but the product data gives it as %s" % (quantity.text, stated),
                    quantity.text,
                )
            )
    return flags


def _size_flags(published: str, data: _ProductData) -> list[Flag]:
    return [
        Flag("unsupported_size", "draft says size %r but the product data never mentions it" % code, code)
        for code in _SIZE.findall(published)
        if code.upper() not in data.sizes
    ]


def _banned_claim_flags(published: str, banned_claims: Iterable[str]) -> list[Flag]:
    claims = {claim: (claim,) for claim in (strip_hidden(c) for c in banned_claims) if claim}
    if not claims:
        return []
    return [
        Flag("banned_claim", "draft makes the banned claim %r" % term.canonical, term.text)
        for term in Vocabulary(claims).find(published)
    ]


def _citation_flags(sentences: list[Sentence], product: Mapping[str, Any], sources: list[dict[str, Any]]) -> list[Flag]:
    """Sentences without citations, and citations of empty or unknown fields and unknown sources."""
    fields = _field_names(product)
    source_ids = {source["id"] for source in sources}
    flags = []
    for sentence in sentences:
        if not sentence.citations and re.search(r"\w", sentence.text):
            flags.append(Flag("uncited_sentence", "this sentence cites no product field or source", sentence.text))
        for name in sentence.citations:
            problem = _citation_problem(name, fields, source_ids)
            if problem:
                flags.append(Flag("bad_citation", problem, "[%s]" % name))
    return flags


def _citation_problem(name: str, fields: dict[str, bool], source_ids: set[str]) -> str | None:
    if name.startswith("source:"):
        source_id = name.split(":", 1)[1]
        return None if source_id in source_ids else "cites source %r, which was not provided" % source_id
    if name.lower() not in fields:
        return "cites the field %r, which the product does not have" % name
    return None if fields[name.lower()] else "cites the field %r, which is empty" % name


def _field_names(product: Mapping[str, Any], prefix: str = "") -> dict[str, bool]:
    """{field name: has a value}, for top-level fields and nested ones (as "parent.child" and "child")."""
    names: dict[str, bool] = {}
    for key, value in product.items():
        path = prefix + str(key).lower()
        filled = value not in (None, "", [], {}, ())
        names[path] = names.get(path, False) or filled
        if isinstance(value, Mapping):
            for child, child_filled in _field_names(value, path + ".").items():
                names[child] = child_filled
                leaf = child.rsplit(".", 1)[1]
                names[leaf] = names.get(leaf, False) or child_filled
    return names
