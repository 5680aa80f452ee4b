"""Vectors of a space generation kept in the web process, for exact ranking under selective filters.

A search under a category (or ids) filter ranks every item passing it exactly (``ann.EXACT_SEARCH_MAX_ROWS``).
In PostgreSQL that costs a heap access per row, ~15 ms per space for a 5% category at 100k items
(docs/benchmarks.md); from a copy in the process it is a gather and a matrix product. The ids passing
the filter are always read from the item table, so eligibility, stock, price and category are never stale;
only the vectors come from here. Rows missing from the cache are read by binary COPY (pgvector's binary format)
and kept.

Freshness: writes in this process (``upsert_embeddings``, ``record_failures``) forget the rows they change;
another process's writes (the encoding workers) are seen within ``RAGREC["HNSW"]["EXACT_CACHE_SECONDS"]``:
that often, the first use of a generation's rows asks the database which of its items were written since the
last check (``changed_items``: the embeddings' ``updated_at``, an index-only scan) and forgets those, to be read
again when next needed; the rest stay. A new generation is a new cache.
Size: at most ``RAGREC["HNSW"]["EXACT_CACHE_ROWS"]`` rows per generation (2 bytes per dimension each); a filter
needing more is ranked in PostgreSQL; ``0`` turns the cache off. A web process may fill it when it starts
(``warm``, from ``services.serving.prepare_web_process``), so its first searches read nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from django.core.signals import setting_changed
from django.db import connection, connections
from django.utils import timezone

from ..conf import ragrec_settings
from ..ml.similarity import nearest_rows, vector_norms
from ..models import Embedding, SpaceGeneration

#: Rows added to a generation's matrix at a time (grown by doubling beyond).
_FIRST_CAPACITY = 1024
#: Generations cached at once per process (retired generations' rows are dropped, oldest first).
_MAX_GENERATIONS = 8
#: Each check for other processes' writes also looks at those stamped this long before the previous check: a
#: write's ``updated_at`` is taken before its transaction commits, by a clock that may differ a little from
#: the database's.
REFRESH_OVERLAP = timedelta(minutes=2)
#: Rows per statement when a process fills its cache at start (``warm``).
_WARM_CHUNK = 10_000


class _GenerationRows:
    """One generation's cached vectors: a float16 matrix, each row's norm, and item id -> row."""

    def __init__(self, dimension: int):
        self.dimension = dimension
        self.vectors = np.empty((0, dimension), dtype=np.float16)
        self.norms = np.empty(0, dtype=np.float32)
        self.row_of: dict[int, int] = {}
        #: Items read and found without a vector in this generation (not re-read until the rows expire).
        self.absent: set[int] = set()
        self.size = 0
        #: When other processes' writes were last accounted for (``time.monotonic()``), and the database time
        #: from which they are not yet (``changed_items``); one thread at a time checks (``refreshing``).
        self.checked_at = time.monotonic()
        self.changes_since: datetime = timezone.now() - REFRESH_OVERLAP
        self.refreshing = False
        #: ``row_of`` as two arrays sorted by item id (rebuilt after a change), for vectorised look-ups.
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        #: Forgets so far, and the count at each item's last one: a read that started before an item was
        #: forgotten may hold its old vector, and must not put it back (``add``'s ``since``).
        self.forgets = 0
        self.forgotten_at: dict[int, int] = {}
        #: Whether ``warm`` read the whole generation (a process forked after it, a web server's worker, inherits
        #: the rows and keeps them as they are, sharing their pages with its parent: ``warm`` reads nothing).
        self.warmed = False

    def known(self, item_id: int) -> bool:
        return item_id in self.row_of or item_id in self.absent

    def rows(self, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, rows)``: those of ``item_ids`` that have a cached vector, and their rows."""
        if self._sorted is None:
            ids = np.fromiter(self.row_of.keys(), dtype=np.int64, count=len(self.row_of))
            rows = np.fromiter(self.row_of.values(), dtype=np.int64, count=len(self.row_of))
            order = np.argsort(ids)
            self._sorted = (ids[order], rows[order])
        ids, rows = self._sorted
        if not len(ids):
            return item_ids[:0], item_ids[:0]
        at = np.minimum(np.searchsorted(ids, item_ids), len(ids) - 1)
        present = ids[at] == item_ids
        return item_ids[present], rows[at[present]]

    def add(self, ids: np.ndarray, vectors: np.ndarray, asked: Sequence[int], since: int) -> None:
        """Cache ``vectors`` (rows of ``ids``), read when ``forgets`` was ``since``; the ``asked`` ids not among
        ``ids`` have no vector. Ids forgotten after ``since`` are left out (their read may be older)."""
        if self.forgets != since:
            keep = np.array([self.forgotten_at.get(int(i), -1) < since for i in ids], dtype=bool)
            ids, vectors = ids[keep], vectors[keep]
            asked = [i for i in asked if self.forgotten_at.get(int(i), -1) < since]
        fresh = [int(i) for i in ids if int(i) not in self.row_of]
        needed = self.size + len(fresh)
        if needed > len(self.vectors):
            capacity = max(_FIRST_CAPACITY, len(self.vectors))
            while capacity < needed:
                capacity *= 2
            capacity = min(capacity, max(needed, cache_rows()))  # never past the bound the settings give
            grown = np.empty((capacity, self.dimension), dtype=np.float16)
            grown[: self.size] = self.vectors[: self.size]
            norms = np.empty(capacity, dtype=np.float32)
            norms[: self.size] = self.norms[: self.size]
            self.vectors, self.norms = grown, norms
        for item_id in fresh:
            self.row_of[item_id] = self.size
            self.size += 1
        rows = np.fromiter((self.row_of[int(i)] for i in ids), dtype=np.int64, count=len(ids))
        self.vectors[rows] = vectors
        self.norms[rows] = vector_norms(vectors)
        found = set(int(i) for i in ids)
        self.absent.update(int(i) for i in asked if int(i) not in found)
        self._sorted = None

    def forget(self, item_ids) -> None:
        self.forgets += 1
        for item_id in item_ids:
            self.row_of.pop(int(item_id), None)
            self.absent.discard(int(item_id))
            self.forgotten_at[int(item_id)] = self.forgets
        self._sorted = None


