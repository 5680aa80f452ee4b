"""Text search a shopper expects: hybrid retrieval plus query understanding, facets, sorting, synonyms,
a graceful answer when nothing matches, search analytics and autocomplete.

``search`` (also ``services.recommend.search``):

1. the query is spelling-corrected (words of merchandiser synonyms and price phrases are left alone) and
   *understood* against the catalogue's own vocabulary (``ranking.query``): a price phrase ("under 30",
   "between 20 and 50", "£30") and a category name are hard filters, colours, materials, sizes and brands
   (``RAGREC["SEARCH_ATTRIBUTES"]``) soft boosts;
2. keyword (full text, with synonyms as alternatives), MiniLM text and CLIP text->image retrieval under those
   filters are fused by RRF; items with the asked attributes are boosted (``SEARCH_ATTRIBUTE_BOOST``), and each
   result's reason names what it matched ("blue, T-shirts, under £30");
3. when nothing matches, the hard term fewest items satisfy is dropped and the search runs again, saying so
   (``notice``: "No results for 'red mug under 5'; showing 'red mug'");
4. facets (category, attributes, price bands) are counted over the result set in one statement, and the
   shopper's facet choices are hard filters; ``sort`` orders by relevance, price or newest;
5. a search made for a visitor is logged (``SearchLog``) for the analytics dashboard.

The result set that facets count and that price or date sorts order is the set of items matching the query's
words by full text (up to ``KEYWORD_RANK_LIMIT``), or the fused candidates when no item contains them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import DatabaseError, transaction
from django.utils import timezone

from .. import storage
from ..conf import query_tokeniser_name, ragrec_settings, text_searches
from ..exceptions import InvalidSearchRule
from ..generation.vocabulary import COLOURS, MATERIALS
from ..limits import SEARCH_QUERY_MAX_CHARS
from ..models import Item, SearchLog, SearchRule
from ..ranking.candidates import Candidate
from ..ranking.fusion import reciprocal_rank_fusion
from ..ranking.query import (
    QUERY_RULE_KEYS,
    TOKEN,
    Synonyms,
    Term,
    UnderstoodQuery,
    Vocabulary,
    expand,
    merchandised,
    normalised_query,
    redirect_loop,
    understand,
    weakest_term,
)
from ..ranking.rules import RulesError, ServingRules
from ..ranking.suggest import PrefixIndex, run_tails
from ..ranking.tokenise import Tokeniser, has_cjk, tokeniser
from ..storage import search as search_storage
from ..storage.keyword import (
    WORD,
    SpellingCorrector,
    catalogue_cached,
    edit_distance,
    keyword_matches,
    spelling_corrector,
)
from . import personal_search
from .inputs import checked_text
from .query_vectors import text_query_vector
from .results import (
    BadQuery,
    RecommendationList,
    Visitor,
    candidates_from,
    cap_k,
    finish,
    item_filter,
    narrowed,
    query_encoder_matches,
    serving_rules,
    space_ready,
)

logger = logging.getLogger(__name__)

QUERY_MAX_LENGTH = SEARCH_QUERY_MAX_CHARS
#: A filter no item passes.
_NOTHING = storage.ItemFilter(only_ids=frozenset())
SORTS = ("relevance", "price_asc", "price_desc", "newest")
#: Words of price phrases, never "corrected" to catalogue words.
PRICE_WORDS = frozenset(
    "under below less than cheaper up to no more at most max maximum within budget over above least min minimum "
    "from between and or plus starting pounds pound quid dollars dollar bucks euros euro gbp usd eur".split()
)
FACET_LABELS = {"category": "Category", "price": "Price", "colour": "Colour", "color": "Colour"}
#: How often a process deletes search log rows older than ``SEARCH_LOG_DAYS``.
PURGE_EVERY_SECONDS = 3600


@dataclass
class FacetValue:
    value: str
    label: str
    count: int
    selected: bool = False


@dataclass
class Facet:
    name: str
    label: str
    values: list[FacetValue] = field(default_factory=list)


@dataclass
class SearchResults(RecommendationList):
    """A search's results, with what the query was understood as, its facets and any fallback notice."""

    #: Set when nothing matched the query as typed: "No results for 'X'; showing 'Y'".
    notice: str | None = None
    sort: str = "relevance"
    #: Terms recognised in the query: {"attribute", "value", "text", "use"}; "use" is "filter" (hard),
    #: "boost" (soft) or "words" (a category the configuration or the shopper's choice overrides).
    understood: list[dict] = field(default_factory=list)
    facets: list[Facet] = field(default_factory=list)
    #: The page the merchandiser sends this query to (``SearchRule.redirect_url``), else None; the results are
    #: still there for a client that does not follow it.
    redirect: str | None = None


# ---------------------------------------------------------------- vocabulary and synonyms


def attributes() -> list[str]:
    return [str(name) for name in ragrec_settings.SEARCH_ATTRIBUTES]


