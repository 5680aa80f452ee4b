"""Query understanding: price phrases, catalogue attribute words and synonyms in a search query (pure, no Django).

    vocabulary = Vocabulary.build({"category": {"T-shirts": 40}, "colour": {"blue": 12, "purple": 9}})
    understood = understand("blue t-shirt under 30", vocabulary, currency="£")
    understood.categories            # ("T-shirts",): a hard filter
    understood.boosts                # {"colour": ("blue",)}: a soft boost
    understood.price                 # PriceRange(max_price=Decimal("30")), "under £30"
    understood.labels("T-shirts", {"colour": "blue"}, Decimal("19"))   # ["blue", "T-shirts", "under £30"]

The vocabulary is the catalogue's own: its categories and the values of attributes such as colour,
material, size and brand, with how many items have each. A phrase of the query matches a value when
their words agree (case-insensitive, "t shirt", "t-shirt" and "tshirt" alike, and with
``plural_folding`` English plurals folded: "mugs" is "mug"). Longer phrases win ("organic cotton"
before "cotton"). Sizes made of one or two letters ("S", "XL") only match after the word "size".

Text written without spaces (Chinese, Japanese) is split into words by a ``ranking.tokenise.Tokeniser`` (the
``splitter`` of the vocabulary and of the synonyms, the one keyword search uses), so "蓝色杯子" names the colour
"蓝色" and the category "杯子" as "blue mug" does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qs, urlsplit

from .rules import ServingRules
from .tokenise import CJK_RUN, Tokeniser, fold_width, has_cjk

#: Attributes whose match is a hard filter (the rest are soft boosts).
HARD_ATTRIBUTES = ("category",)
#: Values of these attributes made only of very short words match only after the word "size".
SIZE_ATTRIBUTES = ("size",)
TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
MAX_PHRASE_WORDS = 4

# ---------------------------------------------------------------- words


def singular(word: str) -> str:
    """English plural folded to the singular, roughly: "mugs" -> "mug", "watches" -> "watch", "berries" -> "berry"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class Token:
    word: str  # folded: lower case (and singular with plural folding)
    start: int
    end: int


def tokens(text: str, *, plural_folding: bool = True, splitter: Tokeniser | None = None) -> list[Token]:
    """The words of ``text`` (letters and digits), folded, with their character spans; with a ``splitter`` (an
    active tokeniser), each run of CJK characters is its words as that tokeniser splits a query (a bigram overlaps
    the next), and full-width letters are read as ASCII."""
    fold = singular if plural_folding else str
    if splitter is None or not splitter.active:
        return [Token(fold(m.group().lower()), m.start(), m.end()) for m in TOKEN.finditer(text)]
    found = []
    for match in TOKEN.finditer(fold_width(text)):
        word, offset, position = match.group(), match.start(), 0
        for run in CJK_RUN.finditer(word) if has_cjk(word) else ():
            if run.start() > position:
                found.append(Token(fold(word[position : run.start()].lower()), offset + position, offset + run.start()))
            found += [
                Token(w, offset + run.start() + a, offset + run.start() + b)
                for w, a, b in splitter.word_spans(run.group())
            ]
            position = run.end()
        if position < len(word):
            found.append(Token(fold(word[position:].lower()), offset + position, offset + len(word)))
    return found


def phrase_keys(text: str, *, plural_folding: bool = True, splitter: Tokeniser | None = None) -> set[tuple[str, ...]]:
    """The word sequences ``text`` may be typed as: its words, and (for several words) all of them joined."""
    words = tuple(t.word for t in tokens(text, plural_folding=plural_folding, splitter=splitter))
    if not words:
        return set()
    keys = {words}
    if len(words) > 1:
        joined = "".join(t.group().lower() for t in TOKEN.finditer(text))
        keys.add(((singular if plural_folding else str)(joined),))
    return keys


# ---------------------------------------------------------------- prices

_CURRENCY_SYMBOL = r"[£$€¥]"
_CURRENCY_WORD = r"(?:gbp|usd|eur|euros?|pounds?|quid|dollars?|bucks)"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_UNIT = r"(?:mm|cm|m|km|kg|g|ml|cl|l|litres?|liters?|inch(?:es)?|in|ft|gb|tb|w|watts?|%)"
_AT_MOST = r"under|below|less\s+than|cheaper\s+than|up\s+to|no\s+more\s+than|at\s+most|max(?:imum)?|within|budget"
_AT_LEAST = r"over|above|more\s+than|at\s+least|min(?:imum)?|from|starting\s+at"


