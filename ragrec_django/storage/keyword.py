"""Keyword search with PostgreSQL full-text search, made typo-tolerant.

Query words that are not in the catalogue's vocabulary are corrected to the
nearest vocabulary word (Damerau-Levenshtein distance 1, or 2 for words of
8+ letters; ties go to the more frequent word) with a SymSpell-style
deletion index, so "wodden chiar" finds "wooden chair". The vocabulary is
read from the item mirror and refreshed when the catalogue changes.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection, connections
from django.db.models import Max

from ..conf import ragrec_settings, text_searches
from ..models import Item
from ..ranking.tokenise import has_cjk, tokeniser
from .ann import ItemFilter
from .database import on_read_database
from .items import INDEXED_TEXT_MAX_CHARS, local_catalogue_changes

WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
VOCABULARY_TTL_SECONDS = 30


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment (Damerau-Levenshtein) distance."""
    previous2, previous = None, list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = ca != cb
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if previous2 is not None and i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _deletes(word: str, depth: int) -> set[str]:
    found, frontier = set(), {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        found |= frontier
    return found


def max_distance(word: str) -> int:
    return 2 if len(word) >= 8 else 1 if len(word) >= 4 else 0


#: PostgreSQL text-search configurations -> the language's word list in pyspellchecker.
SPELLING_LANGUAGES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "portuguese": "pt", "italian": "it",
    "russian": "ru", "dutch": "nl", "arabic": "ar", "basque": "eu",
}  # fmt: skip


@functools.lru_cache(maxsize=16)
def language_words(configuration: str) -> frozenset[str]:
    """Words of the search language (pyspellchecker's frequency list), never corrected to catalogue words.

    Empty for a configuration without a list (e.g. "simple"), or without the package installed.
    """
    code = SPELLING_LANGUAGES.get(str(configuration).lower())
    if code is None:
        return frozenset()
    try:
        from importlib.resources import files

        resource = files("spellchecker") / "resources" / ("%s.json.gz" % code)
        with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
            return frozenset(word.lower() for word in json.load(text))
    except (ImportError, OSError, ValueError):
        return frozenset()


class SpellingCorrector:
    """Corrects words to a vocabulary ({word: frequency}) by small edit distances.

    A word of the vocabulary, or of the search language (``language``), is never changed: "tell" stays
    "tell" in a shop that sells tall vases. Nor is a word of a script written without spaces (Chinese,
    Japanese, Korean): one character away is another word there, not a typo.
    """

    def __init__(self, vocabulary: dict[str, int], language: frozenset[str] = frozenset()):
        self.vocabulary = vocabulary
        self.language = language
        self._index: dict[str, list[str]] = defaultdict(list)
        for word in vocabulary:
            if has_cjk(word):
                continue  # never a correction (see ``correct``): no deletions to index
            for variant in _deletes(word, max_distance(word)) | {word}:
                self._index[variant].append(word)

    def correct(self, word: str) -> str:
        word = word.lower()
        limit = max_distance(word)
        if word in self.vocabulary or word in self.language or limit == 0 or has_cjk(word):
            return word
        candidates = {c for variant in _deletes(word, limit) | {word} for c in self._index.get(variant, ())}
        scored = [(edit_distance(word, c), -self.vocabulary[c], c) for c in candidates]
        scored = [s for s in scored if s[0] <= limit]
        return min(scored)[2] if scored else word

    def correct_query(self, query: str, keep: frozenset[str] | set[str] = frozenset()) -> str:
        """``query`` with each word corrected, except the words of ``keep`` (lower case)."""
        return WORD.sub(lambda m: m.group(0) if m.group(0).lower() in keep else self.correct(m.group(0)), query)


@dataclass
class _Cached:
    fingerprint: tuple
    local_changes: int
    value: Any


_cache: dict[tuple[str, str], _Cached] = {}
#: The catalogue's fingerprint per database, and when it was read (shared by every cached value).
_fingerprints: dict[str, tuple[float, tuple]] = {}
_lock = threading.Lock()


