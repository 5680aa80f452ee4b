"""Small numeric helpers shared by fusion and diversity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def minmax(values: Sequence[float]) -> np.ndarray:
    """Scale to [0, 1]; when all values are equal every one becomes 1 (they are all the best)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return array
    low, high = array.min(), array.max()
    if high == low:
        return np.ones_like(array)
    return (array - low) / (high - low)


def unit(vector: np.ndarray) -> np.ndarray:
    """The vector scaled to length 1 as float64; a zero vector stays zero."""
    array = np.asarray(vector, dtype=np.float64).ravel()
    norm = np.linalg.norm(array)
    return array / norm if norm > 0 else array
