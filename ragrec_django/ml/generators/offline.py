"""The offline generator: writes only from the request's facts and sources, with no model.

It is the default backend: it needs nothing installed and cannot invent a
claim, because every value it writes is copied from ``request.facts`` or
``request.sources`` and the glue around them is neutral ("It comes in ...",
"It is priced at ..."). The output is deterministic (the same request always
gives the same text) but varies from product to product: the phrasing is
picked by a hash of the facts.

Citation convention (parsed by the downstream checker)
------------------------------------------------------
A citation marker is square brackets around a reference, matched by the
regular expression ``\\[([^\\[\\]]+)\\]``. Values copied into the text never
contain square brackets (they are replaced with parentheses), so every
bracketed span is a marker.

``task="description"``
    Every sentence ends with one or more markers, written just before its
    closing full stop (one space before the first, none between them), naming
    what the sentence rests on::

        Linen Shirt is part of the Shirts range [title][category].
        It comes in Navy and is made from linen [colour][material].
        Like Oxford Shirt, it is made from linen [material][source:sku-2].

    ``[<key>]`` is a key of ``request.facts`` exactly as given (``colour`` or
    ``color``, ``price``...). Values inside a nested dict use a dotted path
    (``[attributes.fit]`` for ``facts["attributes"]["fit"]``). Only keys made
    of word characters, ``:``, ``/`` and ``-`` are written out (others could
    not be cited). ``[source:<id>]`` is the ``id`` of an item of
    ``request.sources`` whose title the sentence mentions, with characters
    other than word characters, ``.``, ``:`` and ``-`` replaced by ``-``.

``task="assistant"``
    ``facts`` is ``{"request": <shopper's text>}`` and the sources are the
    candidate products (``id``, ``title``, ``fields``). The answer recommends
    up to three candidates by title, one sentence each, ending with the
    candidate's id in brackets (``[<id>]``) before the full stop. The sentence
    explains the match only from that candidate's fields (category, colour,
    material, size, price within a budget read from the request...). The
    opening sentence carries no marker. With no usable candidate the answer
    says that nothing matched.

Keys that are identifiers, links, media or free text (``id``, ``url``,
``image``, ``text``, ``description``...) are not written out; other simple
values (strings up to 80 characters, numbers, booleans, lists of those) are.
``max_tokens`` and ``temperature`` are ignored.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from ...generation.checks import quantities
from ...generation.vocabulary import MATERIALS
from ..generation import GenerationError, GenerationRequest, Generator

#: Fact keys (lower case) for each role, in order of preference.
ROLE_KEYS = {
    "title": ("title", "name", "product_name"),
    "brand": ("brand", "manufacturer"),
    "category": ("category", "product_type"),
    "colour": ("colour", "color", "colours", "colors"),
    "material": ("material", "materials", "fabric"),
    "size": ("size", "sizes"),
    "price": ("price",),
    "currency": ("currency",),
}
#: Keys never written out: identifiers, links, media, free text, stock levels, timestamps.
SKIP_KEYS = frozenset(
    """id pk key sku ean gtin upc barcode mpn url link href slug image images image_url thumbnail
    photo photos media video text description long_description short_description summary body html
    content embedding vector group_key stock quantity inventory availability created created_at updated
    updated_at modified timestamp request""".split()
)
#: Longest string value written out as a "simple" attribute.
MAX_VALUE_LENGTH = 80
MAX_TITLE_LENGTH = 200
MAX_ATTRIBUTE_SENTENCES = 3
#: Unit suffixes of numeric keys ("length_cm") written after the number.
UNITS = frozenset("mm cm m km in ft g kg oz lb ml l w v mah".split())
MAX_RELATED_SOURCES = 2
#: Keys of the item's current description, whose materials and measurements a new description keeps.
DESCRIPTION_KEYS = ("description", "long_description", "short_description", "summary", "body")
#: Verbs for measurements kept from the current description, by canonical unit (generation.checks.UNITS).
MEASUREMENT_VERBS = {
    **dict.fromkeys(("mm", "cm", "m", "km", "in", "ft"), "It measures {q}"),
    **dict.fromkeys(("ml", "cl", "l"), "It holds {q}"),
    **dict.fromkeys(("g", "kg", "lb", "oz"), "It weighs {q}"),
    **dict.fromkeys(("w", "kw", "v", "mah"), "It is rated at {q}"),
}
MAX_STATED_MEASUREMENTS = 3
MAX_RECOMMENDATIONS = 3


class FactsGenerator(Generator):
    """Deterministic, model-free text from ``request.facts`` and ``request.sources`` only."""

    def __init__(self):
        pass

    @property
    def version(self) -> str:
        return "offline-facts:1"

    def generate(self, request: GenerationRequest) -> str:
        facts = request.facts if isinstance(request.facts, dict) else {}
        sources = [s for s in (request.sources or []) if isinstance(s, dict)]
        if request.task == "description":
            return describe(facts, sources)
        if request.task == "assistant":
            return answer(facts, sources)
        raise GenerationError(
            "The offline generator cannot do task %r (only 'description' and 'assistant')." % (request.task,)
        )

    def __repr__(self) -> str:
        return "<FactsGenerator>"


# -- description ---------------------------------------------------------------------


def describe(facts: dict[str, Any], sources: list[dict[str, Any]]) -> str:
    """A multi-sentence description of the product in ``facts``, every sentence cited."""
    flat = _flatten(facts)
    rng = _rng(facts, [s.get("id") for s in sources])
    used: set[str] = set()

    def take(role: str, length: int = MAX_VALUE_LENGTH) -> tuple[str, str] | None:
        found = _find_role(flat, role, used, length)
        if found:
            used.add(found[0])
        return found

    title = take("title", MAX_TITLE_LENGTH)
    brand = take("brand")
    category = take("category")
    colour = take("colour")
    material = take("material")
    size = take("size")
    price = take("price")
    currency = take("currency") if price else None

    sentences = [s for s in (_intro(rng, title, brand, category),) if s]
    look = _look(rng, colour, material)
    if look:
        sentences.append(look)
    tail = [s for s in (_size(rng, size), _price(rng, price, currency)) if s]
    rng.shuffle(tail)
    sentences.extend(tail)
    sentences.extend(_attributes(rng, flat, used))
    sentences.extend(_stated_in_description(facts, material))
    related = _related(rng, title, colour, material, category, sources)
    if related:
        sentences.append(related)
    if not sentences:
        raise GenerationError("The product has no facts to describe (no title, category or other simple fields).")
    return " ".join(sentences)


def _intro(rng, title, brand, category) -> str | None:
    if title:
        t = title[1]
        if category and brand:
            pattern = rng.choice(
                [
                    ("{t} by {b} is part of the {c} range", "tbc"),
                    ("From {b} comes {t}, part of the {c} range", "btc"),
                    ("{t} by {b} belongs to the {c} range", "tbc"),
                ]
            )
        elif category:
            pattern = rng.choice(
                [
                    ("{t} is part of the {c} range", "tc"),
                    ("{t} belongs to the {c} range", "tc"),
                    ("From the {c} range comes {t}", "ct"),
                    ("Meet {t}, from the {c} range", "tc"),
                ]
            )
        elif brand:
            pattern = rng.choice([("{t} is by {b}", "tb"), ("From {b} comes {t}", "bt"), ("Meet {t} by {b}", "tb")])
        else:
            pattern = rng.choice([("Meet {t}", "t"), ("Introducing {t}", "t"), ("This is {t}", "t")])
    elif category:
        t = None
        pattern = (
            "It belongs to the {c} range" if not brand else "It is by {b}, from the {c} range",
            "bc" if brand else "c",
        )
    elif brand:
        t = None
        pattern = ("It is by {b}", "b")
    else:
        return None
    template, order = pattern
    parts = {"t": title, "b": brand, "c": category}
    text = template.format(t=t, b=brand[1] if brand else "", c=category[1] if category else "")
    return _sentence(text, [parts[letter][0] for letter in order])


def _look(rng, colour, material) -> str | None:
    if colour and material:
        template, keys = rng.choice(
            [
                ("It comes in {c} and is made from {m}", (colour, material)),
                ("Made from {m}, it comes in {c}", (material, colour)),
                ("It is made of {m} and finished in {c}", (material, colour)),
                ("Its colour is {c} and its material is {m}", (colour, material)),
            ]
        )
        return _sentence(template.format(c=colour[1], m=material[1]), [k[0] for k in keys])
    if colour:
        template = rng.choice(["It comes in {c}", "It is available in {c}", "Its colour is {c}"])
        return _sentence(template.format(c=colour[1]), [colour[0]])
    if material:
        template = rng.choice(["It is made from {m}", "It is made of {m}", "Its material is {m}"])
        return _sentence(template.format(m=material[1]), [material[0]])
    return None


def _size(rng, size) -> str | None:
    if not size:
        return None
    if size[2] > 1:
        template = rng.choice(["It is available in sizes {s}", "It comes in sizes {s}", "Sizes offered are {s}"])
    else:
        template = rng.choice(["It is available in size {s}", "It comes in size {s}", "Its size is {s}"])
    return _sentence(template.format(s=size[1]), [size[0]])


def _price(rng, price, currency) -> str | None:
    if not price:
        return None
    amount = price[1]
    keys = [price[0]]
    if currency:
        code = currency[1]
        amount = "%s %s" % (amount, code) if code[:1].isalnum() else "%s%s" % (code, amount)
        keys.append(currency[0])
    template = rng.choice(["It is priced at {p}", "It costs {p}", "It sells for {p}", "Its price is {p}"])
    return _sentence(template.format(p=amount), keys)


def _attributes(rng, flat: dict[str, Any], used: set[str]) -> list[str]:
    clauses = []
    for path, value in flat.items():
        if path in used or _leaf(path).lower() in SKIP_KEYS or _leaf(path).lower() in _ROLE_KEY_SET:
            continue
        clause = _attribute_clause(_leaf(path), value)
        if clause:
            clauses.append((clause, path))
    sentences = []
    for start in range(0, min(len(clauses), 2 * MAX_ATTRIBUTE_SENTENCES), 2):
        group = clauses[start : start + 2]
        joiner = rng.choice([", and ", "; "]) if len(group) == 2 else ""
        text = joiner.join(clause for clause, _ in group)
        sentences.append(_sentence(text[:1].upper() + text[1:], [path for _, path in group]))
    return sentences


def _attribute_clause(name: str, value: Any) -> str | None:
    label = _humanize(name)
    if not label:
        return None
    if isinstance(value, bool):
        lowered = label.lower()
        if lowered.startswith("is "):
            label = label[3:]
        if lowered.startswith("has "):
            return "it %s %s" % ("has" if value else "does not have", label[4:])
        return "it is %s%s" % ("" if value else "not ", label)
    rendered = _render(value, MAX_VALUE_LENGTH)
    if rendered is None:
        return None
    text, count = rendered
    unit = label.rsplit(" ", 1)[-1] if " " in label else None
    if unit in UNITS and isinstance(value, (int, float, Decimal)):  # "length_cm": 180 -> "its length is 180 cm"
        return "its %s is %s %s" % (label[: -len(unit) - 1], text, unit)
    return "its %s %s %s" % (label, "include" if count > 1 else "is", text)


def _stated_in_description(facts: dict[str, Any], material) -> list[str]:
    """Materials and measurements the item's current description states, so a new one does not drop them.

    "A 400 ml ceramic mug" gives "It is made from ceramic [description]." and "It holds 400 ml
    [description]."; each is written as the description spells it. The materials are taken only when the
    facts name no material (the field is the product's data; the text may be older).
    """
    key = next((k for k in DESCRIPTION_KEYS if isinstance(facts.get(k), str) and facts[k].strip()), None)
    if key is None:
        return []
    text = " ".join(facts[key].replace("[", "(").replace("]", ")").split())
    materials = {}
    for term in [] if material else MATERIALS.find(text):  # a material fact wins over older free text
        materials.setdefault(term.canonical, term.text.lower())
    sentences = [_sentence("It is made from %s" % _join(list(materials.values())), [key])] if materials else []
    stated = dict.fromkeys(q.text for q in quantities(text) if q.unit in MEASUREMENT_VERBS)
    for quantity in list(stated)[:MAX_STATED_MEASUREMENTS]:
        unit = next(q.unit for q in quantities(quantity))
        sentences.append(_sentence(MEASUREMENT_VERBS[unit].format(q=quantity), [key]))
    return sentences


def _related(rng, title, colour, material, category, sources) -> str | None:
    own_title = _norm(title[1]) if title else None
    usable = []
    seen = set()
    for source in sources:
        source_id = _clean_id(source.get("id"))
        source_title = _clean_str(source.get("title"), MAX_TITLE_LENGTH)
        if not source_id or not source_title or source_id in seen or _norm(source_title) == own_title:
            continue
        seen.add(source_id)
        usable.append((source_id, source_title, source.get("fields") if isinstance(source.get("fields"), dict) else {}))
    if not usable:
        return None
    # A value the product shares with a source: "Like X, it is made from linen."
    for role, fact, template in (
        ("material", material, "Like {s}, it is made from {v}"),
        ("colour", colour, "Like {s}, it comes in {v}"),
        ("category", category, "Like {s}, it belongs to the {v} range"),
    ):
        if not fact:
            continue
        for source_id, source_title, fields in usable:
            found = _find_role(_flatten(fields), role, set(), MAX_VALUE_LENGTH)
            if found and _norm(found[1]) == _norm(fact[1]):
                return _sentence(template.format(s=source_title, v=fact[1]), [fact[0], "source:" + source_id])
    picked = usable[:MAX_RELATED_SOURCES]
    titles = _join([source_title for _, source_title, _ in picked])
    template = rng.choice(["It pairs with {s}", "Related pieces include {s}", "You may also like {s}"])
    return _sentence(template.format(s=titles), ["source:" + source_id for source_id, _, _ in picked])


# -- assistant -----------------------------------------------------------------------

_BUDGET = re.compile(
    r"(?:under|below|less than|cheaper than|max(?:imum)?|up to|at most|no more than|within|budget(?: of| is)?|<=?)"
    r"\s*(?:[$€£]\s*|(?:usd|eur|gbp|chf)\s+)?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    # "up to 3 items", "within 2 days", "under 10 kg" are not budgets.
    r"(?!\s*(?:%|cm|mm|m|km|kg|g|lbs?|oz|ml|l|w|gb|tb|in|inch(?:es)?|ft|days?|weeks?|months?|years?|hours?|"
    r"minutes?|items?|pieces?|pcs|people|persons|guests|kids|seats?)\b)(?!\d|[.,]\d|%)",
    re.IGNORECASE,
)


def answer(facts: dict[str, Any], sources: list[dict[str, Any]]) -> str:
    """A short shopping answer recommending up to three of ``sources``, each cited as ``[id]``."""
    request_text = _clean_str(facts.get("request"), 500) or ""
    budget_match = _BUDGET.search(request_text)
    budget_text = budget_match.group(1) if budget_match else None
    budget = Decimal(budget_text.replace(",", "")) if budget_text else None
    wanted = _tokens(request_text)
    rng = _rng(facts, [s.get("id") for s in sources])

    candidates = []
    seen = set()
    for source in sources:
        source_id = _clean_id(source.get("id"))
        source_title = _clean_str(source.get("title"), MAX_TITLE_LENGTH)
        if not source_id or not source_title or source_id in seen:
            continue
        seen.add(source_id)
        fields = dict(source.get("fields")) if isinstance(source.get("fields"), dict) else {}
        for role in ("price", "category"):  # candidates may carry these at the top level too
            if role not in fields and source.get(role) is not None:
                fields[role] = source[role]
        flat = _flatten(fields)
        price_fact = _find_role(flat, "price", set(), MAX_VALUE_LENGTH)
        amount = _decimal(price_fact[1]) if price_fact else None
        candidates.append({"id": source_id, "title": source_title, "flat": flat, "price": price_fact, "amount": amount})

    if not candidates:
        if request_text:
            return "Sorry, nothing matched your request for \u201c%s\u201d." % request_text
        return "Sorry, nothing matched your request."

    if budget is not None:
        within = [c for c in candidates if c["amount"] is None or c["amount"] <= budget]
        if not within:
            priced = [c for c in candidates if c["amount"] is not None]
            cheapest = min(priced, key=lambda c: c["amount"])
            return "Nothing matched within your budget of %s. The closest is %s at %s [%s]." % (
                budget_text,
                cheapest["title"],
                cheapest["price"][1],
                cheapest["id"],
            )
        candidates = within

    # The retrieval order, except that candidates matching more of the request's words come first.
    candidates.sort(key=lambda c: -len(_matched_roles(c["flat"], wanted)))
    picked = candidates[:MAX_RECOMMENDATIONS]
    if len(picked) == 1:
        opening = rng.choice(["Here is a match for your request.", "This fits your request."])
    else:
        opening = rng.choice(
            ["Here are some options for your request.", "These fit your request.", "You could consider these."]
        )
    lines = [opening]
    for candidate in picked:
        lines.append(_recommendation(rng, candidate, wanted, budget_text, budget))
    return " ".join(lines)


#: Candidate fields that can explain a recommendation: (role, clause when the request asks for it, clause otherwise).
RECOMMENDATION_CLAUSES = (
    ("category", "is from the {v} range you asked about", "is from the {v} range"),
    ("colour", "comes in {v} as requested", "comes in {v}"),
    ("material", "is made from {v} as requested", "is made from {v}"),
    ("size", "comes in size {v} as requested", "comes in size {v}"),
    ("brand", "is by {v} as requested", "is by {v}"),
)


def _matched_roles(flat: dict[str, Any], wanted: set[str]) -> list[str]:
    """Roles whose value the request asks for (all of the value's words appear in the request)."""
    matched = []
    for role, _, _ in RECOMMENDATION_CLAUSES:
        found = _find_role(flat, role, set(), MAX_VALUE_LENGTH)
        if found:
            tokens = _tokens(found[1])
            if tokens and tokens <= wanted:
                matched.append(role)
    return matched


def _recommendation(rng, candidate, wanted: set[str], budget_text, budget) -> str:
    flat = candidate["flat"]
    asked = set(_matched_roles(flat, wanted))
    matched, other = [], []
    for role, phrase_match, phrase in RECOMMENDATION_CLAUSES:
        found = _find_role(flat, role, set(), MAX_VALUE_LENGTH)
        if found:
            (matched if role in asked else other).append((phrase_match if role in asked else phrase).format(v=found[1]))
    # What matches the request first, then other facts, the price (and budget) last.
    clauses = matched[:2]
    clauses += other[: max(0, 2 - len(clauses))]
    if candidate["price"]:
        price = candidate["price"][1]
        if budget is not None and candidate["amount"] is not None:
            template = "costs %s, within your budget of %s"
            if candidate["amount"] < budget:
                template = rng.choice([template, "is priced at %s, under your budget of %s"])
            clauses.append(template % (price, budget_text))
        else:
            clauses.append("costs %s" % price)
    if not clauses:
        return "%s is another option [%s]." % (candidate["title"], candidate["id"])
    return "%s %s [%s]." % (candidate["title"], _join(clauses), candidate["id"])


# -- helpers -------------------------------------------------------------------------

_ROLE_KEY_SET = frozenset(key for keys in ROLE_KEYS.values() for key in keys)
#: Fact keys that can be cited (the dot is the path separator of nested keys).
_KEY = re.compile(r"[\w:/-]+")
_ID_UNSAFE = re.compile(r"[^\w.:-]+")


def _clean_id(value: Any) -> str | None:
    """A source id safe inside ``[source:<id>]`` / ``[<id>]``: word characters, ".", ":" and "-"."""
    if value is None or isinstance(value, (bool, dict, list, tuple, set)):
        return None
    return _ID_UNSAFE.sub("-", str(value)).strip("-")[:100] or None


def _flatten(data: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (two levels deep), keys in their original order."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            continue  # a key that a citation marker cannot name (spaces, dots, brackets...)
        path = prefix + key
        if isinstance(value, dict):
            if depth < 2 and key.lower() not in SKIP_KEYS:
                flat.update(_flatten(value, path + ".", depth + 1))
        else:
            flat[path] = value
    return flat


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _find_role(flat: dict[str, Any], role: str, used: set[str], length: int) -> tuple[str, str, int] | None:
    """(key path, rendered value, number of values) of the first fact filling ``role``."""
    names = ROLE_KEYS[role]
    for depth_first in (True, False):  # top-level keys win over nested ones
        for name in names:
            for path, value in flat.items():
                if path in used or ("." in path) == depth_first or _leaf(path).lower() != name:
                    continue
                rendered = _render(value, length)
                if rendered:
                    return path, rendered[0], rendered[1]
    return None


def _render(value: Any, length: int) -> tuple[str, int] | None:
    """A value as text ("a, b and c" for lists) with the number of items, or None if not simple."""
    if isinstance(value, (list, tuple, set, frozenset)):
        items = []
        for item in value if not isinstance(value, (set, frozenset)) else sorted(value, key=str):
            text = _scalar(item, length)
            if text and text not in items:
                items.append(text)
        if not items or len(items) > 8:
            return None
        return _join(items), len(items)
    text = _scalar(value, length)
    return (text, 1) if text else None


def _scalar(value: Any, length: int) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else None
    return _clean_str(value, length)


def _clean_str(value: Any, length: int) -> str | None:
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = " ".join(value.split()).replace("[", "(").replace("]", ")")
    if not text or len(text) > length:
        return None
    return text


def _decimal(text: str) -> Decimal | None:
    match = re.search(r"\d+(?:\.\d+)?", text.replace(",", ""))
    if not match:
        return None
    try:
        return Decimal(match.group(0))
    except InvalidOperation:
        return None


def _humanize(name: str) -> str:
    return " ".join(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).replace("_", " ").replace("-", " ").split()).lower()


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(text: str, keys: Iterable[str]) -> str:
    markers = "".join("[%s]" % key for key in dict.fromkeys(keys))
    text = text.rstrip()
    return "%s %s." % (text, markers) if markers else text + "."


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _tokens(text: str) -> set[str]:
    """Lower-case word stems ("Dresses" -> "dress") for matching field values against the request."""
    stems = set()
    for word in re.findall(r"[^\W_]+", text.lower()):
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 4 and word.endswith(("sses", "xes", "zes", "ches", "shes")):
            word = word[:-2]
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        stems.add(word)
    return stems


def _rng(facts: dict[str, Any], ids: list[Any]) -> random.Random:
    """A random generator seeded by the request's content: varied across products, fixed for each."""
    try:
        payload = json.dumps([facts, ids], sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # keys of mixed types cannot be sorted
        payload = repr([sorted(map(repr, facts.items())), ids])
    return random.Random(int(hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16], 16))