def _catalogue_fingerprint() -> tuple:
    stats = Item.objects.aggregate(last=Max("updated_at"))
    return (Item.objects.count(), stats["last"])


def _recent_fingerprint(alias: str, now: float) -> tuple:
    """The catalogue's fingerprint, read at most once every ``VOCABULARY_TTL_SECONDS`` per process and database."""
    checked = _fingerprints.get(alias)
    if checked is None or now - checked[0] >= VOCABULARY_TTL_SECONDS:
        checked = (now, _catalogue_fingerprint())
        with _lock:
            _fingerprints[alias] = checked
    return checked[1]


def catalogue_cached(name: str, build: Callable[[], Any]) -> Any:
    """``build()``, a value read from the item mirror, cached per process and database under ``name``.

    Rebuilt at once when this process changed the catalogue, and within
    ``VOCABULARY_TTL_SECONDS`` when another process did (one fingerprint query
    per period, whatever the number of cached values).
    """
    alias = connection.alias
    key = (alias, name)
    cached = _cache.get(key)
    now = time.monotonic()
    changes = local_catalogue_changes()
    if cached is not None and cached.local_changes == changes and cached.fingerprint == _recent_fingerprint(alias, now):
        return cached.value
    fingerprint = _catalogue_fingerprint()
    value = build()
    with _lock:
        _fingerprints[alias] = (now, fingerprint)
        _cache[key] = _Cached(fingerprint, changes, value)
    return value


#: Shortest title ``products_named_in`` looks for (shorter ones are common words), and its index's key length.
NAMED_TITLE_MIN_CHARS = 6


def products_named_in(text: str) -> list[tuple[str, str]]:
    """``(key, title)`` of the items whose full title (6+ characters) appears in ``text``, case-insensitively.

    Reads a per-process index of every title by its first six characters, then by its length
    (``catalogue_cached``: rebuilt when this process changes the catalogue, within ``VOCABULARY_TTL_SECONDS``
    when another does): one set lookup per title length at each place the text could start a title, instead of
    a scan of the item table per call.
    """
    index = catalogue_cached("titles-by-prefix", _titles_by_prefix)
    lower = text.lower()
    found, seen = [], set()
    for start in range(len(lower) - NAMED_TITLE_MIN_CHARS + 1):
        for length, titles in index.get(lower[start : start + NAMED_TITLE_MIN_CHARS], {}).items():
            for key, title in titles.get(lower[start : start + length], ()):
                if key not in seen:
                    seen.add(key)
                    found.append((key, title))
    return found


def _titles_by_prefix() -> dict[str, dict[int, dict[str, list[tuple[str, str]]]]]:
    """{first six characters: {length: {lower-case title: [(key, title)]}}} of every title of 6+ characters."""
    index: dict[str, dict[int, dict[str, list[tuple[str, str]]]]] = {}
    for key, title in Item.objects.values_list("key", "title").iterator(chunk_size=10000):
        if len(title) >= NAMED_TITLE_MIN_CHARS:
            lowered = title.lower()
            by_length = index.setdefault(lowered[:NAMED_TITLE_MIN_CHARS], {})
            by_length.setdefault(len(lowered), {}).setdefault(lowered, []).append((key, title))
    return index


def spelling_corrector() -> SpellingCorrector:
    """The vocabulary corrector of the current catalogue (``catalogue_cached``)."""
    return catalogue_cached("spelling", _build_corrector)


def _build_corrector() -> SpellingCorrector:
    with connection.cursor() as cursor:
        # The text as the index has it (its first INDEXED_TEXT_MAX_CHARS): a longer one could pass the 1 MB
        # tsvector limit and fail this statement, and with it every search.
        cursor.execute(
            "SELECT word, ndoc FROM ts_stat($$SELECT to_tsvector('simple', title || ' ' || category || ' ' || "
            "left(text, %d)) FROM %s WHERE is_eligible$$)"
            % (INDEXED_TEXT_MAX_CHARS, connection.ops.quote_name(Item._meta.db_table))
        )
        vocabulary = {word: ndoc for word, ndoc in cursor.fetchall() if WORD.fullmatch(word)}
    languages = frozenset().union(*(language_words(config) for config, _ in text_searches()))
    return SpellingCorrector(with_cjk_words(vocabulary), languages)


