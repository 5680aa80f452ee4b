"""pgvector storage: space generations, their HNSW indexes, bulk writes, ANN reads.

Vectors are stored as ``halfvec`` without a fixed dimension; each generation
gets a partial HNSW index on ``vector::halfvec(<dim>)`` restricted to its
rows. Nearest-neighbour queries use exactly that expression so the planner
picks the generation's index.
"""

from __future__ import annotations

import contextvars
import functools
import json
import math
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from typing import Iterable, Sequence

import numpy as np
from django.contrib.postgres.search import SearchVector
from django.db import connection, transaction
from django.utils import timezone
from pgvector import HalfVector

from ..conf import ragrec_settings
from ..ml.base import DimensionMismatch
from ..models import Embedding, EncodingFailure, Item, SpaceGeneration
from ..registry import SpaceConfig

Status = SpaceGeneration.Status
#: The largest magnitude a float16 (pgvector halfvec) holds.
HALFVEC_MAX = 65504.0


class SpaceMismatch(Exception):
    """The space's stored generation does not match its configured encoder."""


class SpaceNotReady(Exception):
    """A space has no active generation yet (nothing encoded)."""


@dataclass(frozen=True)
class Neighbour:
    item_id: int
    distance: float


_snapshot: contextvars.ContextVar[dict[str, SpaceGeneration | None] | None] = contextvars.ContextVar(
    "ragrec_generation_snapshot", default=None
)


def active_generation(space_name: str) -> SpaceGeneration | None:
    """The space's active generation; inside ``generation_snapshot()`` the one read when it began."""
    snapshot = _snapshot.get()
    if snapshot is None:
        return SpaceGeneration.objects.filter(space=space_name, status=Status.ACTIVE).first()
    if space_name not in snapshot:
        snapshot[space_name] = SpaceGeneration.objects.filter(space=space_name, status=Status.ACTIVE).first()
    return snapshot[space_name]


@contextmanager
def generation_snapshot():
    """Read every space's active generation once (one query) and use that for the whole block.

    A recommendation call looks up generations many times (per space, per
    vector read, per ANN query); inside a snapshot they cost nothing after the
    first, and a promote or rollback that lands mid-call cannot make one call
    mix vectors of two generations. Nested snapshots reuse the outer one.
    """
    if _snapshot.get() is not None:
        yield
        return
    from ..registry import get_spaces

    active = {g.space: g for g in SpaceGeneration.objects.filter(status=Status.ACTIVE)}
    token = _snapshot.set({name: active.get(name) for name in {*get_spaces(), *active}})
    try:
        yield
    finally:
        _snapshot.reset(token)


def with_generation_snapshot(function):
    """Decorator: run ``function`` inside ``generation_snapshot()``."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with generation_snapshot():
            return function(*args, **kwargs)

    return wrapper


def building_generation(space_name: str) -> SpaceGeneration | None:
    return SpaceGeneration.objects.filter(space=space_name, status=Status.BUILDING).first()


def _matches(generation: SpaceGeneration, version: str, dimension: int) -> bool:
    return generation.encoder_version == version and generation.dimension == dimension


def write_generation(space: SpaceConfig, *, version: str, dimension: int) -> SpaceGeneration:
    """The generation that vectors of this encoder version and dimension are written to.

    The first write to a space creates its first, active generation (once,
    even under concurrent writers). After a switch, writes go to the building
    generation. Writing a model's vectors into a generation of another model is
    refused with ``SpaceMismatch``.
    """
    generation = _existing_write_generation(space, version, dimension)
    if generation is not None:
        return generation
    with transaction.atomic():
        _lock_space(space.name)
        generation = _existing_write_generation(space, version, dimension)
        if generation is not None:
            return generation
        return _create_generation(space, version=version, dimension=dimension, status=Status.ACTIVE)


def _existing_write_generation(space: SpaceConfig, version: str, dimension: int) -> SpaceGeneration | None:
    building = building_generation(space.name)
    if building is not None and _matches(building, version, dimension):
        return building
    active = active_generation(space.name)
    if active is not None and _matches(active, version, dimension):
        return active
    current = building or active
    if current is None:
        return None
    raise SpaceMismatch(
        "Space %r stores %d-dimensional vectors from %r, but encoder %r now produces %d-dimensional vectors "
        "from %r. Run `manage.py ragrec_spaces switch %s` to re-encode it into a new generation "
        "(queries keep using the current one until the new one is complete)."
        % (space.name, current.dimension, current.encoder_version, space.encoder_alias, dimension, version, space.name)
    )


def _lock_space(space_name: str) -> None:
    """Serialise generation changes of one space until the transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ["ragrec-space:" + space_name])