_generations: dict[tuple, _GenerationRows] = {}
_lock = threading.Lock()


def cache_rows() -> int:
    """``RAGREC["HNSW"]["EXACT_CACHE_ROWS"]``: the most vectors cached per generation (0: off)."""
    return int(ragrec_settings.HNSW.get("EXACT_CACHE_ROWS", 0))


def _key(generation: SpaceGeneration, using: str) -> tuple:
    db = connections[using]
    return (db.alias, db.settings_dict["NAME"], generation.pk, generation.created_at)


def _check_seconds() -> float:
    return float(ragrec_settings.HNSW.get("EXACT_CACHE_SECONDS", 300))


def _rows_for(generation: SpaceGeneration, using: str) -> _GenerationRows:
    key = _key(generation, using)
    cached = _generations.get(key)
    if cached is None:
        cached = _GenerationRows(int(generation.dimension))
        now, unused = time.monotonic(), 2 * _check_seconds()
        for old in [k for k, rows in _generations.items() if now - rows.checked_at > unused]:
            del _generations[old]  # a generation no search has used for a while (a retired one)
        while len(_generations) >= _MAX_GENERATIONS:
            del _generations[next(iter(_generations))]
        _generations[key] = cached
    return cached


def changed_items(generation: SpaceGeneration, since: datetime, using: str) -> tuple[datetime, list[int]]:
    """``(the database's time now, items of generation whose vector was written at or after since)``."""
    embeddings = connection.ops.quote_name(Embedding._meta.db_table)
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT now(), ARRAY(SELECT item_id FROM {embeddings} WHERE generation_id = %s AND updated_at >= %s)",
            [generation.pk, since],
        )
        now, item_ids = cursor.fetchone()
    return now, list(item_ids)


def _refresh_if_due(generation: SpaceGeneration, using: str) -> None:
    """Once per ``EXACT_CACHE_SECONDS``: forget the cached rows other processes have written since the last check."""
    with _lock:
        rows = _rows_for(generation, using)
        if rows.refreshing or time.monotonic() - rows.checked_at <= _check_seconds():
            return
        rows.refreshing = True
        since = rows.changes_since
    try:
        now, changed = changed_items(generation, since, using)
    except BaseException:
        with _lock:
            rows.refreshing = False
        raise
    with _lock:
        rows.forget([item_id for item_id in changed if rows.known(item_id)])
        rows.changes_since = now - REFRESH_OVERLAP
        rows.checked_at = time.monotonic()
        rows.refreshing = False