def plural_folding() -> bool:
    """Whether query understanding uses its English helpers (plural folding, colour and material spellings): when
    English is a configuration of keyword search (``SEARCH_LANGUAGE``, or a language of ``SEARCH_LANGUAGES``)."""
    return any(config.lower() == "english" for config, _ in text_searches())


def splitter() -> Tokeniser:
    """The tokeniser query understanding, synonyms and autocomplete split CJK text with (``conf.query_tokeniser_name``:
    keyword search's)."""
    return tokeniser(query_tokeniser_name())


def vocabulary() -> Vocabulary:
    """The catalogue's vocabulary (categories and attribute values), with English colour and material spellings
    ("gray" for "grey") when the search language is English; built once per catalogue state and setting."""
    names, folding, words = attributes(), plural_folding(), splitter()
    return catalogue_cached(
        "vocabulary:%s:%s:%s" % (",".join(names), folding, words.name),
        lambda: _build_vocabulary(names, folding, words),
    )


def _build_vocabulary(names: list[str], folding: bool, words: Tokeniser) -> Vocabulary:
    values = search_storage.attribute_values(names)
    aliases = {}
    if folding:
        colours = {spelling: name for name, spellings in COLOURS.spellings.items() for spelling in spellings}
        materials = {spelling: name for name, spellings in MATERIALS.spellings.items() for spelling in spellings}
        aliases = {"colour": colours, "color": colours, "material": materials}
    return Vocabulary.build(values, aliases, plural_folding=folding, splitter=words)


def synonyms() -> Synonyms:
    return Synonyms.build(search_storage.active_synonyms(), plural_folding=plural_folding(), splitter=splitter())


def term_corrector() -> SpellingCorrector:
    """A corrector to the words that name a category or attribute value (and their spellings), each counted by
    the items having it; built once per catalogue state and setting."""
    names, folding, words = attributes(), plural_folding(), splitter()

    def build() -> SpellingCorrector:
        known = vocabulary()
        counts: dict[str, int] = {}
        for key, entries in known.index.items():
            if len(key) == 1:
                counts[key[0]] = counts.get(key[0], 0) + sum(known.count(a, v) for a, v in entries)
        return SpellingCorrector(counts)

    return catalogue_cached("term-corrector:%s:%s:%s" % (",".join(names), folding, words.name), build)


def corrected_query(query: str, words: Synonyms) -> str:
    """``query`` spelling-corrected (corrected words in lower case): each word neither the catalogue's, nor the search language's, nor
    of a synonym or a price phrase, goes to the nearest catalogue word; among words as near, one that names a
    category or attribute value wins ("cair" is "chair", not "pair"; "wath" is "watch", not "with")."""
    corrector, terms = spelling_corrector(), term_corrector()
    keep = PRICE_WORDS | words.words()

    def fix(word: str) -> str:
        lower = word.lower()
        if lower in keep:
            return word
        general = corrector.correct(lower)
        if general in terms.vocabulary or lower in corrector.vocabulary or lower in corrector.language:
            return general
        term = terms.correct(lower)
        if term != lower and (general == lower or edit_distance(lower, term) <= edit_distance(lower, general)):
            return term
        return general

    return WORD.sub(lambda match: fix(match.group(0)), query)


# ---------------------------------------------------------------- redirects, pins and boosts per query


@dataclass(frozen=True)
class QueryRule:
    """A merchandiser's rule for one (normalised) query: a page to send it to and/or pins, boosts, hidden items."""

    id: int
    query: str
    redirect: str = ""
    rules: ServingRules | None = None


_query_rules: dict[str, tuple[list, dict[str, QueryRule]]] = {}


def query_rules() -> dict[str, QueryRule]:
    """The active per-query rules by normalised query (parsed once per change of the rows; a row that no longer
    parses is left out and logged)."""
    rows = search_storage.active_search_rules()
    cached = _query_rules.get("parsed")
    if cached is not None and cached[0] is rows:
        return cached[1]
    parsed = {}
    for rule_id, query, url, data in rows:
        try:
            rules = ServingRules.from_dict(data) if data else None
        except RulesError as exc:
            logger.warning(
                "ragrec: the search rule for %r has invalid rules (%s); its redirect alone applies", query, exc
            )
            rules = None
        parsed[query] = QueryRule(rule_id, query, url, rules)
    _query_rules["parsed"] = (rows, parsed)
    return parsed


def rule_for(*queries: str) -> QueryRule | None:
    """The rule of the first of ``queries`` (as typed, then corrected) that has one."""
    rules = query_rules()
    for query in queries:
        rule = rules.get(normalised_query(query))
        if rule is not None:
            return rule
    return None


_is_web_url = URLValidator(schemes=["http", "https"])


