"""Re-ranking for variety: MMR, per-category caps, near-duplicate suppression, one variant per parent.

Each function takes candidates in ranked order (best first), keeps that order for what it
keeps, and returns a new list without modifying the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._maths import minmax, unit
from .candidates import Candidate, ranked, ranking_key


def mmr(candidates: Sequence[Candidate], k: int, lambda_: float = 0.7) -> list[Candidate]:
    """Maximal marginal relevance: pick ``k`` candidates, each maximising
    ``lambda_ * relevance - (1 - lambda_) * max cosine similarity to those already picked``.

    Relevance is the score min-max scaled to [0, 1] over the candidates. A candidate without a
    vector has similarity 0 to everything. ``lambda_=1`` is plain score order; lower is more diverse.
    Ties go to the better-ranked candidate. Returned in pick order.
    """
    if not 0 <= lambda_ <= 1:
        raise ValueError(f"lambda_ must be between 0 and 1, got {lambda_}")
    pool = ranked(candidates)
    if k <= 0 or not pool:
        return []
    relevance = minmax([c.score for c in pool])
    vectors = _unit_rows(pool)
    max_similarity = np.full(len(pool), -np.inf)
    available = np.ones(len(pool), dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, len(pool))):
        penalty = max_similarity if picked else 0.0
        gain = np.where(available, lambda_ * relevance - (1 - lambda_) * penalty, -np.inf)
        best = int(np.argmax(gain))
        picked.append(best)
        available[best] = False
        max_similarity = np.maximum(max_similarity, vectors @ vectors[best])
    return [pool[i] for i in picked]


def cap_per_category(candidates: Sequence[Candidate], max_per_category: int) -> list[Candidate]:
    """Drop candidates beyond the first ``max_per_category`` of each category (uncategorised ones are not capped)."""
    if max_per_category < 1:
        raise ValueError(f"max_per_category must be >= 1, got {max_per_category}")
    counts: dict[str, int] = {}
    kept = []
    for candidate in candidates:
        if candidate.category:
            counts[candidate.category] = counts.get(candidate.category, 0) + 1
            if counts[candidate.category] > max_per_category:
                continue
        kept.append(candidate)
    return kept


def suppress_near_duplicates(candidates: Sequence[Candidate], threshold: float = 0.97) -> list[Candidate]:
    """Drop a candidate whose vector has cosine similarity >= ``threshold`` with an already kept one.

    Candidates are visited in the order given; those without a vector are always kept.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    vectors = _unit_rows(candidates)
    kept_vectors = np.empty_like(vectors)
    kept: list[Candidate] = []
    n_vectors = 0
    for i, candidate in enumerate(candidates):
        if candidate.vector is not None:
            if n_vectors and float(np.max(kept_vectors[:n_vectors] @ vectors[i])) >= threshold:
                continue
            kept_vectors[n_vectors] = vectors[i]
            n_vectors += 1
        kept.append(candidate)
    return kept


def group_variants(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Keep only the best-scoring candidate of each non-empty ``group_key`` (ties: lowest item id)."""
    best: dict[str, Candidate] = {}
    for candidate in candidates:
        current = best.get(candidate.group_key)
        if candidate.group_key and (current is None or ranking_key(candidate) < ranking_key(current)):
            best[candidate.group_key] = candidate
    return [c for c in candidates if not c.group_key or best[c.group_key] is c]


def _unit_rows(candidates: Sequence[Candidate]) -> np.ndarray:
    """Unit vectors as rows; a candidate without a vector gets a zero row (similarity 0 to all)."""
    dimension = next((np.asarray(c.vector).size for c in candidates if c.vector is not None), 0)
    rows = np.zeros((len(candidates), dimension))
    for i, candidate in enumerate(candidates):
        if candidate.vector is not None:
            rows[i] = unit(candidate.vector)
    return rows