def read_vectors(generation: SpaceGeneration, item_ids: list[int], using: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)``: the stored vectors of ``item_ids`` in ``generation`` that exist, as float16 rows."""
    wanted = "'{%s}'::bigint[]" % ",".join(str(int(item_id)) for item_id in item_ids)
    return _copy_vectors(generation, f"item_id = ANY({wanted})", using)


def _copy_vectors(generation: SpaceGeneration, condition: str, using: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` of the generation's rows matching ``condition`` (SQL built from integers only), read by
    binary COPY: fixed-size rows that numpy reads in place, where fetching rows costs a Python object per value
    (50,000 vectors at 1M rows: docs/benchmarks.md, "Vector cache reads")."""
    embeddings = connection.ops.quote_name(Embedding._meta.db_table)
    sql = (
        f"COPY (SELECT item_id, vector FROM {embeddings} WHERE generation_id = {int(generation.pk)} AND {condition}) "
        "TO STDOUT (FORMAT BINARY)"
    )
    with connections[using].cursor() as cursor:
        with cursor.copy(sql) as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
    return unpack_copy(data, int(generation.dimension))


def _copy_row(dimension: int) -> np.dtype:
    """One row of a binary COPY of ``(item_id bigint, vector halfvec(dimension))``: the field count, each field's
    length, the id, and pgvector's halfvec binary form (uint16 dimension, uint16 unused, big-endian float16s)."""
    return np.dtype(
        [
            ("fields", ">i2"),
            ("id_length", ">i4"),
            ("id", ">i8"),
            ("vector_length", ">i4"),
            ("dimension", ">u2"),
            ("unused", ">u2"),
            ("vector", ">f2", (dimension,)),
        ]
    )


#: A binary COPY stream's signature; then the flags (int32) and the header extension's length (int32). Streams
#: written to PostgreSQL start with it too (``vectors._binary_copy_rows``).
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def unpack_copy(data: bytes, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, float16 vectors)`` from a binary COPY of ``(item_id, vector)``; ``ValueError`` for anything else."""
    if not data.startswith(COPY_SIGNATURE) or len(data) < 21:
        raise ValueError("Not a binary COPY stream.")
    start = 19 + int.from_bytes(data[15:19], "big")
    row = _copy_row(dimension)
    body = len(data) - start - 2
    if body < 0 or body % row.itemsize or data[-2:] != b"\xff\xff":
        raise ValueError("A binary COPY stream of (item_id, halfvec(%d)) rows was expected." % dimension)
    rows = np.frombuffer(data, dtype=row, count=body // row.itemsize, offset=start)
    if len(rows) and not (
        (rows["fields"] == 2).all()
        and (rows["id_length"] == 8).all()
        and (rows["vector_length"] == 4 + 2 * dimension).all()
        and (rows["dimension"] == dimension).all()
    ):
        raise ValueError("A binary COPY stream of (item_id, halfvec(%d)) rows was expected." % dimension)
    return rows["id"].astype(np.int64), rows["vector"].astype(np.float16)


def exact_nearest(
    generation: SpaceGeneration, query: np.ndarray, item_ids: Sequence[int], k: int, using: str
) -> list[tuple[int, float]] | None:
    """The ``k`` of ``item_ids`` nearest to ``query`` by the cosine distance pgvector computes on halfvec
    (``(item_id, distance)``, nearest first), ranked from the cached vectors; None when the cache is off or
    ``item_ids`` would not fit in it (the caller ranks in PostgreSQL)."""
    limit = cache_rows()
    if limit <= 0 or len(item_ids) > limit:
        return None
    wanted = np.asarray(item_ids, dtype=np.int64)
    _refresh_if_due(generation, using)
    with _lock:
        rows = _rows_for(generation, using)
        ids, positions = rows.rows(wanted)
        # Copied under the lock: another thread may grow or replace the matrix afterwards.
        block, norms = rows.vectors[positions], rows.norms[positions]
        missing = (
            [] if len(ids) == len(wanted) else [int(i) for i in np.setdiff1d(wanted, ids) if not rows.known(int(i))]
        )
        since = rows.forgets
    if missing:
        read_ids, fetched = read_vectors(generation, missing, using)
        with _lock:
            current = _rows_for(generation, using)
            if current is rows:  # else it was dropped meanwhile: this read serves this search only
                if rows.size + len(read_ids) > limit:  # full (forgotten rows still hold their slots): start over
                    current = _GenerationRows(int(generation.dimension))
                    _generations[_key(generation, using)] = current
                    since = current.forgets
                current.add(read_ids, fetched, missing, since)
        ids = np.concatenate([ids, read_ids])
        block = np.concatenate([block, fetched])
        norms = np.concatenate([norms, vector_norms(fetched)])
    if not len(ids):
        return []
    # The query as pgvector sees it: rounded to float16 (``ann._halfvec_text``).
    vector = np.asarray(query, dtype=np.float32).astype(np.float16).astype(np.float32)
    positions, distance = nearest_rows(block, norms, vector, int(k))
    order = np.lexsort((ids[positions], distance))[: int(k)]
    return [(int(ids[positions[i]]), float(distance[i])) for i in order]


def cached_vector(generation: SpaceGeneration, item_id: int, using: str) -> np.ndarray | None:
    """One item's vector in ``generation`` (float32), from the cache or read into it; None without a vector."""
    if cache_rows() <= 0:
        return None
    _refresh_if_due(generation, using)
    with _lock:
        rows = _rows_for(generation, using)
        row = rows.row_of.get(int(item_id))
        if row is not None or int(item_id) in rows.absent:
            return None if row is None else rows.vectors[row].astype(np.float32)
        since = rows.forgets
    read_ids, fetched = read_vectors(generation, [int(item_id)], using)
    with _lock:
        if _rows_for(generation, using) is rows and rows.size + len(read_ids) <= cache_rows():
            rows.add(read_ids, fetched, [int(item_id)], since)
    return fetched[0].astype(np.float32) if len(read_ids) else None


