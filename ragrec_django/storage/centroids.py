"""Category centroids of a space generation (``CategoryCentroid``): the mean of each category's vectors, so that
``ann.nearest`` can route a query to the categories nearest it and rank the small ones exactly
(``RAGREC["HNSW"]["QUERY_CATEGORIES"]``).

PostgreSQL computes them in one statement over the generation's partition (``refresh``, on the primary); a web
process reads a generation's centroids once every ``CENTROIDS_TTL`` seconds (``nearest_categories``).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from django.db import connection, connections, transaction

from ..models import CategoryCentroid, Embedding, Item, SpaceGeneration

#: Seconds a process reuses a generation's centroids before reading them again.
CENTROIDS_TTL = 60.0
#: A written category whose centroid is older than this is computed again (``outdated``): one new product hardly
#: moves a category's mean, a day of imports may.
CENTROID_MAX_AGE_SECONDS = 3600
#: Radians added to every radius: the vectors and the centroid are stored as halfvec (about 3 significant digits).
RADIUS_SLACK = 0.01

_read: dict = {}
_read_lock = threading.Lock()


def _tables() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {
        "centroids": quote(CategoryCentroid._meta.db_table),
        "embeddings": quote(Embedding._meta.db_table),
        "items": quote(Item._meta.db_table),
    }


def refresh(generation: SpaceGeneration) -> int:
    """Compute the generation's category centroids and radii again (its rows replaced in one transaction, on the
    primary; two passes over the vectors); the number of categories. Items without a category have none."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM {centroids} WHERE generation_id = %s".format(**_tables()), [generation.pk])
        cursor.execute(
            "INSERT INTO {centroids} (generation_id, category, items, centroid, radius, computed_at) "
            "SELECT %s, m.category, m.items, m.centroid, r.radius, now() FROM ("
            "SELECT i.category, count(*) AS items, avg(e.vector) AS centroid "
            "FROM {embeddings} e JOIN {items} i ON i.id = e.item_id "
            "WHERE e.generation_id = %s AND i.category <> '' GROUP BY i.category) m "
            "CROSS JOIN LATERAL (SELECT coalesce(max(e.vector <=> m.centroid), 2) AS radius "
            "FROM {embeddings} e JOIN {items} i ON i.id = e.item_id "
            "WHERE e.generation_id = %s AND i.category = m.category) r".format(**_tables()),
            [generation.pk, generation.pk, generation.pk],
        )
        written = cursor.rowcount
    forget(generation.pk)
    return written


def outdated(generation: SpaceGeneration, item_ids: list[int]) -> bool:
    """Whether a category of ``item_ids`` has no centroid in the generation, or one computed more than
    ``CENTROID_MAX_AGE_SECONDS`` ago (one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM {items} i WHERE i.id = ANY(%s) AND i.category <> '' AND NOT EXISTS ("
            "SELECT 1 FROM {centroids} c WHERE c.generation_id = %s AND c.category = i.category "
            "AND c.computed_at > now() - make_interval(secs => %s)))".format(**_tables()),
            [[int(i) for i in item_ids], generation.pk, CENTROID_MAX_AGE_SECONDS],
        )
        return bool(cursor.fetchone()[0])


def nearest_categories(
    generation: SpaceGeneration, query: np.ndarray, count: int, using: str
) -> list[tuple[str, int, float]]:
    """``(category, its vectors, the least cosine distance any of them can have from query)`` of the ``count``
    categories whose centroids are nearest ``query`` (cosine), nearest first; none before the generation's first
    ``refresh``. The bound: every vector of a category lies within its radius (an angle) of the centroid, so none
    is nearer ``query`` than the query's angle to the centroid less that radius (the triangle inequality on the
    sphere)."""
    names, sizes, radii, unit_centroids = _centroids(generation, using)
    if not names or count <= 0:
        return []
    query = np.asarray(query, dtype=np.float32).ravel()
    scores = unit_centroids @ (query / max(float(np.linalg.norm(query)), 1e-12))
    order = np.argsort(-scores, kind="stable")[:count]
    angles = np.arccos(np.clip(scores[order], -1.0, 1.0))
    bounds = 1.0 - np.cos(np.maximum(angles - radii[order], 0.0))
    return [(names[i], sizes[i], float(bound)) for i, bound in zip(order, bounds, strict=True)]


def computed(generation: SpaceGeneration, using: str) -> bool:
    """Whether the generation has centroids (as this process read them last, at most ``CENTROIDS_TTL`` ago)."""
    return bool(_centroids(generation, using)[0])


def _centroids(generation: SpaceGeneration, using: str) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    """The generation's categories, their sizes, their radii (angles, radians) and their unit-length centroids,
    read at most every ``CENTROIDS_TTL`` seconds."""
    db = connections[using]
    key = (db.alias, db.settings_dict["NAME"], generation.pk)
    now = time.monotonic()
    with _read_lock:
        cached = _read.get(key)
    if cached is not None and now - cached[0] < CENTROIDS_TTL:
        return cached[1]
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT category, items, radius, centroid::vector::real[] FROM {centroids} WHERE generation_id = %s "
            "ORDER BY category".format(**_tables()),
            [generation.pk],
        )
        rows = cursor.fetchall()
    names, sizes = [row[0] for row in rows], [int(row[1]) for row in rows]
    # halfvec rounding of the vectors and the centroid: a little wider, so that the bound never excludes a vector
    radii = np.arccos(np.clip(1.0 - np.array([row[2] for row in rows], dtype=np.float64), -1.0, 1.0)) + RADIUS_SLACK
    matrix = np.array([row[3] for row in rows], dtype=np.float32).reshape(len(rows), int(generation.dimension))
    value = (names, sizes, radii, matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12))
    with _read_lock:
        if len(_read) > 64:
            _read.clear()
        _read[key] = (now, value)
    return value


def forget(generation_id: int | None = None) -> None:
    """Drop this process's copy of a generation's centroids (every generation's when None)."""
    with _read_lock:
        for key in [k for k in _read if generation_id is None or k[2] == generation_id]:
            del _read[key]