def with_cjk_words(vocabulary: dict[str, int]) -> dict[str, int]:
    """``vocabulary`` plus the words the tokenisers in use (``SEARCH_TOKENISER``, ``SEARCH_LANGUAGES``) find in its
    CJK runs (as the index has them), each with the largest count of a run containing it: the words a query's CJK
    words are compared with."""
    splitters = [tokeniser(name) for name in dict.fromkeys(name for _, name in text_searches())]
    found = dict(vocabulary)
    for run, count in vocabulary.items():
        if has_cjk(run):
            for words in splitters:
                for word in words.words(run):
                    if WORD.fullmatch(word) and found.get(word, 0) < count:
                        found[word] = count
    return found


#: Eligible items only (``ItemFilter`` is frozen: one shared default is safe).
ELIGIBLE_ITEMS = ItemFilter()


@dataclass(frozen=True)
class KeywordMatches:
    """Items matching a query by full text, best first (``(item id, rank)``), and how strictly they match:
    ``strict`` when every word, or every word the catalogue knows, matched (not just any one word)."""

    rows: list[tuple[int, float]]
    strict: bool


def keyword_search(query: str, k: int, *, filters: ItemFilter = ELIGIBLE_ITEMS) -> tuple[list[tuple[int, float]], str]:
    """Items matching ``query`` by full-text search, best first, and the query as corrected.

    All words must match (websearch syntax: quotes, OR, -word); when nothing
    does, all the words the catalogue knows must match (a word no item has
    cannot match); failing that, any word may.
    """
    corrected = spelling_corrector().correct_query(query)
    return keyword_matches(corrected, k, filters=filters).rows, corrected


def keyword_matches(
    text: str, k: int, *, filters: ItemFilter = ELIGIBLE_ITEMS, groups: Sequence[Sequence[str]] | None = None
) -> KeywordMatches:
    """Items matching ``text`` (not corrected here), as ``keyword_search`` finds them.

    ``groups``: the query as parts, each a list of phrases any of which may match (a word and its
    synonyms: ``[["warm"], ["jumper", "sweater"]]``); given, they replace ``text``'s websearch syntax.
    Text and phrases are split by each tokeniser the index was written with, and searched with each text-search
    configuration (``conf.text_searches``: ``SEARCH_LANGUAGE`` and ``SEARCH_TOKENISER``, and those of
    ``SEARCH_LANGUAGES``), their tsqueries OR-ed (``any_of``): an item matches when its vector, written in its own
    language's configuration, matches the query as any of them reads it.
    """
    vocabulary = spelling_corrector().vocabulary
    attempts = _combined(
        [
            _group_attempts(config, [[words.query_text(p) for p in phrases] for phrases in groups], vocabulary)
            if groups
            else _text_attempts(config, words.query_text(text), vocabulary)
            for config, words in ((config, tokeniser(name)) for config, name in text_searches())
        ]
    )
    conditions, params = filters.sql("i")
    table = connection.ops.quote_name(Item._meta.db_table)
    # Ranking reads every matching row; a query of common words can match much of a large catalogue,
    # so only the first KEYWORD_RANK_LIMIT matches are ranked (the semantic retrievers it is fused
    # with order the rest).
    sql = (
        "WITH query AS (SELECT {tsquery} AS q) "
        "SELECT m.id, ts_rank_cd(m.search_vector, query.q) AS rank FROM query, "
        "(SELECT i.id, i.search_vector FROM {table} i, query WHERE i.search_vector @@ query.q{conditions} LIMIT %s) m "
        "ORDER BY rank DESC, m.id LIMIT %s"
    )

    def run(using: str) -> KeywordMatches:  # on RAGREC["READ_DATABASE"]; the vocabulary is cached from "default"
        rows, strict = [], False
        with connections[using].cursor() as cursor:
            for tsquery, query_params, kind in attempts:
                cursor.execute(
                    sql.format(table=table, tsquery=tsquery, conditions=conditions),
                    [*query_params, *params, max(int(ragrec_settings.KEYWORD_RANK_LIMIT), int(k)), int(k)],
                )
                rows = cursor.fetchall()
                if rows:
                    strict = kind != "any"
                    break
        return KeywordMatches([(item_id, float(rank)) for item_id, rank in rows], strict)

    return on_read_database(run)


