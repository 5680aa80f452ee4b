"""Time decay: recent events count more (trending items, the "for you" profile).

A weight halves every ``half_life`` seconds: ``weight = 0.5 ** (age / half_life)``. Negative
ages (clock skew) count as age 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ._maths import unit


def time_decay_weight(age_seconds: float, half_life_seconds: float) -> float:
    """``0.5 ** (age / half_life)``: 1 now, 0.5 one half-life ago."""
    if half_life_seconds <= 0:
        raise ValueError(f"half_life_seconds must be > 0, got {half_life_seconds}")
    return 0.5 ** (max(age_seconds, 0.0) / half_life_seconds)


def decayed_popularity(events: Iterable[tuple[int, float, float]], half_life: float) -> dict[int, float]:
    """Sum of ``weight * decay(age)`` per item over ``(item_id, age_seconds, weight)`` events."""
    scores: dict[int, float] = {}
    for item_id, age, weight in events:
        scores[item_id] = scores.get(item_id, 0.0) + weight * time_decay_weight(age, half_life)
    return scores


def recency_weighted_profile(
    vectors: Sequence[np.ndarray], ages: Sequence[float], weights: Sequence[float], half_life: float
) -> np.ndarray:
    """Unit-length mean of the unit-normalised vectors, each weighted by ``weight * decay(age)``.

    Raises ValueError when the inputs differ in length, are empty, or cancel out to a zero vector.
    Returns float32, like stored embeddings.
    """
    if not len(vectors) == len(ages) == len(weights):
        raise ValueError(f"got {len(vectors)} vectors, {len(ages)} ages and {len(weights)} weights")
    if not vectors:
        raise ValueError("no vectors to build a profile from")
    factors = np.array([w * time_decay_weight(a, half_life) for a, w in zip(ages, weights)])
    profile = unit(factors @ np.stack([unit(v) for v in vectors]))
    if not profile.any():
        raise ValueError("the weighted vectors sum to zero; no profile")
    return profile.astype(np.float32)
