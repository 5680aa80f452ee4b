"""Cosine distances of stored float16 vectors to a query, as pgvector computes them on ``halfvec``.

Used to rank a filter's items exactly from vectors kept in the process (``storage/vector_cache.py``). The
float16 -> float32 conversion is most of the work: torch's (vectorised, F16C) is ~10x numpy's, so torch does it
when it is installed (the ``ml`` extra); numpy otherwise. No Django.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .lazy import LazyModule

torch = LazyModule("torch")

HAS_TORCH = importlib.util.find_spec("torch") is not None


def cosine_distances(matrix: np.ndarray, rows: np.ndarray, norms: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``1 - cos`` between ``matrix[rows]`` (float16, with their ``norms``) and ``query`` (float32 arithmetic, the
    similarity clipped to [-1, 1] as pgvector does); ``inf`` where a norm is zero (pgvector's NaN, never ranked)."""
    query = np.asarray(query, dtype=np.float32)
    if HAS_TORCH:
        block = torch.from_numpy(matrix).index_select(0, torch.from_numpy(rows)).float()
        dots = (block @ torch.from_numpy(query)).numpy()
    else:
        dots = matrix[rows].astype(np.float32) @ query
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = dots / (norms * np.float32(np.linalg.norm(query)))
    distance = 1.0 - np.clip(similarity, -1.0, 1.0)
    return np.where(np.isnan(distance), np.inf, distance)
