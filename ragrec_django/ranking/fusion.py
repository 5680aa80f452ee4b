"""Merge several ranked candidate lists (vector search, full text, co-purchase, ...) into one.

Every list is read in the order given, best first; an item repeated within one list counts
at its first position. The fused candidate keeps every source's reasons and components and
adds, per source, ``<source>`` (that source's original score) and ``<source>_rank`` (1-based).
Inputs are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ._maths import minmax
from .candidates import Candidate, ranked

#: Per-item hits: {item_id: {source: (rank, original score)}}.
_Hits = dict[int, dict[str, tuple[int, float]]]

_NORMALISERS = {"minmax": minmax, "none": lambda scores: scores}


def reciprocal_rank_fusion(
    ranked_lists: Mapping[str, Sequence[Candidate]],
    k: float = 60,
    weights: Mapping[str, float] | None = None,
) -> list[Candidate]:
    """Reciprocal rank fusion: ``score = sum over sources of weight / (k + rank)``, ranks from 1.

    A source missing from ``weights`` has weight 1. The fused score is also recorded as
    component ``rrf``. Returned best first, ties broken by item id.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    weights = _checked_weights(weights or {})
    merged, hits = _merge(ranked_lists)
    for item_id, candidate in merged.items():
        candidate.score = sum(weights.get(source, 1.0) / (k + rank) for source, (rank, _) in hits[item_id].items())
        candidate.components["rrf"] = candidate.score
    return ranked(merged.values())


def weighted_score_fusion(
    ranked_lists: Mapping[str, Sequence[Candidate]],
    weights: Mapping[str, float],
    normalise: str = "minmax",
) -> list[Candidate]:
    """Weighted sum of each source's (normalised) scores, e.g. text and image similarity for "similar items".

    ``normalise`` is "minmax" (each source's scores scaled to [0, 1] within its list) or "none".
    An item absent from a source gets 0 from it. Every source needs a weight. Records
    ``<source>_norm`` and the fused score as ``fused``. Returned best first, ties by item id.
    """
    if normalise not in _NORMALISERS:
        raise ValueError(f"normalise must be one of {sorted(_NORMALISERS)}, got {normalise!r}")
    missing = sorted(set(ranked_lists) - set(weights))
    if missing:
        raise ValueError(f"no weight for source(s) {missing}")
    weights = _checked_weights(weights)
    merged, hits = _merge(ranked_lists)
    normalised = _normalised_scores(hits, _NORMALISERS[normalise])
    for item_id, candidate in merged.items():
        for source, value in normalised[item_id].items():
            candidate.components[f"{source}_norm"] = value
        candidate.score = sum(weights[source] * value for source, value in normalised[item_id].items())
        candidate.components["fused"] = candidate.score
    return ranked(merged.values())


def _checked_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The weights as floats; each must be finite and >= 0."""
    for source, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight for {source!r} must be a finite number >= 0, got {weight}")
    return {source: float(weight) for source, weight in weights.items()}


def _merge(ranked_lists: Mapping[str, Sequence[Candidate]]) -> tuple[dict[int, Candidate], _Hits]:
    """One copy per item id across all lists, plus where and how each source ranked it."""
    merged: dict[int, Candidate] = {}
    hits: _Hits = {}
    for source, candidates in ranked_lists.items():
        for rank, candidate in enumerate(candidates, start=1):
            seen = hits.setdefault(candidate.item_id, {})
            if source in seen:
                continue
            seen[source] = (rank, candidate.score)
            if candidate.item_id in merged:
                merged[candidate.item_id].merge_from(candidate)
            else:
                merged[candidate.item_id] = candidate.copy()
            merged[candidate.item_id].components.update({source: candidate.score, f"{source}_rank": rank})
    return merged, hits


def _normalised_scores(hits: _Hits, normaliser) -> dict[int, dict[str, float]]:
    """{item_id: {source: normalised score}}, each source normalised over its own list."""
    by_source: dict[str, dict[int, float]] = {}
    for item_id, sources in hits.items():
        for source, (_, score) in sources.items():
            by_source.setdefault(source, {})[item_id] = score
    result: dict[int, dict[str, float]] = {item_id: {} for item_id in hits}
    for source, scores in by_source.items():
        for item_id, value in zip(scores, normaliser(list(scores.values()))):
            result[item_id][source] = float(value)
    return result