def _amount(number: int, *, symbol: bool = False) -> str:
    """An amount of money (its groups ``cur<number>``, ``n<number>``): a currency symbol (required with ``symbol``),
    a number, a currency word or symbol after it; never followed by a unit ("500 ml" is not money)."""
    return r"(?P<cur{i}>{symbol}){optional}\s?(?P<n{i}>{number})(?:\s?(?:{word}|{symbol}))?(?!\w|\s*{unit}(?!\w)|[.,]\d)".format(
        i=number,
        symbol=_CURRENCY_SYMBOL,
        optional="" if symbol else "?",
        number=_NUMBER,
        word=_CURRENCY_WORD,
        unit=_UNIT,
    )


_PRICE_PATTERNS = (
    ("range", re.compile(r"(?<!\w)(?:between|from)\s+%s\s*(?:and|to|-|–)\s*%s" % (_amount(0), _amount(1)), re.I)),
    ("range", re.compile(r"(?<!\w)%s\s*(?:-|–|to)\s*%s" % (_amount(0, symbol=True), _amount(1)), re.I)),
    (
        "max",
        re.compile(
            r"(?<!\w)(?:%s)\s+%s|(?<!\w)%s\s*(?:or\s+less|or\s+under|max)(?!\w)" % (_AT_MOST, _amount(0), _amount(1)),
            re.I,
        ),
    ),
    (
        "min",
        re.compile(
            r"(?<!\w)(?:%s)\s+%s|(?<!\w)%s\s*(?:or\s+more|\+|plus)(?!\w)" % (_AT_LEAST, _amount(0), _amount(1)), re.I
        ),
    ),
    ("budget", re.compile(r"(?<![\w.,])%s" % _amount(0, symbol=True), re.I)),
    ("budget", re.compile(r"(?<![\w.,])(?P<n0>%s)\s?%s(?!\w)" % (_NUMBER, _CURRENCY_WORD), re.I)),
)


@dataclass(frozen=True)
class PriceRange:
    """Price bounds (inclusive) stated in a query, and where: ``start``/``end`` in the query text."""

    min_price: Decimal | None = None
    max_price: Decimal | None = None
    start: int = 0
    end: int = 0
    currency: str = ""

    def describe(self, currency: str = "") -> str:
        """ "under £30", "over £20", "£20–£50" (the currency typed, else ``currency``)."""
        symbol = self.currency or currency
        if self.min_price is not None and self.max_price is not None:
            return "%s%s–%s%s" % (symbol, _money(self.min_price), symbol, _money(self.max_price))
        if self.max_price is not None:
            return "under %s%s" % (symbol, _money(self.max_price))
        return "over %s%s" % (symbol, _money(self.min_price))


def _money(value: Decimal) -> str:
    return str(value.quantize(Decimal(1))) if value == value.to_integral_value() else str(value)


def _decimal(digits: str) -> Decimal | None:
    try:
        return Decimal(digits.replace(",", ""))
    except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
        return None


def parse_price(text: str) -> PriceRange | None:
    """The first price phrase of ``text``: "under 30", "£20-£50", "between 20 and 50", "over £100", "£30".

    A bare amount with a currency symbol ("£30") is a budget: at most that much. A number followed by a
    unit ("500 ml", "42 mm") is not a price.
    """
    found = []
    for kind, pattern in _PRICE_PATTERNS:
        match = pattern.search(text)
        if match:
            found.append((match.start(), -len(match.group()), kind, match))
    if not found:
        return None
    _, _, kind, match = min(found)
    groups = match.groupdict()
    amounts = [_decimal(groups[name]) for name in ("n0", "n1") if groups.get(name)]
    currency = next((groups[name] for name in ("cur0", "cur1") if groups.get(name)), "") or ""
    if kind == "range":
        low, high = sorted(amounts[:2])
        return PriceRange(low, high, match.start(), match.end(), currency)
    if kind == "min":
        return PriceRange(amounts[0], None, match.start(), match.end(), currency)
    return PriceRange(None, amounts[0], match.start(), match.end(), currency)