def start_switch(space: SpaceConfig, *, version: str, dimension: int) -> SpaceGeneration:
    """Begin re-encoding ``space`` with its configured encoder into a new generation."""
    with transaction.atomic():
        _lock_space(space.name)
        active = active_generation(space.name)
        if active is not None and _matches(active, version, dimension):
            raise SpaceMismatch("Space %r is already on %r (%dd); nothing to switch." % (space.name, version, dimension))
        building = building_generation(space.name)
        if building is not None:
            if _matches(building, version, dimension):
                return building
            drop_generation(building)
        status = Status.BUILDING if active is not None else Status.ACTIVE
        return _create_generation(space, version=version, dimension=dimension, status=status)


def _create_generation(space: SpaceConfig, *, version: str, dimension: int, status: str) -> SpaceGeneration:
    with transaction.atomic():
        _lock_space(space.name)
        last = SpaceGeneration.objects.filter(space=space.name).order_by("-number").first()
        generation = SpaceGeneration.objects.create(
            space=space.name,
            number=(last.number + 1) if last else 1,
            encoder=space.encoder_alias,
            modality=space.modality,
            encoder_version=version,
            dimension=dimension,
            status=status,
            activated_at=timezone.now() if status == Status.ACTIVE else None,
        )
        create_index(generation)
    return generation


def create_index(generation: SpaceGeneration) -> None:
    """Create the generation's partial HNSW (cosine) index if it does not exist."""
    hnsw = ragrec_settings.HNSW
    with connection.cursor() as cursor:
        # Inside a transaction with deferred FK checks pending, PostgreSQL refuses CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw ((vector::halfvec({dim})) halfvec_cosine_ops) "
            "WITH (m = {m}, ef_construction = {ef}) WHERE generation_id = {gid}".format(
                name=connection.ops.quote_name(generation.index_name),
                table=connection.ops.quote_name(Embedding._meta.db_table),
                dim=int(generation.dimension),
                m=int(hnsw["M"]),
                ef=int(hnsw["EF_CONSTRUCTION"]),
                gid=int(generation.pk),
            )
        )
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def drop_generation(generation: SpaceGeneration) -> None:
    """Delete a generation, its vectors and its index."""
    index_name = generation.index_name
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("DROP INDEX IF EXISTS %s" % connection.ops.quote_name(index_name))
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        generation.delete()


def promote(space_name: str) -> SpaceGeneration:
    """Atomically make the building generation active and retire the old one."""
    with transaction.atomic():
        generations = list(
            SpaceGeneration.objects.select_for_update().filter(space=space_name, status__in=[Status.ACTIVE, Status.BUILDING])
        )
        building = next((g for g in generations if g.status == Status.BUILDING), None)
        if building is None:
            raise SpaceNotReady("Space %r has no generation being built." % space_name)
        for generation in generations:
            if generation.status == Status.ACTIVE:
                generation.status = Status.RETIRED
                generation.save(update_fields=["status"])
        building.status = Status.ACTIVE
        building.activated_at = timezone.now()
        building.save(update_fields=["status", "activated_at"])
    return building


def rollback(space_name: str) -> SpaceGeneration:
    """Atomically re-activate the most recently retired generation."""
    with transaction.atomic():
        retired = (
            SpaceGeneration.objects.select_for_update()
            .filter(space=space_name, status=Status.RETIRED)
            .order_by("-activated_at", "-number")
            .first()
        )
        if retired is None:
            raise SpaceNotReady("Space %r has no retired generation to roll back to." % space_name)
        SpaceGeneration.objects.filter(space=space_name, status=Status.ACTIVE).update(status=Status.RETIRED)
        retired.status = Status.ACTIVE
        retired.activated_at = timezone.now()
        retired.save(update_fields=["status", "activated_at"])
    return retired