def check_redirect_url(url: str) -> str:
    """``url`` stripped if it is a path of this site ("/category/mugs/") or an http(s) URL; else
    ``InvalidSearchRule``."""
    url = str(url).strip()
    problem = "The redirect must be a path of this site such as /category/mugs/ or an http(s) URL (got %r)." % url[:100]
    if url.startswith("/") and not url.startswith("//"):
        if any(ch.isspace() or ord(ch) < 32 or ch in "<>\"'\\" for ch in url):
            raise InvalidSearchRule(problem, "redirect_url")
        return url
    try:
        _is_web_url(url)
    except ValidationError:
        raise InvalidSearchRule(problem, "redirect_url") from None
    return url


def check_search_rule(query: str, redirect_url: str, rules, *, rule_id: int | None = None) -> tuple[str, str, dict]:
    """A rule as it can be saved, ``(normalised query, redirect URL, rules)``, or ``InvalidSearchRule`` naming the
    field: a query with no words; a redirect that is not a URL, or that comes back to a query on the way
    ("a" -> /search/?q=b while "b" -> /search/?q=a; the other redirects are read now, leaving out ``rule_id``);
    rules that are not serving rules limited to ``QUERY_RULE_KEYS``, or that name an item or category the
    catalogue does not have; neither a redirect nor rules."""
    normalised = normalised_query(query)
    if not normalised:
        raise InvalidSearchRule("The query has no words.", "query")
    url = check_redirect_url(redirect_url) if str(redirect_url or "").strip() else ""
    if url:
        loop = redirect_loop(normalised, url, search_storage.search_redirects(exclude_id=rule_id))
        if loop:
            raise InvalidSearchRule(
                "This redirect would loop: %s." % " -> ".join(repr(q) for q in loop), "redirect_url"
            )
    rules = rules or {}
    if not isinstance(rules, dict):
        raise InvalidSearchRule('The rules must be a JSON object, e.g. {"pin": [[42, 0]]}.', "rules")
    other = sorted(set(rules) - set(QUERY_RULE_KEYS))
    if other:
        raise InvalidSearchRule(
            "A query's rules may set only %s (got %s)." % (", ".join(QUERY_RULE_KEYS), ", ".join(other)), "rules"
        )
    try:
        parsed = ServingRules.from_dict(rules)
    except RulesError as exc:
        raise InvalidSearchRule(str(exc), "rules") from None
    named = {"pin": [item for item, _ in parsed.pin], "boost": list(parsed.boost), "hide": list(parsed.hide)}
    known = set(Item.objects.filter(id__in=[i for ids in named.values() for i in ids]).values_list("id", flat=True))
    for key, ids in named.items():
        missing = sorted(set(ids) - known)
        if missing:
            raise InvalidSearchRule("%s: no item with id %s." % (key, ", ".join(map(str, missing))), "rules")
    categories = set(Item.objects.filter(category__in=list(parsed.boost_categories)).values_list("category", flat=True))
    missing = sorted(set(parsed.boost_categories) - categories)
    if missing:
        raise InvalidSearchRule(
            "boost_categories: no category %s in the catalogue." % ", ".join(map(repr, missing)), "rules"
        )
    if not url and not rules:
        raise InvalidSearchRule("Give a redirect URL, or rules (pins, boosts, hidden items), or both.")
    return normalised, url, rules


def save_search_rule(query: str, redirect_url: str = "", rules=None, *, is_active: bool = True) -> SearchRule:
    """Create or replace the rule of ``query`` after ``check_search_rule``; this process uses it at once."""
    existing = SearchRule.objects.filter(query=normalised_query(query)).values_list("id", flat=True).first()
    normalised, url, rules = check_search_rule(query, redirect_url, rules, rule_id=existing)
    rule, _ = SearchRule.objects.update_or_create(
        query=normalised, defaults={"redirect_url": url, "rules": rules, "is_active": is_active}
    )
    search_storage.forget_synonyms()
    return rule


# ---------------------------------------------------------------- filters


def price_band_values(bands: Sequence) -> list[tuple[str, Decimal | None, Decimal | None]]:
    """The price facet's bands as ``(value, lowest, highest)``: "-10", "10-25", ... "500-" (bounds inclusive)."""
    bounds = [Decimal(str(b)) for b in bands]
    edges = [None, *bounds, None]
    values = []
    for low, high in zip(edges, edges[1:], strict=False):
        name = "%s-%s" % ("" if low is None else _plain(low), "" if high is None else _plain(high))
        values.append((name, low, None if high is None else high - Decimal("0.01")))
    return values


def _plain(value: Decimal) -> str:
    return str(value.quantize(Decimal(1))) if value == value.to_integral_value() else str(value)


def _price_bounds(value: str) -> tuple[Decimal | None, Decimal | None]:
    """A price facet value "10-25" (also "-10", "500-") as inclusive bounds; BadQuery when malformed."""
    low, separator, high = value.partition("-")
    try:
        lowest = Decimal(low) if low else None
        highest = Decimal(high) - Decimal("0.01") if high else None
    except InvalidOperation:
        lowest = highest = None
        separator = ""
    if not separator or (lowest is None and highest is None):
        raise BadQuery("price: use a band such as 10-25, -10 or 500- (got %r)." % value)
    return lowest, highest


