"""Ranking metrics, pure functions of ranked lists and relevant sets (no Django, no database).

Conventions: ``ranked`` is a recommended list, best first (a repeated item counts at its first
position only); ``relevant`` is the set of held-out items; ``k`` is a cut-off >= 1. Relevance is
binary. A user with no relevant items has no defined recall or nDCG: callers leave such users
out (``ValueError`` here).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import combinations

import numpy as np


def _top(ranked: Sequence[Hashable], k: int) -> list:
    """The first ``k`` distinct items of ``ranked``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    seen, top = set(), []
    for item in ranked:
        if item not in seen:
            seen.add(item)
            top.append(item)
            if len(top) == k:
                break
    return top


def _relevant(relevant: Iterable[Hashable]) -> set:
    relevant = set(relevant)
    if not relevant:
        raise ValueError("no relevant items: recall, nDCG and MRR are undefined")
    return relevant


def hits_at_k(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> int:
    """How many of the first ``k`` recommendations are relevant."""
    relevant = _relevant(relevant)
    return sum(1 for item in _top(ranked, k) if item in relevant)


def precision_at_k(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """Relevant items among the first ``k``, divided by ``k`` (a short list is not padded out)."""
    return hits_at_k(ranked, relevant, k) / k


def recall_at_k(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """Share of the relevant items found in the first ``k`` recommendations."""
    relevant = _relevant(relevant)
    return hits_at_k(ranked, relevant, k) / len(relevant)


def hit_rate_at_k(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """1.0 if any of the first ``k`` recommendations is relevant, else 0.0."""
    return 1.0 if hits_at_k(ranked, relevant, k) else 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int) -> float:
    """Normalised discounted cumulative gain with binary gains.

    ``DCG = sum over relevant items at 1-based position p <= k of 1 / log2(p + 1)``, divided by the
    DCG of a perfect list (all relevant items first, at most ``k`` of them).
    """
    relevant = _relevant(relevant)
    dcg = sum(
        1.0 / math.log2(position + 1) for position, item in enumerate(_top(ranked, k), start=1) if item in relevant
    )
    ideal = sum(1.0 / math.log2(position + 1) for position in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def reciprocal_rank(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k: int | None = None) -> float:
    """1 / (1-based position of the first relevant item), 0.0 if none in the first ``k`` (all if None).

    The mean over users is MRR (MRR@k with a cut-off).
    """
    relevant = _relevant(relevant)
    items = _top(ranked, k) if k is not None else _top(ranked, max(len(ranked), 1))
    for position, item in enumerate(items, start=1):
        if item in relevant:
            return 1.0 / position
    return 0.0


def catalogue_coverage(lists: Iterable[Sequence[Hashable]], catalogue_size: int, k: int) -> float:
    """Distinct items appearing in anyone's first ``k`` recommendations, over the catalogue size."""
    if catalogue_size < 1:
        raise ValueError(f"catalogue_size must be >= 1, got {catalogue_size}")
    shown = set()
    for ranked in lists:
        shown.update(_top(ranked, k))
    return len(shown) / catalogue_size


def intra_list_diversity(
    ranked: Sequence[Hashable],
    k: int,
    *,
    vectors: Mapping[Hashable, np.ndarray] | None = None,
    categories: Mapping[Hashable, str] | None = None,
) -> float | None:
    """1 - mean pairwise similarity of the first ``k`` items; None with fewer than two items.

    With ``vectors``: similarity is the cosine of the two items' vectors (pairs where either item has
    no vector are left out). Otherwise with ``categories``: similarity is 1 for the same category and
    0 for different ones (diversity = share of pairs from different categories). Give one of the two.
    """
    if (vectors is None) == (categories is None):
        raise ValueError("give exactly one of vectors or categories")
    top = _top(ranked, k)
    if vectors is not None:
        rows = [np.asarray(vectors[item], dtype=np.float64) for item in top if item in vectors]
        if len(rows) < 2:
            return None
        matrix = np.stack(rows)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms > 0, norms, 1.0)
        similarity = matrix @ matrix.T
        upper = similarity[np.triu_indices(len(rows), k=1)]
        return float(1.0 - upper.mean())
    if len(top) < 2:
        return None
    pairs = list(combinations(top, 2))
    same = sum(1 for a, b in pairs if categories.get(a, "") == categories.get(b, ""))
    return 1.0 - same / len(pairs)


def ranking_curves(ranked: Sequence[Hashable], relevant: Iterable[Hashable], k_max: int) -> dict[str, list[float]]:
    """recall, ndcg, hit_rate and precision at every k in 1..k_max, plus ``mrr`` (MRR@k_max, one value).

    The same numbers as calling the single-k functions for each k, computed in one pass.
    """
    relevant = _relevant(relevant)
    top = _top(ranked, k_max)
    gains = [1.0 if item in relevant else 0.0 for item in top] + [0.0] * (k_max - len(top))
    recall, ndcg, hit_rate, precision = [], [], [], []
    hits = dcg = ideal = 0.0
    first_hit = None
    for position, gain in enumerate(gains, start=1):
        discount = 1.0 / math.log2(position + 1)
        hits += gain
        dcg += gain * discount
        if position <= len(relevant):
            ideal += discount
        if gain and first_hit is None:
            first_hit = position
        recall.append(hits / len(relevant))
        ndcg.append(dcg / ideal)
        hit_rate.append(1.0 if hits else 0.0)
        precision.append(hits / position)
    return {
        "recall": recall,
        "ndcg": ndcg,
        "hit_rate": hit_rate,
        "precision": precision,
        "mrr": [1.0 / first_hit if first_hit else 0.0],
    }


def diversity_curve(
    ranked: Sequence[Hashable], k_max: int, vectors: Mapping[Hashable, np.ndarray]
) -> list[float | None]:
    """``intra_list_diversity(ranked, k, vectors=vectors)`` for every k in 1..k_max, in one pass."""
    top = [item for item in _top(ranked, k_max)]
    curve: list[float | None] = []
    present = [item in vectors for item in top]
    rows = [np.asarray(vectors[item], dtype=np.float64) for item, ok in zip(top, present) if ok]
    if len(rows) >= 2:
        matrix = np.stack(rows)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms > 0, norms, 1.0)
        similarity = matrix @ matrix.T
    total, pairs, row = 0.0, 0, 0
    for k in range(1, k_max + 1):
        if k <= len(top) and present[k - 1]:
            if row:
                total += float(similarity[row, :row].sum())
                pairs += row
            row += 1
        curve.append(1.0 - total / pairs if pairs else None)
    return curve


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


__all__ = [
    "catalogue_coverage",
    "hit_rate_at_k",
    "hits_at_k",
    "intra_list_diversity",
    "mean",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_curves",
    "recall_at_k",
    "reciprocal_rank",
    "diversity_curve",
]
