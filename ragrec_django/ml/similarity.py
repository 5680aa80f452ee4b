"""Cosine distances of stored float16 vectors to a query, as pgvector computes them on ``halfvec``.

Used to rank a filter's items exactly from vectors kept in the process (``storage/vector_cache.py``). Converting a
block of float16 rows to float32 is most of the work, so ``nearest_rows`` first scores a large block with torch's
float16 matrix-vector product (float32 accumulation, no converted copy: 50,000 x 384 rows in ~2.5 ms against
~60-90 ms converted), then ranks the rows that can be among the nearest in float32 as pgvector does. Torch is the
``ml`` extra; without it, numpy converts every row. No Django.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .lazy import LazyModule

torch = LazyModule("torch")

HAS_TORCH = importlib.util.find_spec("torch") is not None


def vector_norms(vectors: np.ndarray) -> np.ndarray:
    """The float32 L2 norm of each float16 row."""
    if HAS_TORCH:
        return torch.linalg.vector_norm(torch.from_numpy(np.ascontiguousarray(vectors)).float(), dim=1).numpy()
    return np.linalg.norm(vectors.astype(np.float32), axis=1)


def cosine_distances(block: np.ndarray, norms: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``1 - cos`` between the float16 rows of ``block`` (with their ``norms``) and ``query`` (float32 arithmetic,
    the similarity clipped to [-1, 1] as pgvector does); ``inf`` where a norm is zero (pgvector's NaN, never
    ranked)."""
    query = np.asarray(query, dtype=np.float32)
    if HAS_TORCH:
        dots = (torch.from_numpy(np.ascontiguousarray(block)).float() @ torch.from_numpy(query)).numpy()
    else:
        dots = block.astype(np.float32) @ query
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = dots / (norms * np.float32(np.linalg.norm(query)))
    distance = 1.0 - np.clip(similarity, -1.0, 1.0)
    return np.where(np.isnan(distance), np.inf, distance)


#: Blocks of at most this many rows are ranked in float32 directly (the float16 shortlist saves nothing).
SHORTLIST_MIN_ROWS = 4096
#: A float16 product of unit vectors is within half a float16 unit in the last place (2**-12 relative) of the
#: float32 one, and the query's rounding to float16 adds about as much: the shortlist keeps every row whose float16
#: similarity is within this of the k-th best, far above both, so the float32 ranking of the shortlist is that of
#: the whole block.
SHORTLIST_MARGIN = 4e-3


def nearest_rows(block: np.ndarray, norms: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, distances)``: the rows of ``block`` (float16, with their ``norms``) among the ``k`` nearest to
    ``query`` by ``cosine_distances`` and their distances, unordered; rows tied at the k-th distance may be included.
    Rows with a zero norm are never returned."""
    positions = _shortlist(block, norms, query, k)
    distances = cosine_distances(
        block if positions is None else block[positions], norms if positions is None else norms[positions], query
    )
    if positions is None:
        positions = np.arange(len(block))
    finite = np.isfinite(distances)
    positions, distances = positions[finite], distances[finite]
    if k < len(distances):
        kth = np.partition(distances, k - 1)[k - 1]
        keep = distances <= kth
        positions, distances = positions[keep], distances[keep]
    return positions, distances


def _shortlist(block: np.ndarray, norms: np.ndarray, query: np.ndarray, k: int) -> np.ndarray | None:
    """Positions of the rows that can be among the ``k`` nearest, from a float16 product; None: rank every row."""
    if not HAS_TORCH or len(block) <= max(SHORTLIST_MIN_ROWS, 4 * k):
        return None
    unit = np.asarray(query, dtype=np.float32)
    length = float(np.linalg.norm(unit))
    if not np.isfinite(length) or length == 0.0:
        return None
    half_query = torch.from_numpy((unit / length).astype(np.float16))
    dots = (torch.from_numpy(np.ascontiguousarray(block)) @ half_query).float().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = dots / norms
    if not np.isfinite(similarity[norms > 0]).all():  # a float16 product overflowed: rank in float32
        return None
    similarity[~np.isfinite(similarity)] = -np.inf
    kth = np.partition(similarity, len(similarity) - k)[len(similarity) - k]
    if not np.isfinite(kth):
        return None
    return np.flatnonzero(similarity >= kth - SHORTLIST_MARGIN)