def without_vector(generation: SpaceGeneration, item_ids: Sequence[int], using: str) -> list[int] | None:
    """Those of ``item_ids`` this process's cache holds no vector of (absent from the generation, or no longer
    cached), in their order; None when the cache is off or cannot hold them (nothing is known)."""
    limit = cache_rows()
    if limit <= 0 or len(item_ids) > limit:
        return None
    wanted = np.asarray(item_ids, dtype=np.int64)
    _refresh_if_due(generation, using)
    with _lock:
        ids, _ = _rows_for(generation, using).rows(wanted)
    return [int(i) for i in wanted[~np.isin(wanted, ids)]]


def warm(generation: SpaceGeneration, using: str) -> int:
    """Read every vector of ``generation`` into the cache when they all fit in it; the rows read (0 when they
    do not fit, the cache is off, or this process, or the one it was forked from, warmed it already). A web
    process's start (``services.serving.prepare_web_process``), or a pre-fork server's master before it forks
    (``prepare_master_process``): without it, the first search of each category in each process reads that
    category's vectors (~35-50 ms per space for 5,000 items)."""
    limit = cache_rows()
    embeddings = connection.ops.quote_name(Embedding._meta.db_table)
    if limit <= 0:
        return 0
    with _lock:
        if _rows_for(generation, using).warmed:
            return 0
    with connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {embeddings} WHERE generation_id = %s LIMIT %s) c",
            [generation.pk, limit + 1],
        )
        if cursor.fetchone()[0] > limit:
            return 0
    with _lock:
        rows = _rows_for(generation, using)
        since = rows.forgets
    after, read = 0, 0
    while True:
        ids, vectors = _copy_vectors(generation, f"item_id > {int(after)} ORDER BY item_id LIMIT {_WARM_CHUNK}", using)
        with _lock:
            if _rows_for(generation, using) is not rows or rows.size + len(ids) > limit:
                return read
            if len(ids):
                rows.add(ids, vectors, [], since)
            rows.warmed = len(ids) < _WARM_CHUNK
        read, after = read + len(ids), int(ids[-1]) if len(ids) else after
        if rows.warmed:
            return read


def forget(generation_id: int, item_ids) -> None:
    """Drop cached rows of ``item_ids`` in the generation (after this process writes or deletes them)."""
    item_ids = list(item_ids)
    with _lock:
        for key, rows in _generations.items():
            if key[2] == generation_id:
                rows.forget(item_ids)


def clear() -> None:
    """Forget every cached vector (tests, a settings change)."""
    with _lock:
        _generations.clear()


def _clear_on_ragrec_change(setting, **kwargs) -> None:
    if setting == "RAGREC":
        clear()


setting_changed.connect(_clear_on_ragrec_change)