def check_vectors(vectors: np.ndarray, dimension: int) -> np.ndarray:
    """Validate a batch of vectors: 2-D, the generation's dimension, finite, not zero."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise DimensionMismatch("Expected a 2-D array of vectors, got shape %s." % (array.shape,))
    if array.shape[1] != dimension:
        raise DimensionMismatch("Vectors have dimension %d but the space stores %d." % (array.shape[1], dimension))
    if not np.isfinite(array).all():
        raise ValueError("Vectors contain NaN or infinite values.")
    if np.abs(array).max(initial=0) > HALFVEC_MAX:
        raise ValueError("Vectors have values beyond halfvec's range (+-%g); normalise them." % HALFVEC_MAX)
    if array.size and (np.linalg.norm(array, axis=1) == 0).any():
        raise ValueError("Vectors contain an all-zero row (cosine distance undefined).")
    return array


def upsert_embeddings(
    generation: SpaceGeneration, item_ids: Sequence[int], vectors: np.ndarray, content_hashes: Sequence[str]
) -> int:
    """Write vectors for items in one statement (insert or update); return rows written."""
    array = check_vectors(vectors, generation.dimension)
    if not (len(item_ids) == len(array) == len(content_hashes)):
        raise ValueError("item_ids, vectors and content_hashes differ in length.")
    if not item_ids:
        return 0
    rows = [
        Embedding(
            item_id=item_id,
            generation=generation,
            vector=HalfVector(vector),
            encoder_version=generation.encoder_version,
            content_hash=content_hash,
        )
        for item_id, vector, content_hash in zip(item_ids, array, content_hashes)
    ]
    with transaction.atomic():
        Embedding.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["generation", "item"],
            update_fields=["vector", "encoder_version", "content_hash", "updated_at"],
        )
        EncodingFailure.objects.filter(generation=generation, item_id__in=item_ids).delete()
    return len(rows)


def record_failures(generation: SpaceGeneration, failures: Iterable[tuple[int, str, str]]) -> int:
    """Record (item_id, content_hash, reason) failures; repeated failures count attempts."""
    failures = list(failures)
    if not failures:
        return 0
    with transaction.atomic():
        existing = {
            f.item_id: f
            for f in EncodingFailure.objects.select_for_update().filter(
                generation=generation, item_id__in=[item_id for item_id, _, _ in failures]
            )
        }
        new = []
        for item_id, content_hash, reason in failures:
            failure = existing.get(item_id)
            if failure is None:
                new.append(EncodingFailure(item_id=item_id, generation=generation, content_hash=content_hash, reason=reason))
            else:
                failure.attempts += 1
                failure.reason, failure.content_hash = reason, content_hash
                failure.save(update_fields=["attempts", "reason", "content_hash", "updated_at"])
        EncodingFailure.objects.bulk_create(new, ignore_conflicts=True)
        Embedding.objects.filter(generation=generation, item_id__in=[item_id for item_id, _, _ in failures]).delete()
    return len(failures)


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

    @property
    def broad(self) -> bool:
        """Whether only eligibility and exclusions filter (most items pass)."""
        return not (self.categories or self.exclude_categories or self.in_stock_only or self.only_ids is not None
                    or self.min_price is not None or self.max_price is not None)

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
        return "".join(" AND " + c.format(a=alias) for c in clauses), params


NO_FILTER = ItemFilter(eligible_only=False)


#: Filters matching at most this many items are searched exactly: an HNSW scan from a query far
#: from a small filtered set walks the graph outward and can miss some of it (recall < 0.95),
#: while an exact scan of a few thousand vectors takes a few milliseconds.
EXACT_SEARCH_MAX_ROWS = 5000


def nearest(
    space_name: str,
    query: np.ndarray,
    k: int,
    *,
    filters: ItemFilter = ItemFilter(),
    exact: bool = False,
    ef_search: int | None = None,
) -> list[Neighbour]:
    """The ``k`` items nearest to ``query`` (cosine distance) in the space's active generation.

    Filters are applied inside the query; HNSW iterative scans (pgvector 0.8)
    keep scanning until ``k`` rows pass them. A selective filter (by
    category or ids, matching at most ``EXACT_SEARCH_MAX_ROWS`` items) is
    searched exactly, and should an index scan still stop short (its tuple
    budget spent), the query is re-run exactly, so ``k`` results come back
    whenever ``k`` items match. Runs in its own transaction so ``SET LOCAL``
    settings apply to this query only. ``exact=True`` disables the index
    (ground truth for recall measurements).
    """
    generation = _require_active(space_name)
    vector = check_vectors(np.asarray(query, dtype=np.float32).reshape(1, -1), generation.dimension)[0]
    return _nearest(generation, "%s::halfvec({dim})", [_halfvec_text(vector)], k, filters, exact, ef_search)


def nearest_to_item(
    space_name: str, item_id: int, k: int, *, filters: ItemFilter = ItemFilter(), ef_search: int | None = None
) -> list[Neighbour] | None:
    """The ``k`` items nearest to a stored item's own vector (one query); None if it has no vector."""
    generation = _require_active(space_name)
    anchor = (
        "(SELECT a.vector::halfvec({dim}) FROM {embeddings} a WHERE a.generation_id = %s AND a.item_id = %s)"
    )
    found = _nearest(generation, anchor, [generation.pk, int(item_id)], k, filters, False, ef_search)
    if found and found[0].distance is None:
        return None
    return found