def _selected_filters(filters: storage.ItemFilter, selected: Mapping[str, Sequence[str]]) -> storage.ItemFilter:
    """``filters`` narrowed by the shopper's facet choices (values of one facet are alternatives)."""
    known = {"category", "price", *attributes()}
    unknown = sorted(set(selected) - known)
    if unknown:
        raise BadQuery("Unknown facet %s; the facets are %s." % (", ".join(unknown), ", ".join(sorted(known))))
    for name, values in selected.items():
        values = tuple(dict.fromkeys(str(v) for v in values if str(v).strip()))
        if not values:
            continue
        if name == "category":
            allowed = tuple(c for c in values if not filters.categories or c in filters.categories)
            filters = dataclasses.replace(filters, categories=allowed) if allowed else _NOTHING
        elif name == "price":
            bounds = [_price_bounds(v) for v in values]
            lows, highs = [b[0] for b in bounds], [b[1] for b in bounds]
            low = None if None in lows else min(lows)
            high = None if None in highs else max(highs)
            filters = narrowed(filters, low, high)
        else:
            filters = dataclasses.replace(filters, attributes=(*filters.attributes, (name, values)))
    return filters


def _query_categories(filters: storage.ItemFilter, understood: UnderstoodQuery, category_chosen: bool) -> tuple:
    """The query's categories that filter: none when the shopper chose a category, and only those the serving
    configuration allows (a category it leaves out is searched as words)."""
    if category_chosen:
        return ()
    return tuple(c for c in understood.categories if not filters.categories or c in filters.categories)


def _with_terms(filters: storage.ItemFilter, understood: UnderstoodQuery, category_chosen: bool) -> storage.ItemFilter:
    """``filters`` with the query's hard terms: its price range and its categories (``_query_categories``)."""
    price = understood.price
    if price is not None:
        filters = narrowed(filters, price.min_price, price.max_price)
    categories = _query_categories(filters, understood, category_chosen)
    if categories:
        filters = dataclasses.replace(filters, categories=categories)
    return filters


def _filtering_terms(filters: storage.ItemFilter, understood: UnderstoodQuery, category_chosen: bool) -> list[Term]:
    """The query's terms that filter: its price phrase and the categories ``_query_categories`` keeps."""
    categories = _query_categories(filters, understood, category_chosen)
    return [t for t in understood.terms if t.price is not None or (t.attribute == "category" and t.value in categories)]


def _term_filter(term: Term) -> storage.ItemFilter:
    if term.price is not None:
        return storage.ItemFilter(min_price=term.price.min_price, max_price=term.price.max_price, eligible_only=False)
    return storage.ItemFilter(categories=(term.value,), eligible_only=False)


# ---------------------------------------------------------------- search


@dataclass
class _Found:
    result: RecommendationList
    result_set: list[int]
    matched: int  # items whose text has the query's words (up to the keyword depth)


def check_query(query: str) -> str:
    """The query with its spaces collapsed; ``BadQuery`` when empty, too long or not usable text."""
    text = checked_text(query, what="The search query", max_chars=QUERY_MAX_LENGTH, empty="The search query is empty.")
    return " ".join(text.split())