# ---------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """The catalogue's attribute values, indexed by the word sequences that name them.

    ``values``: attribute -> {value: number of items}; ``aliases``: attribute -> {spelling: value}, other
    words for a value ("gray" for "grey"); ``plural_folding``: English plurals are folded; ``splitter``: the
    tokeniser splitting CJK runs into words (values and queries alike), None for none.
    """

    values: Mapping[str, Mapping[str, int]]
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    plural_folding: bool = True
    index: Mapping[tuple[str, ...], tuple[tuple[str, str], ...]] = field(default_factory=dict, compare=False)
    splitter: Tokeniser | None = field(default=None, compare=False)

    @classmethod
    def build(
        cls,
        values: Mapping[str, Mapping[str, int]],
        aliases: Mapping[str, Mapping[str, str]] | None = None,
        *,
        plural_folding: bool = True,
        splitter: Tokeniser | None = None,
    ) -> Vocabulary:
        index: dict[tuple[str, ...], list[tuple[str, str]]] = {}

        def add(key: tuple[str, ...], attribute: str, value: str) -> None:
            entries = index.setdefault(key, [])
            if (attribute, value) not in entries:
                entries.append((attribute, value))

        words_of_values: dict[tuple[str, ...], tuple[str, str]] = {}
        for attribute, counts in values.items():
            for value in counts:
                spellings = [value]
                if attribute == "category":  # "Clothing > T-shirts": the last part is what shoppers type
                    spellings += [part for part in re.split(r"\s*[>/|]\s*", value)[-1:] if part != value]
                for spelling in spellings:
                    for key in phrase_keys(spelling, plural_folding=plural_folding, splitter=splitter):
                        if len(key) > MAX_PHRASE_WORDS:
                            continue
                        if attribute in SIZE_ATTRIBUTES:
                            add(("size",) + key, attribute, value)
                            if max(map(len, key)) <= 2 and not any(w.isdigit() or has_cjk(w) for w in key):
                                continue  # "S", "XL": too short to be recognised without "size"
                        add(key, attribute, value)
                if attribute not in HARD_ATTRIBUTES + SIZE_ATTRIBUTES:  # "steel" finds "stainless steel" items
                    for word in tokens(value, plural_folding=plural_folding) if " " in value.strip() else ():
                        if len(word.word) >= 4 and not word.word.isdigit():
                            words_of_values.setdefault((word.word,), (attribute, word.word))
        for key, (attribute, word) in words_of_values.items():
            if key not in index:
                add(key, attribute, word)
        for attribute, spellings in (aliases or {}).items():
            known = {v.lower(): v for v in values.get(attribute, {})}
            for spelling, value in spellings.items():
                target = known.get(value.lower())
                if target is None or spelling.lower() in known:
                    continue  # an alias never hides a value of its own
                for key in phrase_keys(spelling, plural_folding=plural_folding, splitter=splitter):
                    add(key, attribute, target)
        frozen = {key: tuple(entries) for key, entries in index.items()}
        return cls(values=values, aliases=aliases or {}, plural_folding=plural_folding, index=frozen, splitter=splitter)

    def count(self, attribute: str, value: str) -> int:
        return int(self.values.get(attribute, {}).get(value, 0))


# ---------------------------------------------------------------- synonyms


@dataclass(frozen=True)
class Synonyms:
    """Merchandiser synonyms: a phrase -> the phrases also searched for it.

    ``Synonyms.build([("jumper", ["sweater"], True)])``: two-way, so "sweater" also finds "jumper";
    one-way (``False``): only "jumper" is widened. ``splitter``: the tokeniser splitting CJK runs into words (a
    Chinese term is then found inside a run: "毛衣" in "红色毛衣").
    """

    expansions: Mapping[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    splitter: Tokeniser | None = field(default=None, compare=False)

    @classmethod
    def build(
        cls,
        rules: Iterable[tuple[str, Sequence[str], bool]],
        *,
        plural_folding: bool = True,
        splitter: Tokeniser | None = None,
    ) -> Synonyms:
        expansions: dict[tuple[str, ...], list[str]] = {}

        def keys(text: str) -> set[tuple[str, ...]]:
            return phrase_keys(text, plural_folding=plural_folding, splitter=splitter)

        def add(term: str, other: str) -> None:
            for key in keys(term):
                entries = expansions.setdefault(key, [])
                same = phrase_keys(other, splitter=splitter) == phrase_keys(term, splitter=splitter)
                if other.lower() not in (e.lower() for e in entries) and not same:
                    entries.append(other)

        for term, others, two_way in rules:
            others = [o.strip() for o in others if o and o.strip()]
            term = term.strip()
            if not term:
                continue
            for other in others:
                add(term, other)
                if two_way:
                    add(other, term)
            if two_way:  # every member of a two-way set finds every other
                for a in others:
                    for b in others:
                        if a != b:
                            add(a, b)
        return cls({key: tuple(values) for key, values in expansions.items()}, splitter=splitter)

    def __bool__(self) -> bool:
        return bool(self.expansions)

    def words(self) -> set[str]:
        """Every word a synonym rule names (left alone by the spelling corrector)."""
        found = {word for key in self.expansions for word in key}
        for values in self.expansions.values():
            for value in values:
                found.update(m.group().lower() for m in TOKEN.finditer(value))
        return found


@dataclass(frozen=True)
class Group:
    """One part of a query: the words typed and the phrases also searched for them (synonyms)."""

    text: str
    alternatives: tuple[str, ...] = ()
    start: int = 0
    end: int = 0

    @property
    def phrases(self) -> tuple[str, ...]:
        return (self.text, *self.alternatives)


def expand(text: str, synonyms: Synonyms, *, plural_folding: bool = True) -> list[Group]:
    """``text`` as groups (a word, or a phrase a synonym rule names, with its alternatives), longest phrase first;
    CJK runs split by the synonyms' ``splitter``."""
    words = tokens(text, plural_folding=plural_folding, splitter=synonyms.splitter)
    groups, position = [], 0
    while position < len(words):
        for length in range(min(MAX_PHRASE_WORDS, len(words) - position), 0, -1):
            span = words[position : position + length]
            key = tuple(t.word for t in span)
            alternatives = synonyms.expansions.get(key) if synonyms else None
            if alternatives or length == 1:
                start, end = span[0].start, span[-1].end
                groups.append(Group(text[start:end], tuple(alternatives or ()), start, end))
                position += length
                break
    return groups