def _require_active(space_name: str) -> SpaceGeneration:
    generation = active_generation(space_name)
    if generation is None:
        raise SpaceNotReady("Space %r has no encoded items yet." % space_name)
    return generation


def _halfvec_text(vector: np.ndarray) -> str:
    return "[" + ",".join(map(repr, vector.astype(np.float16).astype(np.float32).tolist())) + "]"


def _nearest(generation, query_sql: str, query_params: list, k: int, filters: ItemFilter, exact: bool, ef_search) -> list[Neighbour]:
    conditions, filter_params = filters.sql("i")
    names = {
        "dim": int(generation.dimension),
        "embeddings": connection.ops.quote_name(Embedding._meta.db_table),
        "items": connection.ops.quote_name(Item._meta.db_table),
    }
    candidates = (
        "SELECT e.item_id, (e.vector::halfvec({dim})) <=> " + query_sql + " AS distance "
        "FROM {embeddings} e JOIN {items} i ON i.id = e.item_id "
        "WHERE e.generation_id = %s{conditions}"
    ).format(conditions=conditions, **names)
    params = [*query_params, generation.pk, *filter_params, int(k)]
    if not exact and filters.selective and _matching_items(filters, EXACT_SEARCH_MAX_ROWS + 1) <= EXACT_SEARCH_MAX_ROWS:
        exact = True
    if ef_search is None and not exact:
        ef_search = ef_search_for(filters)
    rows = [] if exact else _run_ann_query(candidates + " ORDER BY distance LIMIT %s", params, max(int(ef_search), int(k)))
    if exact or len(rows) < k:
        rows = _run_exact_query(candidates, params)
    # relaxed_order iterative scans may return rows slightly out of order: re-sort.
    neighbours = [Neighbour(item_id=row[0], distance=None if row[1] is None else float(row[1])) for row in rows]
    return sorted(neighbours, key=lambda n: (n.distance is None, n.distance or 0.0))


def ef_search_for(filters: ItemFilter) -> int:
    """``hnsw.ef_search`` for an index scan under ``filters``.

    Broad filters (eligibility, exclusions) pass nearly every item: ``EF_SEARCH_BROAD``. A
    narrower filter drops most of the candidates the scan visits, so it gets ``EF_SEARCH``
    divided by the share of items the planner expects to pass, at most ``EF_SEARCH_MAX``
    (a price range holding 10% of 100k items: recall@10 0.946 at ef 100, 0.988 at 400).
    """
    hnsw = ragrec_settings.HNSW
    if filters.broad:
        return int(hnsw.get("EF_SEARCH_BROAD", hnsw["EF_SEARCH"]))
    base = int(hnsw["EF_SEARCH"])
    ceiling = max(base, int(hnsw.get("EF_SEARCH_MAX", base)))
    if ceiling == base:
        return base
    share = _estimated_share(filters)
    return min(ceiling, max(base, math.ceil(base / max(share, 1e-6))))


#: Seconds a planner estimate of a filter's share is reused (statistics change slowly).
SHARE_ESTIMATE_TTL = 60.0
_share_estimates: dict = {}
_share_estimates_lock = threading.Lock()