@storage.with_generation_snapshot
def search(
    query: str,
    *,
    k: int | None = None,
    config: str = "default",
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
    sort: str = "relevance",
    selected: Mapping[str, Sequence[str]] | None = None,
    facets: Sequence[str] = (),
    visitor: Visitor | None = None,
) -> SearchResults:
    """Hybrid search with query understanding (see the module's docstring).

    ``min_price``/``max_price`` narrow the configuration's price range (the shopping assistant's budget);
    ``selected``: facet choices, {"colour": ["red"], "price": ["10-25"]}; ``facets``: the facets to count
    ("category", "price" and names of ``SEARCH_ATTRIBUTES``); ``visitor``: the search is logged for them.
    """
    k = cap_k(k)
    query = check_query(query)
    if sort not in SORTS:
        raise BadQuery("sort: one of %s." % ", ".join(SORTS))
    unknown = sorted(set(facets) - {"category", "price", *attributes()})
    if unknown:
        raise BadQuery(
            "Unknown facet %s; the facets are %s."
            % (", ".join(unknown), ", ".join(["category", "price", *attributes()]))
        )
    words = synonyms()
    corrected = corrected_query(query, words)
    rule = rule_for(query, corrected)
    selected = {name: list(values) for name, values in (selected or {}).items() if values}
    rules = _with_query_rule(serving_rules(config), rule, sort)
    base = _selected_filters(narrowed(item_filter(rules), min_price, max_price), selected)
    if selected and rule is not None and rules.pin:
        rules = _pins_passing(rules, base)
    currency = str(ragrec_settings.SEARCH_CURRENCY or "")
    understood = understand(corrected, vocabulary(), currency=currency, synonyms=words)
    wide = bool(facets) or sort != "relevance"
    chosen = "category" in selected
    found = _search_once(understood, words, base, chosen, k, config, rules, sort, wide, visitor)
    dropped = []
    while not found.result.items and (filtering := _filtering_terms(base, understood, chosen)):
        support = search_storage.term_support(base, [_term_filter(term) for term in filtering])
        term = weakest_term(filtering, dict(enumerate(support)))
        dropped.append(term)
        understood = understood.without(term)
        if not understood.query.strip():
            break
        found = _search_once(understood, words, base, chosen, k, config, rules, sort, wide, visitor)
    result = SearchResults(**{f.name: getattr(found.result, f.name) for f in dataclasses.fields(RecommendationList)})
    result.sort = sort
    result.redirect = rule.redirect if rule is not None and rule.redirect else None
    filtering = _filtering_terms(base, understood, chosen)
    result.understood = [
        {
            "attribute": t.attribute,
            "value": understood.describe(t),
            "text": t.text,
            "use": "filter" if t in filtering else "words" if t.hard else "boost",
        }
        for t in understood.terms
    ]
    if dropped:
        result.notice = (
            "No results for '%s'; showing '%s'" % (query, understood.query)
            if understood.query.strip()
            else "No results for '%s'" % query
        )
    if facets:
        result.facets = _facets(found.result_set, facets, selected, currency, groups=rules.group_variants)
    if visitor is not None:
        _log(query, result, visitor, shown=understood.query if dropped else "", matched=found.matched)
    return result


def _with_query_rule(rules: ServingRules, rule: QueryRule | None, sort: str) -> ServingRules:
    """The configuration's rules with the query's pins, boosts and hidden items (boosts only for a relevance
    order: a price or date sort is the order the shopper asked for)."""
    if rule is None or rule.rules is None:
        return rules
    query_rules = rule.rules if sort == "relevance" else dataclasses.replace(rule.rules, boost={}, boost_categories={})
    return merchandised(rules, query_rules)


def _pins_passing(rules: ServingRules, filters: storage.ItemFilter) -> ServingRules:
    """``rules`` without the pins of items the shopper's facet choices (in ``filters``) leave out."""
    passing = search_storage.passing_filters(filters, [item for item, _ in rules.pin])
    return dataclasses.replace(rules, pin=[(item, position) for item, position in rules.pin if item in passing])


#: Threads that encode search queries while the search's statements run (one per space searched).
_encoders = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ragrec-query-encoding")


def _search_once(
    understood: UnderstoodQuery,
    words: Synonyms,
    base: storage.ItemFilter,
    category_chosen: bool,
    k: int,
    config: str,
    rules,
    sort: str,
    wide: bool,
    visitor: Visitor | None = None,
) -> _Found:
    """One search of ``understood``: retrieval under its filters, fusion, boosts and reasons (or the sort asked
    for), the serving rules; with ``wide`` (facets or a sort asked for), also the result set. A relevance order
    for a known ``visitor`` is personalised when the search ranker is "learned" (``services.personal_search``)."""
    filters = _with_terms(base, understood, category_chosen)
    weights = ragrec_settings.SEARCH_WEIGHTS
    depth = max(k * 4, 40)
    text = understood.text
    reason = "matches '%s'" % understood.query
    lists, matched, result_set = {}, 0, []
    if not text:  # only a price: the newest items in the range
        newest = search_storage.browse(filters, depth)
        lists["browse"] = candidates_from(newest, "browse", reason)
        matched = len(newest)
        result_set = _result_set(understood, words, filters) if wide else []
    else:
        groups = expand(text, words, plural_folding=understood.plural_folding)
        semantic_text = " ".join([text, *(alternative for group in groups for alternative in group.alternatives)])
        spaces = [s for s in ("text", "image") if weights.get(s) and space_ready(s) and query_encoder_matches(s)]
        # The query is encoded (torch, in this process) while the statements run (in the database server).
        encoding = {space: _encoders.submit(text_query_vector, space, semantic_text) for space in spaces}
        # Every word became the filter ("sofas" under the category Sofas): each item passing it matches, so the
        # spaces rank them; a keyword ranking of the whole category would add nothing. Items no space can rank
        # (not encoded yet) still come, after the ranked ones.
        only_filters = bool(spaces) and _only_filters(understood, filters)

        def keyword_list() -> int:
            matches = keyword_matches(text, depth, filters=filters, groups=_phrases(groups))
            if weights.get("keyword"):
                lists["keyword"] = candidates_from(matches.rows, "keyword", reason)
            return len(matches.rows) if matches.strict else 0

        if not only_filters:
            matched = keyword_list()
        result_set = _result_set(understood, words, filters) if wide else []
        for space in spaces:
            found = storage.nearest(space, encoding[space].result(), depth, filters=filters)
            lists[space] = candidates_from([(n.item_id, 1.0 - n.distance) for n in found], space, reason)
        if only_filters:
            unranked = storage.items_without_vectors(spaces, filters)
            if unranked is None:  # not known without a statement: the keyword retriever finds them
                matched = keyword_list()
            else:
                if unranked:
                    lists["unranked"] = candidates_from([(i, 0.0) for i in unranked[:depth]], "unranked", reason)
                matched = max(len(found) for found in lists.values())
    fused = reciprocal_rank_fusion(
        lists,
        weights={name: UNRANKED_WEIGHT if name == "unranked" else float(weights.get(name, 1.0)) for name in lists},
    )
    result_set = result_set or [c.item_id for c in fused]
    facts = search_storage.item_facts({c.item_id for c in fused} | (set(result_set) if sort != "relevance" else set()))
    boost = float(ragrec_settings.SEARCH_ATTRIBUTE_BOOST)
    for candidate in fused:
        item = facts.get(candidate.item_id)
        if item is None:
            continue
        asked = understood.boost_matches(item.attributes)
        if asked and boost:
            candidate.score *= (1.0 + boost) ** asked
            candidate.components["attributes"] = (1.0 + boost) ** asked
        _explain(candidate, understood, item, reason)
    if sort != "relevance":
        fused = _sorted(fused, result_set, facts, sort, understood, reason)
        rules = dataclasses.replace(rules, diversity=None)
    elif visitor:
        fused = personal_search.personalised(fused, visitor, config)
    result = finish("search", config, fused, k, query=understood.query, rules=rules)
    return _Found(result, result_set, matched)


