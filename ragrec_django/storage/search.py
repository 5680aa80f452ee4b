"""SQL of search beyond full text: the catalogue's attribute vocabulary, facets, filters' support, merchandiser
synonyms, the search log and its analytics, and autocomplete look-ups.

Facet counts of a result set are one statement (``facet_counts``), as are the support of the terms of a query
(``term_support``) and each analytics table. The catalogue reads of a search (facets, support, browsing,
autocomplete titles) go to ``RAGREC["READ_DATABASE"]`` when one is configured, as keyword search does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Count, Max

from ..models import Interaction, Item, SearchLog, SearchRule, SearchSynonym
from .ann import ItemFilter
from .database import insert_analytics_row, rows_from_read_database
from .interactions import table_name, visitor_condition
from .keyword import ELIGIBLE_ITEMS, any_of, catalogue_cached

#: How long a process keeps the merchandiser's synonyms before checking for changes.
SYNONYMS_TTL_SECONDS = 10
#: A click, add to cart or purchase this soon after a search, on an item it showed, counts for it.
ATTRIBUTION_WINDOW = timedelta(minutes=30)


# ---------------------------------------------------------------- vocabulary


def attribute_values(attributes: Sequence[str]) -> dict[str, dict[str, int]]:
    """The catalogue's vocabulary: {"category": {name: items}, attribute: {value: items}} over eligible items,
    cached per process and refreshed when items change (``keyword.catalogue_cached``)."""
    return catalogue_cached("attributes:" + ",".join(attributes), lambda: _read_attribute_values(attributes))


def _read_attribute_values(attributes: Sequence[str]) -> dict[str, dict[str, int]]:
    sql = (
        f"SELECT 'category', category, count(*) FROM {table_name(Item)} WHERE is_eligible AND category <> '' GROUP BY category "
        "UNION ALL "
        f"SELECT a.key, a.value, count(*) FROM {table_name(Item)} i, jsonb_each_text(i.metadata) a "
        "WHERE i.is_eligible AND a.key = ANY(%s) AND a.value <> '' GROUP BY a.key, a.value"
    )
    values: dict[str, dict[str, int]] = {"category": {}}
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(attributes)])
        for attribute, value, count in cursor.fetchall():
            values.setdefault(attribute, {})[value] = count
    return values


# ---------------------------------------------------------------- result sets


@dataclass(frozen=True)
class ItemFacts:
    category: str
    attributes: dict
    price: Decimal | None
    created_at: datetime


def item_facts(item_ids: Iterable[int]) -> dict[int, ItemFacts]:
    """Category, attributes (metadata), price and first-seen time of these items, in one query."""
    rows = Item.objects.filter(id__in=list(item_ids)).values_list("id", "category", "metadata", "price", "created_at")
    return {row[0]: ItemFacts(row[1], row[2] or {}, row[3], row[4]) for row in rows}


def facet_counts(
    item_ids: Sequence[int], *, attributes: Sequence[str], price_bands: Sequence[Decimal] | None, groups: bool = True
) -> dict[str, list[tuple[str, int]]]:
    """How many of ``item_ids`` have each category, each value of ``attributes`` and (with ``price_bands``,
    ascending upper bounds) each price band, most first: one statement. With ``groups``, the variants of one
    product (``group_key``) count once, as results show them.

    Price bands are named by their index: "0" below the first bound, "i" from bound i-1 up to bound i, and
    ``len(price_bands)`` from the last bound up.
    """
    unit = "count(DISTINCT COALESCE(NULLIF(%s, ''), 'i' || %s::text))"
    parts = [
        "SELECT 'category', category, %s FROM result WHERE category <> '' GROUP BY category"
        % (unit % ("group_key", "id") if groups else "count(*)")
    ]
    params: list = [list(item_ids)]
    if attributes:
        parts.append(
            "SELECT a.key, a.value, %s FROM result r, jsonb_each_text(r.metadata) a "
            "WHERE a.key = ANY(%%s) AND a.value <> '' GROUP BY a.key, a.value"
            % (unit % ("r.group_key", "r.id") if groups else "count(*)")
        )
        params.append(list(attributes))
    if price_bands:
        parts.append(
            "SELECT 'price', width_bucket(price, %%s::numeric[])::text, %s FROM result "
            "WHERE price IS NOT NULL GROUP BY 2" % (unit % ("group_key", "id") if groups else "count(*)")
        )
        params.append([Decimal(str(bound)) for bound in price_bands])
    sql = "WITH result AS (SELECT id, group_key, category, metadata, price FROM {items} WHERE id = ANY(%s)) {parts}".format(
        items=table_name(Item), parts=" UNION ALL ".join(parts)
    )
    found: dict[str, list[tuple[str, int]]] = {}
    for facet, value, count in rows_from_read_database(sql, params):
        found.setdefault(facet, []).append((value, count))
    for values in found.values():
        values.sort(key=lambda entry: (-entry[1], entry[0]))
    return found


def term_support(base: ItemFilter, terms: Sequence[ItemFilter]) -> list[int]:
    """For each filter of ``terms``, how many items pass both ``base`` and it: one statement."""
    if not terms:
        return []
    columns, params = [], []
    for term in terms:
        condition, term_params = term.sql("i")
        columns.append("count(*) FILTER (WHERE TRUE%s)" % condition)
        params += term_params
    base_sql, base_params = base.sql("i")
    sql = "SELECT %s FROM %s i WHERE TRUE%s" % (", ".join(columns), table_name(Item), base_sql)
    return list(rows_from_read_database(sql, params + base_params)[0])


def passing_filters(filters: ItemFilter, item_ids: Sequence[int]) -> set[int]:
    """Those of ``item_ids`` that pass ``filters``."""
    if not item_ids:
        return set()
    conditions, params = filters.sql("i")
    sql = "SELECT i.id FROM %s i WHERE i.id = ANY(%%s)%s" % (table_name(Item), conditions)
    return {row[0] for row in rows_from_read_database(sql, [list(item_ids), *params])}


def browse(filters: ItemFilter, k: int) -> list[tuple[int, float]]:
    """Items passing ``filters``, newest first (a query that is only a price): ``(item id, score)``."""
    conditions, params = filters.sql("i")
    sql = "SELECT i.id FROM %s i WHERE TRUE%s ORDER BY i.created_at DESC, i.id DESC LIMIT %%s" % (
        table_name(Item),
        conditions,
    )
    ids = [row[0] for row in rows_from_read_database(sql, [*params, int(k)])]
    return [(item_id, 1.0 - index / max(len(ids), 1)) for index, item_id in enumerate(ids)]


# ---------------------------------------------------------------- synonyms


_merchandising: dict[tuple[str, str], tuple[float, tuple, list]] = {}
_merchandising_lock = threading.Lock()


def _rows_cached(model, read) -> list:
    """``read()`` (rows of ``model``), kept per process and database for ``SYNONYMS_TTL_SECONDS`` and then read
    again only when a row changed (one small query: the latest change and the row count)."""
    key = (connection.alias, model._meta.label)
    now = time.monotonic()
    cached = _merchandising.get(key)
    if cached is not None and now - cached[0] < SYNONYMS_TTL_SECONDS:
        return cached[2]
    stamp = tuple(model.objects.aggregate(last=Max("updated_at"), rows=Count("id")).values())
    rows = cached[2] if cached is not None and cached[1] == stamp else read()
    with _merchandising_lock:
        _merchandising[key] = (now, stamp, rows)
    return rows


def active_synonyms() -> list[tuple[str, list[str], bool]]:
    """The merchandiser's active synonym rules ``(term, synonyms, two way)``, re-read at most every
    ``SYNONYMS_TTL_SECONDS`` and only when a row changed (one small query)."""
    return _rows_cached(
        SearchSynonym,
        lambda: [(row.term, row.synonym_list, row.two_way) for row in SearchSynonym.objects.filter(is_active=True)],
    )


def active_search_rules() -> list[tuple[int, str, str, dict]]:
    """The merchandiser's active per-query rules ``(id, query, redirect URL, serving rules)``, cached as the
    synonyms."""
    return _rows_cached(
        SearchRule,
        lambda: list(SearchRule.objects.filter(is_active=True).values_list("id", "query", "redirect_url", "rules")),
    )


def search_redirects(exclude_id: int | None = None) -> dict[str, str]:
    """Every active redirect, {query: URL}, read now (for checking a rule before it is saved)."""
    rows = SearchRule.objects.filter(is_active=True).exclude(redirect_url="")
    if exclude_id is not None:
        rows = rows.exclude(id=exclude_id)
    return dict(rows.values_list("query", "redirect_url"))


def forget_synonyms() -> None:
    """Read the synonyms and the per-query rules again on next use (after this process changed them)."""
    with _merchandising_lock:
        _merchandising.clear()


# ---------------------------------------------------------------- search log


def log_search(row: SearchLog) -> None:
    """Insert one search log row (``database.insert_analytics_row``: its own transaction, no wait for the WAL
    flush)."""
    insert_analytics_row(row)


def purge_search_log(before: datetime) -> int:
    """Delete the log rows older than ``before``; how many."""
    deleted, _ = SearchLog.objects.filter(created_at__lt=before).delete()
    return deleted


@dataclass(frozen=True)
class QueryStats:
    query: str
    searches: int
    zero_results: int  # searches that found nothing by their words
    clicked: int
    carted: int
    results: float  # average result count

    @property
    def ctr(self) -> float | None:
        return self.clicked / self.searches if self.searches else None


def query_stats(start: datetime, end: datetime, *, order: str, limit: int, min_searches: int = 1) -> list[QueryStats]:
    """Normalised queries searched in ``[start, end)``: one statement.

    Per query: searches; searches that found nothing by their words (no result, or none containing the
    query's words: only the semantic retrievers answered); searches followed by a click, and by an add to
    cart or purchase (same visitor, an item shown, within ``ATTRIBUTION_WINDOW`` and before the visitor's next
    search); the average result count.
    ``order``: "searches", "zero" (queries with such searches only) or "ctr" (lowest click-through first),
    among queries searched at least ``min_searches`` times.
    """
    order_by = {
        "searches": "searches DESC, query",
        "zero": "zero DESC, searches DESC, query",
        "ctr": "clicked::float / searches, searches DESC, query",
    }[order]
    followed = (
        f"EXISTS (SELECT 1 FROM {table_name(Interaction)} e JOIN {table_name(Item)} it ON it.id = e.item_id "
        "WHERE e.event = ANY(%s) AND e.created_at >= s.created_at AND e.created_at < s.created_at + %s "
        "AND it.key = ANY(s.item_keys) AND CASE WHEN s.user_id IS NOT NULL THEN e.user_id = s.user_id "
        "ELSE s.session_key <> '' AND e.session_key = s.session_key END "
        f"AND NOT EXISTS (SELECT 1 FROM {table_name(SearchLog)} n WHERE n.created_at > s.created_at "
        "AND n.created_at <= e.created_at AND n.user_id IS NOT DISTINCT FROM s.user_id "
        "AND n.session_key = s.session_key))"
    )
    sql = (
        "SELECT * FROM (SELECT normalised AS query, count(*) AS searches, "
        "count(*) FILTER (WHERE result_count = 0 OR matched = 0) AS zero, "
        f"count(*) FILTER (WHERE {followed}) AS clicked, count(*) FILTER (WHERE {followed}) AS carted, "
        f"avg(result_count) AS results FROM {table_name(SearchLog)} s WHERE created_at >= %s AND created_at < %s "
        "GROUP BY normalised) stats WHERE searches >= %s"
        + (" AND zero > 0" if order == "zero" else "")
        + f" ORDER BY {order_by} LIMIT %s"
    )
    window = ATTRIBUTION_WINDOW
    params = [["click"], window, ["add_to_cart", "purchase"], window, start, end, int(min_searches), int(limit)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            QueryStats(q, n, zero, clicked, carted, float(results or 0))
            for q, n, zero, clicked, carted, results in cursor.fetchall()
        ]


def daily_searches(start: datetime, end: datetime, timezone_name: str) -> list[tuple[date, int, int]]:
    """``(day, searches, zero-result searches)`` per day (in ``timezone_name``) of ``[start, end)``."""
    sql = (
        "SELECT (created_at AT TIME ZONE %s)::date AS day, count(*), "
        "count(*) FILTER (WHERE result_count = 0 OR matched = 0) "
        f"FROM {table_name(SearchLog)} WHERE created_at >= %s AND created_at < %s GROUP BY day ORDER BY day"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [timezone_name, start, end])
        return cursor.fetchall()


# ---------------------------------------------------------------- autocomplete


def popular_queries(since: datetime, limit: int) -> list[tuple[str, int]]:
    """Normalised queries that found something since ``since``, most searched first (by distinct visitors)."""
    sql = (
        "SELECT normalised, count(DISTINCT COALESCE('u' || user_id::text, NULLIF('s' || session_key, 's'), "
        f"'r' || id::text)) AS visitors FROM {table_name(SearchLog)} WHERE created_at >= %s AND result_count > 0 AND normalised <> '' "
        "GROUP BY normalised ORDER BY visitors DESC, normalised LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [since, int(limit)])
        return cursor.fetchall()


def titles_matching(
    words: Sequence[str],
    last: Sequence[str],
    k: int,
    *,
    prefix: bool = True,
    filters: ItemFilter = ELIGIBLE_ITEMS,
    languages: Sequence[str] = ("simple",),
) -> list[tuple[str, str, str]]:
    """``(title, url, category)`` of up to ``k`` items whose text has every word of ``words`` and one of ``last``
    (with ``prefix``: a word starting with ``last[0]``), in one of the text-search configurations ``languages``;
    titles starting with the words first, then shorter ones."""
    conditions, params = filters.sql("i")
    if not last or not last[0]:
        return []

    def quoted(word: str) -> str:
        return "'%s'" % word.replace("'", "''").replace("\\", "")

    alternatives = "%s:*" % quoted(last[0]) if prefix else "(%s)" % " | ".join(quoted(w) for w in last)
    tsquery = " & ".join([*(quoted(w) for w in words if w), alternatives])
    typed = " ".join((*words, last[0])).lower().replace("%", "").replace("_", "")
    languages = list(dict.fromkeys(languages)) or ["simple"]
    matches = any_of(["to_tsquery(%s::regconfig, %s)"] * len(languages))
    sql = (
        f"SELECT title, url, category FROM (SELECT i.title, i.url, i.category, i.id FROM {table_name(Item)} i "
        f"WHERE i.search_vector @@ {matches}{conditions} LIMIT 200) m "
        "ORDER BY lower(title) LIKE %s DESC, length(title), id LIMIT %s"
    )
    searched = [value for language in languages for value in (language, tsquery)]
    return rows_from_read_database(sql, [*searched, *params, typed + "%", int(k)])


def recent_categories(user_id: int | None, session_key: str, limit: int = 3) -> list[str]:
    """The categories of the items a visitor looked at or bought most recently (newest first)."""
    visitor = visitor_condition(user_id, session_key)
    if visitor is None:
        return []
    condition, params = visitor
    sql = (
        f"SELECT i.category FROM (SELECT e.item_id, e.created_at FROM {table_name(Interaction)} e WHERE {condition} "
        f"AND e.item_id IS NOT NULL ORDER BY e.created_at DESC LIMIT 50) recent JOIN {table_name(Item)} i ON i.id = recent.item_id "
        "WHERE i.category <> '' GROUP BY i.category ORDER BY max(recent.created_at) DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, int(limit)])
        return [row[0] for row in cursor.fetchall()]


__all__ = [
    "ATTRIBUTION_WINDOW",
    "ItemFacts",
    "QueryStats",
    "active_search_rules",
    "active_synonyms",
    "attribute_values",
    "browse",
    "daily_searches",
    "facet_counts",
    "forget_synonyms",
    "item_facts",
    "log_search",
    "passing_filters",
    "popular_queries",
    "purge_search_log",
    "query_stats",
    "recent_categories",
    "search_redirects",
    "term_support",
    "titles_matching",
]