def _estimated_share(filters: ItemFilter) -> float:
    """The share of items passing ``filters`` as the planner estimates it from table statistics
    (two EXPLAINs, nothing scanned), reused for ``SHARE_ESTIMATE_TTL`` seconds. Exclusions of a few
    ids or variant groups are left out: they hardly change the share and differ from call to call."""
    filters = replace(filters, exclude_ids=frozenset(), exclude_group_keys=())
    key = (connection.alias, connection.settings_dict["NAME"], filters)
    now = time.monotonic()
    with _share_estimates_lock:
        cached = _share_estimates.get(key)
    if cached is not None and now - cached[0] < SHARE_ESTIMATE_TTL:
        return cached[1]
    conditions, params = filters.sql("i")
    sql = "EXPLAIN (FORMAT JSON) SELECT 1 FROM {items} i WHERE TRUE{conditions}"
    items = connection.ops.quote_name(Item._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql.format(items=items, conditions=conditions), params)
        passing = _plan_rows(cursor.fetchone()[0])
        cursor.execute(sql.format(items=items, conditions=""))
        total = _plan_rows(cursor.fetchone()[0])
    share = min(1.0, passing / total) if total > 0 else 1.0
    with _share_estimates_lock:
        if len(_share_estimates) > 256:
            _share_estimates.clear()
        _share_estimates[key] = (now, share)
    return share


def _plan_rows(plan) -> float:
    if isinstance(plan, (str, bytes)):
        plan = json.loads(plan)
    return float(plan[0]["Plan"]["Plan Rows"])


def _matching_items(filters: ItemFilter, at_most: int) -> int:
    """How many items pass ``filters``, counting no further than ``at_most``."""
    conditions, params = filters.sql("i")
    sql = "SELECT count(*) FROM (SELECT 1 FROM {items} i WHERE TRUE{conditions} LIMIT %s) matching".format(
        items=connection.ops.quote_name(Item._meta.db_table), conditions=conditions
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, int(at_most)])
        return cursor.fetchone()[0]


def _run_ann_query(sql: str, params: list, ef_search: int) -> list[tuple]:
    settings_sql = "SET LOCAL hnsw.ef_search = %d; SET LOCAL hnsw.iterative_scan = relaxed_order" % int(ef_search)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(settings_sql)
        cursor.execute(sql, params)
        return cursor.fetchall()


def _run_exact_query(candidates_sql: str, params: list) -> list[tuple]:
    # OFFSET 0 keeps the planner from ordering by the HNSW index: every matching row is ranked.
    with connection.cursor() as cursor:
        cursor.execute("SELECT item_id, distance FROM (" + candidates_sql + " OFFSET 0) c ORDER BY distance LIMIT %s", params)
        return cursor.fetchall()


def vectors_for_items(space_name: str, item_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Stored vectors of the active generation, by item id (read in pgvector's binary format)."""
    generation = active_generation(space_name)
    if generation is None or not item_ids:
        return {}
    sql = "SELECT item_id, halfvec_send(vector) FROM {embeddings} WHERE generation_id = %s AND item_id = ANY(%s)".format(
        embeddings=connection.ops.quote_name(Embedding._meta.db_table)
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [generation.pk, list(item_ids)])
        return {item_id: _halfvec_from_binary(data) for item_id, data in cursor.fetchall()}


def _halfvec_from_binary(data: bytes) -> np.ndarray:
    """pgvector's halfvec binary format: uint16 dimension, uint16 unused, big-endian float16 values."""
    return np.frombuffer(data, dtype=">f2", offset=4).astype(np.float32)


_local_catalogue_changes = 0


def local_catalogue_changes() -> int:
    """How many times this process changed the item mirror (caches built from it compare this)."""
    return _local_catalogue_changes


def sync_items(snapshots) -> dict[str, int]:
    """Upsert item snapshots into ``Item``; return {key: item id}."""
    global _local_catalogue_changes
    snapshots = list(snapshots)
    if not snapshots:
        return {}
    _local_catalogue_changes += 1
    keys = [s.key for s in snapshots]
    with transaction.atomic():
        Item.objects.bulk_create(
            [Item(**asdict(snapshot)) for snapshot in snapshots],
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=[
                "title", "category", "price", "in_stock", "is_eligible", "url", "group_key", "text",
                "is_promoted", "metadata", "updated_at",
            ],
        )
        language = ragrec_settings.SEARCH_LANGUAGE
        Item.objects.filter(key__in=keys).update(
            search_vector=SearchVector("title", weight="A", config=language)
            + SearchVector("category", weight="B", config=language)
            + SearchVector("text", weight="C", config=language)
        )
    return dict(Item.objects.filter(key__in=keys).values_list("key", "id"))
