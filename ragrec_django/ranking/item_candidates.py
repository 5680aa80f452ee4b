"""The candidate stage of "similar items": candidates for one anchor item from every source, each with its raw
score and rank (pure: no Django, no database; numpy only).

"For you" has its own stage (``ranking.learned.gather_candidates``, fixed sources). "Similar items" gathers, for
one anchor item, from:

* ``space:<name>``: the anchor's nearest neighbours in each vector space (score: cosine similarity);
* ``co_purchase``: items in the anchor's latest orders (score: orders holding both);
* ``co_view``: items the anchor's latest viewers viewed within a window of viewing it (score: such viewers);
* ``knn``: the anchor's item-kNN neighbours in the active learned model (score: its size-weighted cosine).

``gather`` merges the sources' ranked lists under per-source quotas into at most ``limit`` candidates, each
keeping every source's score and 1-based rank (NaN: not from that source), as features for a model to rank.
The same function serves the database path (``services.item_candidates``) and the offline measurement
(``benchmarks/similar_candidates.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Candidates gathered per anchor, at most (the issue's N).
SIMILAR_CANDIDATES = 200
#: The behavioural sources' quotas, in merge order (after the spaces): an item bought or viewed with the anchor
#: is the label the stage is judged by (docs/evaluation.md, "similar items").
BEHAVIOUR_QUOTAS = {"co_purchase": 60, "co_view": 40, "knn": 40}
#: Each vector space's quota.
SPACE_QUOTA = 30


def space_source(space: str) -> str:
    """The source name of a vector space's neighbours."""
    return "space:" + space


def similar_quotas(spaces: Iterable[str]) -> dict[str, int]:
    """Per source, in merge order: the spaces (``SPACE_QUOTA`` each), then ``BEHAVIOUR_QUOTAS``."""
    return {**{space_source(space): SPACE_QUOTA for space in spaces}, **BEHAVIOUR_QUOTAS}


@dataclass
class StageCandidates:
    """Candidate item ids and, per source, their raw score and 1-based rank in that source's whole list."""

    items: np.ndarray
    scores: dict[str, np.ndarray]
    ranks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sources(self) -> list[str]:
        return list(self.ranks)

    def source_of(self, position: int) -> str | None:
        """The source that ranked this candidate best (by rank, then merge order), for its reason."""
        ranked = [
            (rank, i, source)
            for i, (source, ranks) in enumerate(self.ranks.items())
            if not np.isnan(rank := ranks[position])
        ]
        return min(ranked)[2] if ranked else None

    def found(self, targets: Iterable[int]) -> dict[str, int]:
        """How many of ``targets`` (distinct item ids) are candidates: per source (its rank known) and in total."""
        present = {int(item): i for i, item in enumerate(self.items.tolist())}
        hits = [present[int(t)] for t in set(targets) if int(t) in present]
        counts = {source: int(sum(not np.isnan(ranks[i]) for i in hits)) for source, ranks in self.ranks.items()}
        counts["total"] = len(hits)
        return counts


def gather(
    lists: Mapping[str, Sequence[tuple[int, float]]],
    quotas: Mapping[str, int],
    *,
    limit: int = SIMILAR_CANDIDATES,
    exclude: Iterable[int] = (),
) -> StageCandidates:
    """Merge ranked ``(item, score)`` lists (best first; a source in ``quotas`` without a list is empty): each
    source's first ``quotas[source]`` items in ``quotas`` order, duplicates once, ``exclude`` never, then the
    sources' further items in turn (round robin by rank) while fewer than ``limit`` were gathered. Every
    candidate keeps each source's score and rank from the whole list (NaN: not in it)."""
    excluded = {int(item) for item in exclude}
    sources = list(quotas)
    ranked = {source: [(int(item), float(score)) for item, score in lists.get(source, ())] for source in sources}
    chosen: dict[int, None] = {}

    def take(item: int) -> None:
        if item not in excluded and len(chosen) < limit:
            chosen.setdefault(item, None)

    for source in sources:
        for item, _ in ranked[source][: quotas[source]]:
            take(item)
    depth = max((len(values) for values in ranked.values()), default=0)
    for rank in range(depth):  # the quotas left room: fill it from every source, best ranks first
        if len(chosen) >= limit:
            break
        for source in sources:
            if rank >= quotas[source] and rank < len(ranked[source]):
                take(ranked[source][rank][0])
    items = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
    position = {item: i for i, item in enumerate(chosen)}
    scores, ranks = {}, {}
    for source in sources:
        scores[source] = np.full(len(items), np.nan)
        ranks[source] = np.full(len(items), np.nan)
        for rank, (item, score) in enumerate(ranked[source], start=1):
            i = position.get(item)
            if i is not None and np.isnan(ranks[source][i]):
                scores[source][i], ranks[source][i] = score, rank
    return StageCandidates(items=items, scores=scores, ranks=ranks)


def best(scores: Mapping[int, float], exclude: Iterable[int], limit: int) -> list[tuple[int, float]]:
    """``{item: score}`` as a ranked list: positive finite scores, best first, ties by lower id, ``exclude`` never."""
    excluded = {int(item) for item in exclude}
    ranked = sorted(
        (-float(score), int(item))
        for item, score in scores.items()
        if int(item) not in excluded and np.isfinite(score) and score > 0
    )
    return [(item, -negative) for negative, item in ranked[:limit]]
