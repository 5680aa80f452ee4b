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