# ---------------------------------------------------------------- understanding


@dataclass(frozen=True)
class Term:
    """Something the query asks for: an attribute value ("colour" "blue") or a price range ("price")."""

    attribute: str
    value: str
    text: str  # as typed
    start: int
    end: int
    price: PriceRange | None = None

    @property
    def hard(self) -> bool:
        return self.attribute in HARD_ATTRIBUTES or self.attribute == "price"


@dataclass(frozen=True)
class UnderstoodQuery:
    """A query and the terms recognised in it (in the order typed)."""

    query: str
    terms: tuple[Term, ...] = ()
    currency: str = ""
    plural_folding: bool = True
    splitter: Tokeniser | None = field(default=None, compare=False)

    @property
    def price(self) -> PriceRange | None:
        return next((t.price for t in self.terms if t.price is not None), None)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.value for t in self.terms if t.attribute == "category"))

    @property
    def boosts(self) -> dict[str, tuple[str, ...]]:
        """Soft attributes: attribute -> values asked for."""
        found: dict[str, list[str]] = {}
        for term in self.terms:
            if not term.hard:
                found.setdefault(term.attribute, [])
                if term.value not in found[term.attribute]:
                    found[term.attribute].append(term.value)
        return {attribute: tuple(values) for attribute, values in found.items()}

    @property
    def text(self) -> str:
        """What the retrievers search: the query without its price phrase."""
        price = self.price
        if price is None:
            return self.query
        remainder = self.query[: price.start] + " " + self.query[price.end :]
        return " ".join(remainder.split())

    @property
    def residual(self) -> str:
        """The query's words that no term took (what must match as words once the terms are filters or boosts)."""
        text, position = [], 0
        for term in sorted(self.terms, key=lambda t: t.start):
            text.append(self.query[position : term.start])
            position = max(position, term.end)
        text.append(self.query[position:])
        return " ".join("".join(text).split())

    @property
    def explains(self) -> bool:
        """Whether reasons name what matched (a soft attribute or a price was recognised)."""
        return any(not t.hard or t.price is not None for t in self.terms)

    def without(self, term: Term) -> UnderstoodQuery:
        """This query with ``term``'s words (and a space next to them) taken out; the other terms keep their words."""
        start, end = term.start, term.end
        if start > 0 and self.query[start - 1] == " ":
            start -= 1
        elif end < len(self.query) and self.query[end] == " ":
            end += 1
        shift = end - start

        def moved(offset: int) -> int:
            return offset - shift if offset >= end else offset

        terms = tuple(
            replace(
                t,
                start=moved(t.start),
                end=moved(t.end),
                price=replace(t.price, start=moved(t.price.start), end=moved(t.price.end)) if t.price else None,
            )
            for t in self.terms
            if t is not term
        )
        return replace(self, query=self.query[:start] + self.query[end:], terms=terms)

    def describe(self, term: Term) -> str:
        return term.price.describe(self.currency) if term.price is not None else term.value

    def labels(self, category: str, attributes: Mapping[str, object], price: Decimal | None) -> list[str]:
        """What an item with this category, these attributes and this price matches of the query, in query order."""
        labels = []
        for term in self.terms:
            if term.price is not None:
                if price is not None and _within(price, term.price):
                    labels.append(self.describe(term))
            elif term.attribute == "category":
                if category == term.value:
                    labels.append(term.value)
            elif matches_value(
                term.attribute, term.value, attributes.get(term.attribute), self.plural_folding, self.splitter
            ):
                labels.append(term.value)
        return list(dict.fromkeys(labels))

    def boost_matches(self, attributes: Mapping[str, object]) -> int:
        """How many of the soft attributes asked for the item has (each attribute counted once)."""
        return sum(
            any(
                matches_value(name, value, attributes.get(name), self.plural_folding, self.splitter) for value in values
            )
            for name, values in self.boosts.items()
        )


