"""Nearest-neighbour queries in a space's active generation, under business filters (``ItemFilter``).

Each generation has a partial HNSW index restricted to its rows: on ``vector::halfvec(<dim>)``
(cosine), or, for a space with ``"INDEX": "binary"``, on ``binary_quantize(vector)::bit(<dim>)``
(Hamming), whose top ``RERANK_DEPTH`` candidates are re-ranked by their exact halfvec cosine
distance. The queries here use exactly the index's expression so the planner picks it.
``hnsw.ef_search`` is estimated per filter; selective filters, and index scans that stop
short, fall back to an exact scan.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
from django.db import connection, connections, transaction

from ..conf import ragrec_settings
from ..models import Embedding, Item, SpaceGeneration
from ..registry import get_spaces
from . import centroids, vector_cache
from .database import on_read_database, run_with_local_settings
from .generations import SpaceNotReady, active_generation, binary_index_name, create_index, snapshot_memo
from .partitions import generation_partition
from .vectors import check_vectors


@dataclass(frozen=True)
class Neighbour:
    item_id: int
    distance: float


@dataclass(frozen=True)
class ItemFilter:
    """Business filters applied inside nearest-neighbour and keyword queries."""

    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock_only: bool = False
    exclude_ids: frozenset[int] = frozenset()
    only_ids: frozenset[int] | None = None
    eligible_only: bool = True
    #: Variant groups to leave out (e.g. the viewed product's other colours).
    exclude_group_keys: tuple[str, ...] = ()
    #: ``(metadata key, values)`` pairs: the item's attribute must be one of the values (search facets).
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def broad(self) -> bool:
        """Whether only eligibility and exclusions filter (most items pass)."""
        return not (
            self.categories
            or self.exclude_categories
            or self.in_stock_only
            or self.only_ids is not None
            or self.min_price is not None
            or self.max_price is not None
            or self.attributes
        )

    @property
    def selective(self) -> bool:
        """Whether the filter can narrow the catalogue to a few items (worth counting them)."""
        return bool(self.categories) or self.only_ids is not None

    def sql(self, alias: str = "i") -> tuple[str, list]:
        """``AND ...`` conditions on the item table ``alias`` and their parameters."""
        clauses, params = [], []
        if self.eligible_only:
            clauses.append("{a}.is_eligible")
        if self.categories:
            clauses.append("{a}.category = ANY(%s)")
            params.append(list(self.categories))
        if self.exclude_categories:
            clauses.append("NOT ({a}.category = ANY(%s))")
            params.append(list(self.exclude_categories))
        if self.min_price is not None:
            clauses.append("{a}.price >= %s")
            params.append(self.min_price)
        if self.max_price is not None:
            clauses.append("{a}.price <= %s")
            params.append(self.max_price)
        if self.in_stock_only:
            clauses.append("{a}.in_stock")
        if self.exclude_ids:
            clauses.append("NOT ({a}.id = ANY(%s))")
            params.append(sorted(self.exclude_ids))
        if self.only_ids is not None:
            clauses.append("{a}.id = ANY(%s)")
            params.append(sorted(self.only_ids))
        if self.exclude_group_keys:
            clauses.append("NOT ({a}.group_key = ANY(%s))")
            params.append(list(self.exclude_group_keys))
        for name, values in self.attributes:
            clauses.append("{a}.metadata->>%s = ANY(%s)")
            params += [name, list(values)]
        return "".join(" AND " + c.format(a=alias) for c in clauses), params


NO_FILTER = ItemFilter(eligible_only=False)


#: Filters matching at most this many items are searched exactly: an HNSW scan from a query far
#: from a small filtered set walks the graph outward and can miss some of it (recall < 0.95),
#: while an exact scan of a few thousand vectors takes a few milliseconds.
EXACT_SEARCH_MAX_ROWS = 5000
#: With the process's vector cache (``vector_cache``), filters matching up to this many items are ranked
#: exactly from it (a gather and a matrix product) rather than by a filtered HNSW scan, which costs tens of
#: ms for a 5-10% filter at 100k and still misses part of it; at 1M a 5% category (50,000 items) queried from
#: far away exhausted the scan's tuple budget (recall@10 0.56, ~0.5 s with the exact fallback:
#: docs/benchmarks.md, "1,000,000 items").
EXACT_CACHED_MAX_ROWS = 60_000


def nearest(
    space_name: str,
    query: np.ndarray,
    k: int,
    *,
    filters: ItemFilter = ItemFilter(),
    exact: bool = False,
    ef_search: int | None = None,
    rerank_depth: int | None = None,
) -> list[Neighbour]:
    """The ``k`` items nearest to ``query`` (cosine distance) in the space's active generation.

    Filters are applied inside the query; HNSW iterative scans (pgvector 0.8)
    keep scanning until ``k`` rows pass them. A selective filter (by
    category or ids, matching at most ``EXACT_SEARCH_MAX_ROWS`` items) is
    searched exactly over the ids of those items (read once per
    ``generation_snapshot()``, whatever the number of spaces), and should an index scan still stop short (its tuple
    budget spent), the query is re-run exactly, so ``k`` results come back
    whenever ``k`` items match. Runs in its own transaction so ``SET LOCAL``
    settings apply to this query only. ``exact=True`` disables the index
    (ground truth for recall measurements). A generation with a binary index
    re-ranks ``rerank_depth`` candidates (default: the space's
    ``RERANK_DEPTH``). Unless the filters are selective, the small categories
    whose centroids are nearest the query are also ranked exactly
    (``QUERY_CATEGORIES``, ``_with_nearest_categories``). Runs on
    ``RAGREC["READ_DATABASE"]`` (``database.on_read_database``).
    """
    generation = _require_active(space_name)
    vector = check_vectors(np.asarray(query, dtype=np.float32).reshape(1, -1), generation.dimension)[0]
    search = _Search(
        generation, "%s::halfvec({dim})", [_halfvec_text(vector)], k, filters, ef_search, rerank_depth, vector=vector
    )
    found = on_read_database(lambda using: _nearest(search, exact, using))
    if not exact and not filters.selective and query_categories() > 0 and small_category_rows() > 0:
        found = on_read_database(lambda using: _with_nearest_categories(search, found, using))
    return found


def nearest_to_item(
    space_name: str,
    item_id: int,
    k: int,
    *,
    filters: ItemFilter = ItemFilter(),
    ef_search: int | None = None,
    rerank_depth: int | None = None,
) -> list[Neighbour] | None:
    """The ``k`` items nearest to a stored item's own vector (one query); None if it has no vector. Unless the
    filters are selective, the anchor's own category, when it is small, and the categories whose centroids are
    nearest the anchor that fit beside it are also ranked exactly (``SMALL_CATEGORY_ROWS``, ``QUERY_CATEGORIES``,
    ``_with_anchor_category``)."""
    generation = _require_active(space_name)
    anchor = "(SELECT a.vector::halfvec({dim}) FROM {embeddings} a WHERE a.generation_id = %s AND a.item_id = %s)"
    search = _Search(
        generation, anchor, [generation.pk, int(item_id)], k, filters, ef_search, rerank_depth, anchor_id=int(item_id)
    )
    found = on_read_database(lambda using: _nearest(search, False, using))
    if found and found[0].distance is None:
        return None
    if not filters.selective and small_category_rows() > 0:
        found = on_read_database(lambda using: _with_anchor_category(search, found, using))
    return found


def small_category_rows() -> int:
    """``RAGREC["HNSW"]["SMALL_CATEGORY_ROWS"]``: the most items ranked exactly beside the index: the anchor's
    category in ``nearest_to_item`` (by the planner's estimate), the categories nearest the query together in
    ``nearest`` (0: never)."""
    return int(ragrec_settings.HNSW.get("SMALL_CATEGORY_ROWS", 0))


def query_categories() -> int:
    """``RAGREC["HNSW"]["QUERY_CATEGORIES"]``: how many of the categories whose centroids are nearest a query
    ``nearest`` looks at, nearest first, to rank exactly those that fit in ``SMALL_CATEGORY_ROWS`` (0: none)."""
    return int(ragrec_settings.HNSW.get("QUERY_CATEGORIES", 0))


def _with_anchor_category(search: _Search, found: list[Neighbour], using: str) -> list[Neighbour]:
    """``found`` (the index's answer) merged with the exact ranking of the anchor's own category, when it is small
    (``small_category_rows``, by the planner's estimate), and of the categories whose centroids are nearest the
    anchor's vector that fit beside it (``_nearest_categories_that_fit``): the ``k`` nearest of both, never
    further than the index's.

    An HNSW graph reaches a small region far from the rest of a large catalogue poorly (a product line unlike
    the others: docs/benchmarks.md, "A real-text subset"); its items' nearest neighbours are mostly each other,
    and their categories name them. Costs one read of the anchor's category (and of its vector, from the vector
    cache) and one exact ranking of at most ``small_category_rows`` items (from the cache, else in PostgreSQL)."""
    items = connection.ops.quote_name(Item._meta.db_table)
    with connections[using].cursor() as cursor:
        cursor.execute(f"SELECT category FROM {items} WHERE id = %s", [search.anchor_id])
        row = cursor.fetchone()
    chosen, rows = [], 0.0
    if row is not None and row[0]:
        own_rows = _planner_estimates(replace(search.filters, categories=(row[0],)), using)[0]
        if own_rows <= small_category_rows():
            chosen, rows = [row[0]], own_rows
    routed = query_categories() > 0 and centroids.computed(search.generation, using)
    vector = vector_cache.cached_vector(search.generation, search.anchor_id, using) if routed else None
    if vector is not None:
        chosen = _nearest_categories_that_fit(replace(search, vector=vector), found, chosen, rows, using)
    return _with_categories(search, found, chosen, using)


def _with_nearest_categories(search: _Search, found: list[Neighbour], using: str) -> list[Neighbour]:
    """``found`` merged with the exact ranking of the categories nearest the query that fit
    (``_nearest_categories_that_fit``): what ``_with_anchor_category`` does for an anchor, for a query vector,
    which belongs to no category. Costs a product with the centroids (read once a minute) and one exact ranking of
    at most ``small_category_rows`` items; nothing before the centroids are first computed."""
    return _with_categories(search, found, _nearest_categories_that_fit(search, found, [], 0.0, using), using)


def _nearest_categories_that_fit(
    search: _Search, found: list[Neighbour], chosen: list[str], rows: float, using: str
) -> list[str]:
    """``chosen`` (holding ``rows`` items) and, nearest first, the categories among the ``query_categories`` whose
    centroids are nearest ``search.vector`` (``centroids.nearest_categories``) that fit beside them in
    ``small_category_rows`` items (by their sizes when the centroids were computed), unless the filters exclude
    them or their radius shows that none of their vectors is nearer than the ``k``-th of ``found``."""
    found_within = found[-1].distance if len(found) >= search.k and found[-1].distance is not None else None
    chosen = list(chosen)
    nearest = centroids.nearest_categories(search.generation, search.vector, query_categories(), using)
    for category, size, least_distance in nearest:
        if (
            rows + size <= small_category_rows()
            and (found_within is None or least_distance < found_within)
            and category not in chosen
            and category not in search.filters.exclude_categories
        ):
            chosen.append(category)
            rows += size
    return chosen


def _with_categories(search: _Search, found: list[Neighbour], chosen: list[str], using: str) -> list[Neighbour]:
    """``found`` merged with the exact ranking of the items of the ``chosen`` categories passing the filters."""
    if not chosen:
        return found
    in_chosen = replace(search.filters, categories=tuple(chosen))
    return _merged(search, found, _nearest(replace(search, filters=in_chosen), False, using))


def _merged(search: _Search, found: list[Neighbour], exact: list[Neighbour]) -> list[Neighbour]:
    """The ``k`` nearest of the index's answer and an exact ranking of part of the catalogue."""
    merged = {n.item_id: n for n in exact if n.distance is not None}
    merged.update({n.item_id: n for n in found})
    return sorted(merged.values(), key=lambda n: (n.distance, n.item_id))[: search.k]


def _require_active(space_name: str) -> SpaceGeneration:
    generation = active_generation(space_name)
    if generation is None:
        raise SpaceNotReady("Space %r has no encoded items yet." % space_name)
    return generation


def _halfvec_text(vector: np.ndarray) -> str:
    return "[" + ",".join(map(repr, vector.astype(np.float16).astype(np.float32).tolist())) + "]"


@dataclass(frozen=True)
class _Search:
    """One nearest-neighbour query: the query vector as SQL (``{dim}``/``{embeddings}`` placeholders)."""

    generation: SpaceGeneration
    query_sql: str
    query_params: list
    k: int
    filters: ItemFilter
    ef_search: int | None
    rerank_depth: int | None
    #: The query vector (``nearest``), or the item whose stored vector is the query (``nearest_to_item``).
    vector: np.ndarray | None = None
    anchor_id: int | None = None


def _nearest(search: _Search, exact: bool, using: str) -> list[Neighbour]:
    generation, filters, k = search.generation, search.filters, search.k
    conditions, filter_params = filters.sql("i")
    names = {
        "dim": int(generation.dimension),
        "embeddings": connection.ops.quote_name(Embedding._meta.db_table),
        "items": connection.ops.quote_name(Item._meta.db_table),
    }
    query_sql = search.query_sql.format(**names)
    candidates = (
        "SELECT e.item_id, (e.vector::halfvec({dim})) <=> " + query_sql + " AS distance "
        "FROM {embeddings} e JOIN {items} i ON i.id = e.item_id "
        "WHERE e.generation_id = %s{conditions}"
    ).format(conditions=conditions, **names)
    params = [*search.query_params, generation.pk, *filter_params, int(k)]
    if filters.selective and not exact:
        limit = _exact_limit()
        matching = _matching_item_ids(filters, limit + 1, using)
        cached = _exact_from_cache(search, matching, using) if len(matching) <= limit else None
        if cached is not None:
            return cached
        if len(matching) <= EXACT_SEARCH_MAX_ROWS:
            # Exact over the ids already read: the embeddings alone, one index scan, no join with the items.
            by_ids = (
                "SELECT e.item_id, (e.vector::halfvec({dim})) <=> " + query_sql + " AS distance "
                "FROM {embeddings} e WHERE e.generation_id = %s AND e.item_id = ANY(%s)"
            ).format(**names)
            rows = _run_exact_query(by_ids, [*search.query_params, generation.pk, matching, int(k)], using)
            return _sorted_neighbours(rows)
    ef_search = search.ef_search
    if ef_search is None and not exact:
        ef_search = ef_search_for(filters, generation=generation, using=using)
    rows = []
    if not exact and _index_type(generation, using) == "binary":
        depth = max(int(k), search.rerank_depth or _rerank_depth(generation, using))
        # The binary index orders by Hamming distance between sign bits; its top ``depth`` rows
        # (iterative scan: rows passing the filters) are re-ranked by their exact cosine distance.
        binary_sql = (
            "SELECT item_id, distance FROM ("
            + candidates
            + " ORDER BY binary_quantize(e.vector)::bit({dim}) <~> binary_quantize({query}) LIMIT %s"
            ") c ORDER BY distance LIMIT %s"
        ).format(dim=names["dim"], query=query_sql)
        binary_params = [*params[:-1], *search.query_params, depth, int(k)]
        rows = _run_ann_query(binary_sql, binary_params, max(int(ef_search), depth), using)
    elif not exact:
        ann_sql = candidates + " ORDER BY distance LIMIT %s"
        rows = _run_ann_query(ann_sql, params, max(int(ef_search), int(k)), using)
    if exact or len(rows) < k:
        rows = _run_exact_query(candidates, params, using)
    return _sorted_neighbours(rows)


def _exact_limit() -> int:
    """The most items a selective filter may match and still be ranked exactly (from the cache when it holds
    them, else in PostgreSQL up to ``EXACT_SEARCH_MAX_ROWS``); ``nearest`` and ``items_without_vectors`` read the
    filter's ids up to it, so both find them in the same snapshot memo."""
    return max(EXACT_SEARCH_MAX_ROWS, min(vector_cache.cache_rows(), EXACT_CACHED_MAX_ROWS))


def items_without_vectors(space_names, filters: ItemFilter) -> list[int] | None:
    """The items passing a selective ``filters`` that none of ``space_names`` could rank (no vector in its active
    generation), as the process's vector cache knows them after ``nearest`` ranked the filter from it (the same
    ``generation_snapshot()``: no statement); None when that is unknown (the filter was not ranked from the
    cache)."""
    if not filters.selective:
        return None
    limit = _exact_limit()

    def unranked(using: str) -> list[int] | None:
        matching = _matching_item_ids(filters, limit + 1, using)
        if len(matching) > limit:
            return None
        left = matching
        for space_name in space_names:
            left = vector_cache.without_vector(_require_active(space_name), left, using)
            if left is None:
                return None
        return left

    return on_read_database(unranked)


def warm_vector_cache() -> dict[str, int]:
    """Fill this process's vector cache with every vector of each space's active generation, where they all fit
    (``vector_cache.warm``), from the database the reads use; rows read per space."""

    def warm(using: str) -> dict[str, int]:
        read = {}
        for space_name in sorted(get_spaces()):
            generation = active_generation(space_name)
            if generation is not None:
                read[space_name] = vector_cache.warm(generation, using)
        return read

    return on_read_database(warm)


def _exact_from_cache(search: _Search, item_ids: list[int], using: str) -> list[Neighbour] | None:
    """Exact ranking of ``item_ids`` from the process's vector cache (``vector_cache``); None when the cache
    is off or too small for them (then PostgreSQL ranks them)."""
    if not 0 < len(item_ids) <= vector_cache.cache_rows():
        return None
    query = search.vector
    if query is None:
        query = vector_cache.cached_vector(search.generation, search.anchor_id, using)
        if query is None:  # the anchor has no vector: as the SQL answers, rows without a distance
            return [Neighbour(item_id=search.anchor_id, distance=None)]
    ranked = vector_cache.exact_nearest(search.generation, query, item_ids, search.k, using)
    return None if ranked is None else [Neighbour(item_id=i, distance=d) for i, d in ranked]


def _sorted_neighbours(rows: list[tuple]) -> list[Neighbour]:
    # relaxed_order iterative scans may return rows slightly out of order: re-sort.
    neighbours = [Neighbour(item_id=row[0], distance=None if row[1] is None else float(row[1])) for row in rows]
    return sorted(neighbours, key=lambda n: (n.distance is None, n.distance or 0.0))


#: Seconds the type of a generation's index is reused (it changes only when an index is rebuilt).
INDEX_TYPE_TTL = 60.0
_index_types: dict = {}
_index_types_lock = threading.Lock()


def _index_type(generation: SpaceGeneration, using: str) -> str:
    """The type of the generation's index: "binary" (binary-quantized) or "halfvec".

    Read from the catalogue, not from the settings: a space's ``INDEX`` applies to the generations
    built after it changed, and the active generation keeps being queried through the index it has.
    """
    db = connections[using]
    key = (db.alias, db.settings_dict["NAME"], generation.pk, generation.created_at)
    now = time.monotonic()
    with _index_types_lock:
        cached = _index_types.get(key)
    if cached is not None and now - cached[0] < INDEX_TYPE_TTL:
        return cached[1]
    with db.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [connection.ops.quote_name(binary_index_name(generation))])
        index_type = "binary" if cursor.fetchone()[0] else "halfvec"
    with _index_types_lock:
        if len(_index_types) > 256:
            _index_types.clear()
        _index_types[key] = (now, index_type)
    return index_type


def rebuild_index(generation: SpaceGeneration, index: str) -> bool:
    """Give the generation an ``index`` ("halfvec" or "binary") HNSW index and drop its other one.

    The new index is built first (writes to the embeddings wait meanwhile, queries go on through the
    old index), then the old one is dropped. False when the generation already has only that index.
    """
    names = {"halfvec": generation.index_name, "binary": binary_index_name(generation)}
    if index not in names:
        raise ValueError("Unknown index type %r (halfvec or binary)." % (index,))
    (other,) = set(names) - {index}
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL, to_regclass(%s) IS NOT NULL", [names[index], names[other]])
        has_index, has_other = cursor.fetchone()
    if has_index and not has_other:
        return False
    with transaction.atomic():
        create_index(generation, index)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("DROP INDEX IF EXISTS %s" % connection.ops.quote_name(names[other]))
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    _forget_index_type(generation)
    return True


def _forget_index_type(generation: SpaceGeneration) -> None:
    """Read the generation's index type from the catalogue again (other processes see a change
    within ``INDEX_TYPE_TTL`` seconds)."""
    with _index_types_lock:
        for key in [key for key in _index_types if key[2] == generation.pk]:
            del _index_types[key]


def _rerank_depth(generation: SpaceGeneration, using: str) -> int:
    """The space's ``RERANK_DEPTH`` if it sets one, else ``RAGREC["HNSW"]["RERANK_DEPTH"]`` grown for a generation of
    more than ``EF_SEARCH_SCALE_ROWS`` vectors by ``(rows / EF_SEARCH_SCALE_ROWS) ** 0.6``, at most 1,000: sign bits
    separate fewer neighbours in a bigger graph (1M items: recall@10 0.83-0.87 at depth 100 for the broad filters,
    0.97-0.99 at 400, the default there; docs/benchmarks.md)."""
    space = get_spaces().get(generation.space)
    if space is not None and space.rerank_depth:
        return space.rerank_depth
    hnsw = ragrec_settings.HNSW
    growth = _size_scale(generation, int(hnsw.get("EF_SEARCH_SCALE_ROWS", 0)), using) ** 1.2
    return min(PGVECTOR_MAX_EF_SEARCH, math.ceil(int(hnsw.get("RERANK_DEPTH", 100)) * growth))


def ef_search_for(filters: ItemFilter, *, generation: SpaceGeneration | None = None, using: str = "default") -> int:
    """``hnsw.ef_search`` for an index scan under ``filters``.

    Broad filters (eligibility, exclusions) pass nearly every item: ``EF_SEARCH_BROAD``. A
    narrower filter drops most of the candidates the scan visits, so it gets ``EF_SEARCH``
    divided by the share of items the planner expects to pass, at most ``EF_SEARCH_MAX``
    (a price range holding 10% of 100k items: recall@10 0.946 at ef 100, 0.988 at 400).
    A bigger graph needs a wider search for the same recall: for a ``generation`` of more than
    ``EF_SEARCH_SCALE_ROWS`` vectors, all three grow with the square root of its size (at 1M items,
    x3.2: recall@10 0.86-0.93 at ef 60 against 0.96-0.98 at 200, docs/benchmarks.md), up to pgvector's 1,000.
    """
    hnsw = ragrec_settings.HNSW
    scale = _size_scale(generation, int(hnsw.get("EF_SEARCH_SCALE_ROWS", 0)), using)
    if filters.broad:
        return min(PGVECTOR_MAX_EF_SEARCH, math.ceil(int(hnsw.get("EF_SEARCH_BROAD", hnsw["EF_SEARCH"])) * scale))
    base = int(hnsw["EF_SEARCH"])
    ceiling = max(base, int(hnsw.get("EF_SEARCH_MAX", base)))
    if ceiling == base:
        return min(PGVECTOR_MAX_EF_SEARCH, math.ceil(base * scale))
    share = _estimated_share(filters, using)
    ef = min(ceiling * scale, max(base * scale, base * scale / max(share, 1e-6)))
    return min(PGVECTOR_MAX_EF_SEARCH, math.ceil(ef))


#: The largest ``hnsw.ef_search`` pgvector accepts.
PGVECTOR_MAX_EF_SEARCH = 1000
_generation_sizes: dict = {}


def _size_scale(generation: SpaceGeneration | None, scale_rows: int, using: str) -> float:
    """``sqrt(rows / scale_rows)`` for a generation of more than ``scale_rows`` vectors, else 1."""
    if generation is None or scale_rows <= 0:
        return 1.0
    rows = _generation_size(generation, using)
    return math.sqrt(rows / scale_rows) if rows > scale_rows else 1.0


def _generation_size(generation: SpaceGeneration, using: str) -> float:
    """The generation's vector count as the catalogue's statistics hold it (the largest of its partition's and its
    indexes' ``reltuples``; nothing scanned), reused for ``SHARE_ESTIMATE_TTL`` seconds; 0 when never counted."""
    db = connections[using]
    key = (db.alias, db.settings_dict["NAME"], generation.pk)
    now = time.monotonic()
    with _share_estimates_lock:
        cached = _generation_sizes.get(key)
    if cached is not None and now - cached[0] < SHARE_ESTIMATE_TTL:
        return cached[1]
    names = [generation_partition(generation), generation.index_name, binary_index_name(generation)]
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(max(reltuples), 0) FROM pg_class WHERE oid IN (to_regclass(%s), to_regclass(%s), "
            "to_regclass(%s))",
            [connection.ops.quote_name(name) for name in names],
        )
        rows = max(0.0, float(cursor.fetchone()[0]))
    with _share_estimates_lock:
        if len(_generation_sizes) > 256:
            _generation_sizes.clear()
        _generation_sizes[key] = (now, rows)
    return rows


#: Seconds a planner estimate of a filter's share is reused (statistics change slowly).
SHARE_ESTIMATE_TTL = 60.0
_share_estimates: dict = {}
_share_estimates_lock = threading.Lock()


def _estimated_share(filters: ItemFilter, using: str) -> float:
    """The share of items passing ``filters`` as the planner estimates it from table statistics
    (two EXPLAINs, nothing scanned), reused for ``SHARE_ESTIMATE_TTL`` seconds. Exclusions of a few
    ids or variant groups are left out: they hardly change the share and differ from call to call."""
    passing, total = _planner_estimates(filters, using)
    return min(1.0, passing / total) if total > 0 else 1.0


def _planner_estimates(filters: ItemFilter, using: str) -> tuple[float, float]:
    """``(items passing filters, all items)`` as the planner estimates them (see ``_estimated_share``)."""
    filters = replace(filters, exclude_ids=frozenset(), exclude_group_keys=())
    db = connections[using]
    key = (db.alias, db.settings_dict["NAME"], filters)
    now = time.monotonic()
    with _share_estimates_lock:
        cached = _share_estimates.get(key)
    if cached is not None and now - cached[0] < SHARE_ESTIMATE_TTL:
        return cached[1]
    conditions, params = filters.sql("i")
    sql = "EXPLAIN (FORMAT JSON) SELECT 1 FROM {items} i WHERE TRUE{conditions}"
    items = connection.ops.quote_name(Item._meta.db_table)
    with db.cursor() as cursor:
        cursor.execute(sql.format(items=items, conditions=conditions), params)
        passing = _plan_rows(cursor.fetchone()[0])
        cursor.execute(sql.format(items=items, conditions=""))
        total = _plan_rows(cursor.fetchone()[0])
    with _share_estimates_lock:
        if (
            len(_share_estimates) > 4096
        ):  # one per small-category check (similar items, query routing), besides the filters
            _share_estimates.clear()
        _share_estimates[key] = (now, (passing, total))
    return passing, total


def _plan_rows(plan) -> float:
    if isinstance(plan, (str, bytes)):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def _matching_item_ids(filters: ItemFilter, at_most: int, using: str) -> list[int]:
    """Ids of the items passing ``filters``, at most ``at_most`` of them; read once per
    ``generation_snapshot()`` (a search queries each space under the same filter)."""
    memo = snapshot_memo()
    db = connections[using]
    key = ("matching-item-ids", db.alias, db.settings_dict["NAME"], filters, int(at_most))
    if memo is not None and key in memo:
        return memo[key]
    conditions, params = filters.sql("i")
    items = connection.ops.quote_name(Item._meta.db_table)
    with db.cursor() as cursor:
        cursor.execute(f"SELECT i.id FROM {items} i WHERE TRUE{conditions} LIMIT %s", [*params, int(at_most)])
        ids = [row[0] for row in cursor.fetchall()]
    if memo is not None:
        memo[key] = ids
    return ids


def _run_ann_query(sql: str, params: list, ef_search: int, using: str) -> list[tuple]:
    settings_sql = "SET LOCAL hnsw.ef_search = %d; SET LOCAL hnsw.iterative_scan = relaxed_order" % int(ef_search)
    return run_with_local_settings(settings_sql, sql, params, using)


def _run_exact_query(candidates_sql: str, params: list, using: str) -> list[tuple]:
    # OFFSET 0 keeps the planner from ordering by the HNSW index: every matching row is ranked.
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT item_id, distance FROM (" + candidates_sql + " OFFSET 0) c ORDER BY distance LIMIT %s", params
        )
        return cursor.fetchall()