#: Fusion weight of the items a category-only search found no vector for: after every ranked item.
UNRANKED_WEIGHT = 0.01


def _only_filters(understood: UnderstoodQuery, filters: storage.ItemFilter) -> bool:
    """Whether every word of the query is a price or names a category, and every item the filters pass is in a
    category the query names: each passing item matches the words. A category reached through a synonym
    ("tumbler" for Mugs) does not count: the word asks for less than the category holds."""
    named = {t.value for t in understood.terms if t.attribute == "category" and _names(t.text, t.value)}
    return (
        bool(understood.terms)
        and not understood.residual
        and bool(filters.categories)
        and set(filters.categories) <= named
        and all(t.price is not None or t.value in named for t in understood.terms)
    )


def _names(text: str, category: str) -> bool:
    """Whether ``text`` is the category's own name (any case, singular or plural)."""

    def folded(word: str) -> str:
        return " ".join(word.lower().split()).rstrip("s")

    return folded(text) == folded(category)


def _phrases(groups) -> list[tuple[str, ...]] | None:
    """The keyword groups to search when a synonym widens one of them (else None: the text as typed)."""
    return [group.phrases for group in groups] if any(group.alternatives for group in groups) else None


def _result_set(understood: UnderstoodQuery, words: Synonyms, filters: storage.ItemFilter) -> list[int]:
    """What facets count and sorts order: the items passing the query's filters that have its other words (those
    no term took), up to ``KEYWORD_RANK_LIMIT``; all items passing the filters when every word was a term; empty
    when no item has the words (the caller then takes the fused candidates)."""
    limit = int(ragrec_settings.KEYWORD_RANK_LIMIT)
    residual = understood.residual
    if not residual:
        return [item_id for item_id, _ in search_storage.browse(filters, limit)]
    groups = expand(residual, words, plural_folding=understood.plural_folding)
    matches = keyword_matches(residual, limit, filters=filters, groups=_phrases(groups))
    return [item_id for item_id, _ in matches.rows] if matches.strict else []


def _explain(candidate: Candidate, understood: UnderstoodQuery, item, reason: str) -> None:
    """The candidate's reason: what it matched of the query ("blue, T-shirts, under £30"), when the query named
    a soft attribute or a price; else ``reason`` ("matches 'query'")."""
    if understood.explains:
        labels = understood.labels(item.category, item.attributes, item.price)
        candidate.reasons = [", ".join(labels) if labels else reason]


def _sorted(
    fused: list[Candidate], result_set: list[int], facts, sort: str, understood: UnderstoodQuery, reason: str
) -> list[Candidate]:
    """The result set in the order asked for (price or newest), items with the query's soft attributes first;
    scores fall from 1 by position."""
    by_id = {c.item_id: c for c in fused}
    pool = []
    for item_id in result_set:
        if item_id not in facts:
            continue
        candidate = by_id.get(item_id)
        if candidate is None:
            candidate = Candidate(item_id, 0.0, reasons=[reason])
            _explain(candidate, understood, facts[item_id], reason)
        pool.append(candidate)
    sign = -1 if sort == "price_desc" else 1

    def order(candidate: Candidate) -> tuple:
        item = facts[candidate.item_id]
        asked = -understood.boost_matches(item.attributes)
        if sort == "newest":
            return (asked, -item.created_at.timestamp(), candidate.item_id)
        return (asked, item.price is None, sign * (item.price or 0), candidate.item_id)

    pool.sort(key=order)
    for position, candidate in enumerate(pool):
        candidate.score = 1.0 - position / len(pool)
        candidate.components["sort"] = candidate.score
    return pool