def matches_value(
    attribute: str, asked: str, value: object, plural_folding: bool = True, splitter: Tokeniser | None = None
) -> bool:
    """Whether an item's ``value`` of ``attribute`` is the ``asked`` one: equal, or (except sizes) containing its words
    ("cotton" matches "organic cotton"; with a ``splitter``, "蓝色" matches "深蓝色")."""
    if value is None or value == "":
        return False
    values = value if isinstance(value, (list, tuple)) else [value]
    asked_words = tuple(t.word for t in tokens(asked, plural_folding=plural_folding, splitter=splitter))
    for one in values:
        words = tuple(t.word for t in tokens(str(one), plural_folding=plural_folding, splitter=splitter))
        if words == asked_words:
            return True
        if attribute not in SIZE_ATTRIBUTES and asked_words and _contains(words, asked_words):
            return True
    return False


def _contains(words: tuple[str, ...], part: tuple[str, ...]) -> bool:
    return any(words[i : i + len(part)] == part for i in range(len(words) - len(part) + 1))


def _within(price: Decimal, bounds: PriceRange) -> bool:
    return (bounds.min_price is None or price >= bounds.min_price) and (
        bounds.max_price is None or price <= bounds.max_price
    )


def understand(
    query: str, vocabulary: Vocabulary, *, currency: str = "", synonyms: Synonyms | None = None
) -> UnderstoodQuery:
    """The price phrase and the catalogue's attribute values named in ``query``.

    A phrase a synonym rule widens also matches what its alternatives name ("jumper" -> "sweater" finds the
    category "Sweaters"). Words inside the price phrase are not attribute words.
    """
    plural_folding, splitter = vocabulary.plural_folding, vocabulary.splitter
    terms: list[Term] = []
    price = parse_price(query)
    if price is not None:
        terms.append(Term("price", "", query[price.start : price.end].strip(), price.start, price.end, price))
    words = [
        t
        for t in tokens(query, plural_folding=plural_folding, splitter=splitter)
        if price is None or t.end <= price.start or t.start >= price.end
    ]
    position = 0
    while position < len(words):
        for length in range(min(MAX_PHRASE_WORDS, len(words) - position), 0, -1):
            span = words[position : position + length]
            if any(b.start - a.end > 3 for a, b in zip(span, span[1:], strict=False)):
                continue  # words of a phrase sit next to each other
            found = _lookup(tuple(t.word for t in span), vocabulary, synonyms, plural_folding, splitter)
            if found:
                start, end = span[0].start, span[-1].end
                for attribute, value in found:
                    terms.append(Term(attribute, value, query[start:end], start, end))
                position += length
                break
        else:
            position += 1
    terms.sort(key=lambda t: (t.start, t.attribute != "price"))
    return UnderstoodQuery(
        query=query, terms=tuple(terms), currency=currency, plural_folding=plural_folding, splitter=splitter
    )