#: The kinds of keyword attempts, strictest first.
ATTEMPT_KINDS = ("all", "known", "any")


def any_of(tsqueries: Sequence[str]) -> str:
    """SQL of a tsquery matching what any of the ``tsqueries`` (SQL expressions) matches: their distinct non-empty
    forms OR-ed (a word most configurations stem alike is one operand, not one per configuration: ranking and
    checking a row cost per operand). NULL, which matches nothing, when all are empty (only stop words)."""
    if len(tsqueries) == 1:
        return tsqueries[0]
    return (
        "(SELECT string_agg(DISTINCT '(' || t::text || ')', ' | ')::tsquery FROM unnest(ARRAY[%s]) AS t "
        "WHERE numnode(t) > 0)" % ", ".join(tsqueries)
    )


def _combined(per_search: list[list[tuple[str, list, str]]]) -> list[tuple[str, list, str]]:
    """The attempts of one query in several text searches (configuration and tokeniser), as one list: each kind's
    tsqueries OR-ed (``any_of``); a search without an attempt of that kind takes its stricter one."""
    if len(per_search) == 1:
        return per_search[0]
    combined = []
    latest: list[tuple[str, list] | None] = [None] * len(per_search)
    for kind in ATTEMPT_KINDS:
        present = False
        for index, attempts in enumerate(per_search):
            for sql, params, their_kind in attempts:
                if their_kind == kind:
                    latest[index], present = (sql, params), True
        if present:
            parts = [part for part in latest if part is not None]
            combined.append(
                (
                    any_of([sql for sql, _ in parts]),
                    [value for _, values in parts for value in values],
                    kind,
                )
            )
    return combined


def _text_attempts(language: str, text: str, vocabulary: dict[str, int]) -> list[tuple[str, list, str]]:
    """All words (websearch syntax), then the words the catalogue knows, then any word."""
    attempts = [("websearch_to_tsquery(%s::regconfig, %s)", [language, text], "all")]
    words = [word.lower() for word in WORD.findall(text)]
    known = [word for word in words if word in vocabulary]
    if known:
        attempts.append(("plainto_tsquery(%s::regconfig, %s)", [language, " ".join(known)], "known"))
    if len(known or words) > 1:
        text = " | ".join("'%s'" % word for word in known or words)
        attempts.append(("to_tsquery(%s::regconfig, %s)", [language, text], "any"))
    return attempts


def _group_attempts(
    language: str, groups: Sequence[Sequence[str]], vocabulary: dict[str, int]
) -> list[tuple[str, list, str]]:
    """Every part (one of its phrases), then the parts with a word the catalogue knows, then any part."""

    def part(phrases: Sequence[str]) -> tuple[str, list]:
        sql = " || ".join(["plainto_tsquery(%s::regconfig, %s)"] * len(phrases))
        return "(%s)" % sql, [value for phrase in phrases for value in (language, phrase)]

    def joined(selected, operator: str) -> tuple[str, list]:
        parts = [part(phrases) for phrases in selected]
        return operator.join(sql for sql, _ in parts), [value for _, values in parts for value in values]

    groups = [list(phrases) for phrases in groups if phrases]
    known = [phrases for phrases in groups if any(w.lower() in vocabulary for p in phrases for w in WORD.findall(p))]
    attempts = [(*joined(groups, " && "), "all")]
    if known and len(known) < len(groups):
        attempts.append((*joined(known, " && "), "known"))
    if len(known or groups) > 1:
        attempts.append((*joined(known or groups, " || "), "any"))
    return attempts