def _facets(
    result_set: list[int], names: Sequence[str], selected: Mapping[str, Sequence[str]], currency: str, *, groups: bool
) -> list[Facet]:
    wanted = [name for name in ("category", *attributes(), "price") if name in names]
    bands = price_band_values(ragrec_settings.SEARCH_PRICE_BANDS) if "price" in wanted else []
    counts = search_storage.facet_counts(
        result_set,
        attributes=[name for name in wanted if name not in ("category", "price")],
        price_bands=[Decimal(str(b)) for b in ragrec_settings.SEARCH_PRICE_BANDS] if bands else None,
        groups=groups,
    )
    facets = []
    for name in wanted:
        chosen = set(selected.get(name, ()))
        if name == "price":
            by_band = dict(counts.get("price", []))
            values = [
                FacetValue(value, _band_label(low, high, currency), by_band[str(index)], value in chosen)
                for index, (value, low, high) in enumerate(bands)
                if by_band.get(str(index))
            ]
        else:
            values = [FacetValue(value, value, count, value in chosen) for value, count in counts.get(name, [])]
        values += [FacetValue(value, value, 0, True) for value in chosen - {v.value for v in values}]
        if values:
            facets.append(Facet(name, FACET_LABELS.get(name, name.replace("_", " ").capitalize()), values))
    return facets


def _band_label(low: Decimal | None, high: Decimal | None, currency: str) -> str:
    if low is None:
        return "under %s%s" % (currency, _plain(high + Decimal("0.01")))
    if high is None:
        return "%s%s and over" % (currency, _plain(low))
    return "%s%s–%s%s" % (currency, _plain(low), currency, _plain(high + Decimal("0.01")))


# ---------------------------------------------------------------- analytics


_last_purge = {"at": 0.0}
_purge_lock = threading.Lock()


def _log(query: str, result: SearchResults, visitor: Visitor, *, shown: str, matched: int) -> None:
    """One ``SearchLog`` row (and, once an hour per process, old rows deleted); a failure is logged, never raised."""
    row = SearchLog(
        query=query[:QUERY_MAX_LENGTH],
        normalised=" ".join((result.query or query).lower().split())[:QUERY_MAX_LENGTH],
        result_count=len(result.items),
        matched=matched,
        shown_query=shown[:QUERY_MAX_LENGTH],
        user_id=visitor.user_id,
        session_key=visitor.session_key or "",
        item_keys=[entry.item.key for entry in result.items],
    )
    try:
        search_storage.log_search(row)
        now = time.monotonic()
        with _purge_lock:
            due = now - _last_purge["at"] >= PURGE_EVERY_SECONDS
            if due:
                _last_purge["at"] = now
        if due:
            search_storage.purge_search_log(timezone.now() - timedelta(days=int(ragrec_settings.SEARCH_LOG_DAYS)))
    except DatabaseError:
        logger.warning("ragrec: could not log the search %r", query, exc_info=True)


@dataclass(frozen=True)
class SearchReport:
    start: object
    end: object
    top: list
    zero: list
    low_ctr: list
    daily: list


def report(start, end, *, limit: int = 25, min_searches: int = 3) -> SearchReport:
    """Search analytics for the days ``start``..``end`` (dates, both included, in the current time zone)."""
    zone = timezone.get_current_timezone()
    begin = timezone.make_aware(timezone.datetime.combine(start, timezone.datetime.min.time()), zone)
    finish_at = timezone.make_aware(
        timezone.datetime.combine(end + timedelta(days=1), timezone.datetime.min.time()), zone
    )
    return SearchReport(
        start=start,
        end=end,
        top=search_storage.query_stats(begin, finish_at, order="searches", limit=limit),
        zero=search_storage.query_stats(begin, finish_at, order="zero", limit=limit),
        low_ctr=search_storage.query_stats(begin, finish_at, order="ctr", limit=limit, min_searches=min_searches),
        daily=search_storage.daily_searches(begin, finish_at, str(zone)),
    )


# ---------------------------------------------------------------- autocomplete


@dataclass(frozen=True)
class Suggestion:
    """One autocomplete entry: ``kind`` "query" (a popular past search), "completion" (the typed words,
    spelling corrected, with the last one completed), "category" or "product" (with its ``url``)."""

    text: str
    kind: str
    url: str = ""
    category: str = ""


#: Popular past searches are re-read this often per process, over this many days, at most this many.
POPULAR_TTL_SECONDS = 60
POPULAR_DAYS = 30
POPULAR_LIMIT = 5000
_popular: dict[str, tuple[float, list[tuple[str, int]]]] = {}