def _lookup(
    key: tuple[str, ...],
    vocabulary: Vocabulary,
    synonyms: Synonyms | None,
    plural_folding: bool,
    splitter: Tokeniser | None,
):
    found = list(vocabulary.index.get(key, ()))
    if synonyms:
        for alternative in synonyms.expansions.get(key, ()):
            for other in phrase_keys(alternative, plural_folding=plural_folding, splitter=splitter):
                found += [entry for entry in vocabulary.index.get(other, ()) if entry not in found]
    return found


# ---------------------------------------------------------------- zero results


def weakest_term(terms: Sequence[Term], support: Mapping[int, int]) -> Term | None:
    """The hard term to drop when nothing matches; None when there is none.

    A price goes before a category (what the shopper wants matters more than what it costs); among terms of
    one kind, the one fewest items satisfy (``support``: index -> items), the last typed on a tie.
    """
    hard = [(term.price is None, support.get(index, 0), -index, term) for index, term in enumerate(terms) if term.hard]
    return min(hard, key=lambda entry: entry[:3])[3] if hard else None


# ---------------------------------------------------------------- merchandiser's rules for a query

#: The serving-rules keys a per-query rule may set.
QUERY_RULE_KEYS = ("pin", "boost", "boost_categories", "hide")


def normalised_query(text: str) -> str:
    """A query as rules match it: its words (letters and digits) in lower case, one space apart ("T-Shirt!" ->
    "t shirt")."""
    return " ".join(TOKEN.findall(str(text).lower()))


def searched_query(url: str) -> str | None:
    """The normalised query a URL searches for (its ``q`` parameter), None when it has none."""
    values = parse_qs(urlsplit(url).query).get("q")
    return normalised_query(values[0]) if values and values[0].strip() else None


def redirect_loop(query: str, url: str, redirects: Mapping[str, str]) -> list[str] | None:
    """The chain of queries, when sending ``query`` to ``url`` (given the other ``redirects``: normalised query ->
    URL) comes back to a query already on the way ("a" -> /search/?q=b, "b" -> /search/?q=a); else None."""
    chain = [query]
    while (next_query := searched_query(url)) is not None:
        if next_query in chain:
            return [*chain, next_query]
        chain.append(next_query)
        url = redirects.get(next_query, "")
    return None


def merchandised(rules: ServingRules, query_rules: ServingRules) -> ServingRules:
    """The configuration's ``rules`` with a query's pins, boosts and hidden items: the query's pins take their
    positions (a pin of the configuration on the same item or position gives way), boosts add up, hidden items
    add up; an item the configuration hides stays hidden (its query pin is dropped)."""
    pins = [(item, position) for item, position in query_rules.pin if item not in rules.hide]
    taken_items, taken_positions = {item for item, _ in pins}, {position for _, position in pins}
    pins += [
        (item, position)
        for item, position in rules.pin
        if item not in taken_items and position not in taken_positions and item not in query_rules.hide
    ]
    boost = dict(rules.boost)
    for item, value in query_rules.boost.items():
        boost[item] = boost.get(item, 0.0) + value
    categories = dict(rules.boost_categories)
    for category, value in query_rules.boost_categories.items():
        categories[category] = categories.get(category, 0.0) + value
    return replace(
        rules,
        pin=[(item, position) for item, position in pins if position < rules.max_k],
        boost=boost,
        boost_categories=categories,
        hide=set(rules.hide) | set(query_rules.hide),
    )