def popular_queries() -> list[tuple[str, int]]:
    """Normalised past searches that found something, most searched first (cached ``POPULAR_TTL_SECONDS``)."""
    alias = transaction.get_connection().alias
    cached = _popular.get(alias)
    now = time.monotonic()
    if cached is None or now - cached[0] >= POPULAR_TTL_SECONDS:
        since = timezone.now() - timedelta(days=POPULAR_DAYS)
        cached = (now, search_storage.popular_queries(since, POPULAR_LIMIT))
        _popular[alias] = cached
    return cached[1]


def warm_caches() -> None:
    """Build the per-process caches a search reads (the catalogue's vocabulary, the spelling and term correctors,
    the completion index, the synonyms and query rules), as a web process's start does
    (``serving.warm_caches``): the first search in a process built them while its shopper waited."""
    vocabulary()
    term_corrector()
    prefix_index()
    synonyms()
    query_rules()


def forget_caches() -> None:
    """Read the synonyms and the popular searches again on next use (tests; after bulk changes)."""
    search_storage.forget_synonyms()
    _popular.clear()


def prefix_index() -> PrefixIndex:
    """The catalogue's words for completion (the spelling corrector's vocabulary), rebuilt when items change."""
    return catalogue_cached("prefix-index", lambda: PrefixIndex(spelling_corrector().vocabulary))


def suggest(prefix: str, *, k: int = 8, visitor: Visitor | None = None) -> list[Suggestion]:
    """Suggestions while the shopper types ``prefix``: popular past searches, the words completed (typo-tolerant:
    "cerm" completes to "ceramic"), categories and product titles; with a ``visitor``, the categories they
    looked at recently come first. At most ``k`` (1 to 20); none for text that cannot be searched.

    Text ending in CJK characters ("蓝色咖") is completed from where a word may start in it (``run_tails``:
    "咖" -> "咖啡杯"), and split into words by ``splitter()`` for the product titles, as keyword search splits it."""
    prefix = str(prefix or "")
    if len(prefix) > QUERY_MAX_LENGTH or "\x00" in prefix:
        return []
    words = [word.lower() for word in TOKEN.findall(prefix)]
    if not words:
        return []
    k = max(1, min(int(k), 20))
    partial = "" if not prefix[-1].isalnum() else words.pop()
    keep = synonyms().words() | PRICE_WORDS
    corrector = spelling_corrector()
    head = " ".join(word if word in keep else corrector.correct(word) for word in words)
    tails = run_tails(partial)
    completions = (
        (prefix_index().complete_run(partial, 3) if tails else prefix_index().complete(partial, 3)) if partial else []
    )
    typed = " ".join((*words, partial)).strip()
    starts = {typed, (head + " " + partial).strip(), *((head + " " + word).strip() for word in completions)}
    recent = search_storage.recent_categories(visitor.user_id, visitor.session_key) if visitor else []
    found: list[Suggestion] = []

    def add(suggestion: Suggestion, limit: int) -> None:
        same = [i for i, s in enumerate(found) if s.text.lower() == suggestion.text.lower()]
        if same and suggestion.kind == "product" and found[same[0]].kind == "completion":
            found[same[0]] = suggestion  # a run completed to a product's whole title is that product
        elif not same and len(found) < min(limit, k):
            found.append(suggestion)

    for query, _ in popular_queries():
        if query.startswith(tuple(starts)):
            add(Suggestion(query, "query"), 4)
    last = tuple(completions or ([partial] if partial else []))
    if last:
        starting = tuple(tails) or last  # CJK: a word of the category starts where a word may start in the text
        categories = [
            name
            for name in search_storage.attribute_values(attributes()).get("category", {})
            if any(word.startswith(starting) for word in TOKEN.findall(name.lower()))
        ]
        for name in sorted(categories, key=lambda name: (name not in recent, name))[:2]:
            add(Suggestion(name, "category", category=name), k)
        for word in completions:
            completed = (head + " " + word).strip()
            if completed != typed:
                add(Suggestion(completed, "completion"), len(found) + 1)
        exact = all(word.startswith(partial) for word in completions)  # else completed despite a typo
        split = splitter()
        title_words, last_word = TOKEN.findall(split.query_text(head)), partial
        if tails:  # the run's words the catalogue knows (as the index has them), before the character being typed
            known = corrector.vocabulary
            title_words += [w for w in TOKEN.findall(split.query_text(partial[:-1])) if w in known or not has_cjk(w)]
            last_word = partial[-1]
        titles = search_storage.titles_matching(
            title_words,
            [last_word] if exact else completions,
            k,
            prefix=exact,
            languages=[config for config, _ in text_searches()],
        )
        for title, url, category in sorted(titles, key=lambda row: row[2] not in recent):
            add(Suggestion(title, "product", url=url, category=category), k)
    return found
