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

from . import learned

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


# ---------------------------------------------------------------- a learned "similar": features, training queries

#: Candidate popularity windows (days) among the features (``learned.POPULARITY_WINDOWS`` are what the signal
#: sources count).
SIMILAR_POPULARITY_WINDOWS = (7, 30, 365)
#: The features beside every source's ``<source>_rank`` / ``<source>_score``.
ITEM_FEATURES = (
    "sources",  # how many sources list the candidate
    "best_rank",  # its best rank in any source
    *("popularity_%d" % days for days in SIMILAR_POPULARITY_WINDOWS),
    "anchor_popularity_365",
    "co_purchase_share",  # co-purchase score / the anchor's orders read (at most the latest 50)
    "co_purchase_lift",  # co-purchase score / (1 + the candidate's orders in 365 days)
    "same_category",  # 1 / 0; NaN when either has no category
    "log_price_ratio",  # log(candidate price / anchor price); NaN without both
    "age_days",  # days since the candidate's first order within 365 days (NaN: none)
)


def feature_key(source: str) -> str:
    """A source's name as a feature name prefix (LightGBM refuses JSON's special characters: ``space:text`` ->
    ``space_text``)."""
    return "".join("_" if char in ':,[]{}"' else char for char in source)


def feature_names(sources: Sequence[str]) -> list[str]:
    """The feature list of a model trained on the stage's ``sources``."""
    return [feature_key(source) + suffix for source in sources for suffix in ("_rank", "_score")] + list(ITEM_FEATURES)


def feature_columns(candidates: StageCandidates, signals: tuple, at: float) -> dict[str, np.ndarray]:
    """Every feature of the candidates of one anchor, by name. ``signals``: what a ``learned.SignalSource``'s
    ``item_signals([anchor, *candidates.items], at)`` answers (popularity per window, first order within the
    longest window, price, category), row 0 the anchor's: counts of events before ``at`` only."""
    popularity, first_seen, price, category = signals
    n = len(candidates)
    columns: dict[str, np.ndarray] = {}
    for source in candidates.sources:
        columns[feature_key(source) + "_rank"] = candidates.ranks[source].astype(np.float64)
        columns[feature_key(source) + "_score"] = candidates.scores[source].astype(np.float64)
    ranks = np.vstack([candidates.ranks[s] for s in candidates.sources]) if candidates.sources else np.zeros((0, n))
    listed = ~np.isnan(ranks)
    columns["sources"] = listed.sum(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        columns["best_rank"] = np.where(listed.any(axis=0), np.nanmin(np.where(listed, ranks, np.inf), axis=0), np.nan)
    year = np.asarray(popularity[365], dtype=np.float64)
    for days in SIMILAR_POPULARITY_WINDOWS:
        columns["popularity_%d" % days] = np.asarray(popularity[days], dtype=np.float64)[1:]
    columns["anchor_popularity_365"] = np.full(n, year[0] if len(year) else np.nan)
    co_purchase = np.nan_to_num(candidates.scores.get("co_purchase", np.zeros(n)), nan=0.0)
    read = min(float(year[0]), 50.0) if len(year) else 0.0  # the co-purchase source reads the latest 50 orders
    columns["co_purchase_share"] = co_purchase / read if read else np.full(n, np.nan)
    columns["co_purchase_lift"] = co_purchase / (1.0 + year[1:])
    category = np.asarray(category, dtype=object)
    known = np.asarray([bool(c) for c in category[1:]]) & bool(len(category) and category[0])
    columns["same_category"] = np.where(known, (category[1:] == category[0]).astype(np.float64), np.nan)
    price = np.asarray(price, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.log(price[1:] / price[0]) if len(price) else np.zeros(0)
    columns["log_price_ratio"] = np.where(np.isfinite(ratio), ratio, np.nan)
    columns["age_days"] = (at - np.asarray(first_seen, dtype=np.float64)[1:]) / 86400.0
    return columns


def feature_matrix(columns: Mapping[str, np.ndarray], names: Sequence[str], rows: int) -> np.ndarray:
    """The ``names`` columns as a float32 matrix of ``rows`` rows; a name without a column (a source that is not
    there, e.g. a vector space added after training) is NaN, the model's missing value."""
    matrix = np.full((rows, len(names)), np.nan, dtype=np.float32)
    for j, name in enumerate(names):
        if name in columns:
            matrix[:, j] = columns[name]
    return matrix


def fusion_scores(candidates: StageCandidates, weights: Mapping[str, float]) -> np.ndarray:
    """What ``similar_items`` serves with the fusion ranker, on these candidates: each space's cosine min-max
    scaled over the candidates it lists, summed with ``weights`` ({space: weight}) as
    ``ranking.fusion.weighted_score_fusion`` sums them; a candidate of no space scores -1 (after all of theirs)."""
    total = np.zeros(len(candidates))
    listed = np.zeros(len(candidates), dtype=bool)
    for space, weight in weights.items():
        scores = candidates.scores.get(space_source(space))
        if scores is None or not weight:
            continue
        present = ~np.isnan(scores)
        if not present.any():
            continue
        low, high = scores[present].min(), scores[present].max()
        scaled = (scores - low) / (high - low) if high > low else np.ones(len(scores))
        total += np.where(present, float(weight) * scaled, 0.0)
        listed |= present
    return np.where(listed, total, -1.0)


def source_scores(candidates: StageCandidates, source: str) -> np.ndarray:
    """One source's order on these candidates (its rank; -inf where it does not list them): that source alone."""
    ranks = candidates.ranks.get(source)
    return np.full(len(candidates), -np.inf) if ranks is None else np.where(np.isnan(ranks), -np.inf, -ranks)


def ordered(candidates: StageCandidates, scores: np.ndarray) -> list[int]:
    """Candidate item ids by score, best first, ties by lower id."""
    order = np.lexsort((candidates.items, -np.asarray(scores, dtype=np.float64)))
    return candidates.items[order].tolist()


@dataclass
class SimilarPoint:
    """One training query: an item of an order (the anchor) at the order's time, labelled by the order's other
    items (``bought``: what the shopper had bought before it, for the new-items measurement)."""

    visitor: str
    anchor: int
    at: float
    targets: frozenset
    bought: frozenset = frozenset()


def similar_points(
    log, *, since: float, until: float, per_basket: int = 5, seed: int = 0, limit: int | None = None
) -> list[SimilarPoint]:
    """The training queries of ``log`` (``ranking.learned.EventLog``) from the orders placed in ``[since, until)``
    with two or more items: up to ``per_basket`` anchors per order (a seeded sample of its items that were
    ordered before), at most ``limit`` queries in all (a seeded sample)."""
    import random

    owner: dict[int, str] = {}
    for visitor, lines in log.visitor_lines.items():
        for line in lines:
            if line[2] >= 0:
                owner[line[2]] = visitor
    baskets = np.flatnonzero((log.basket_times >= since) & (log.basket_times < until))
    points: list[SimilarPoint] = []
    for basket in baskets.tolist():
        columns = log.basket_columns[log.basket_indptr[basket] : log.basket_indptr[basket + 1]]
        if len(columns) < 2:
            continue
        at = float(log.basket_times[basket])
        # an anchor needs orders before ``at`` (else no behavioural source knows it)
        earlier = log._before(columns, at) > log.column_start[columns]
        anchors = log.item_ids[columns[earlier]].tolist()
        if not anchors:
            continue
        items = frozenset(log.item_ids[columns].tolist())
        rng = random.Random(seed * 1_000_003 + basket)
        chosen = sorted(anchors) if len(anchors) <= per_basket else sorted(rng.sample(anchors, per_basket))
        for anchor in chosen:
            points.append(SimilarPoint(owner.get(basket, ""), int(anchor), at, items - {anchor}))
    if limit is not None and len(points) > limit:
        points = random.Random(seed).sample(points, limit)
        points.sort(key=lambda p: (p.at, p.anchor))
    return points


def stage_from_log(
    log,
    anchor: int,
    at: float,
    *,
    factors=None,
    space_lists: Mapping[str, Sequence[tuple[int, float]]] | None = None,
    quotas: Mapping[str, int],
    limit: int = SIMILAR_CANDIDATES,
) -> StageCandidates:
    """The stage of ``services.item_candidates.similar_candidates`` from an in-memory ``EventLog`` as of ``at``:
    co-purchases from the anchor's latest orders before ``at``, the kNN neighbours of ``factors`` (trained before
    ``at``), the vector spaces' lists as given (content: no time). Co-views are not in the log (empty)."""
    lists: dict[str, list[tuple[int, float]]] = dict(space_lists or {})
    counts, _ = log.co_purchase_scores([anchor], at)
    lists["co_purchase"] = learned._best_of(log.item_ids, counts, {anchor}, limit)
    lists["co_view"] = []
    knn = None if factors is None else factors.knn_scores(np.asarray([anchor], dtype=np.int64), np.ones(1))
    lists["knn"] = [] if knn is None else learned._best_of(factors.item_ids, knn, {anchor}, limit)
    return gather(lists, quotas, limit=limit, exclude={anchor})


def query_rows(
    log, point: SimilarPoint, names: Sequence[str], *, factors=None, space_lists=None, quotas, limit=SIMILAR_CANDIDATES
) -> tuple[np.ndarray, np.ndarray, StageCandidates]:
    """Features (``names``), 0/1 labels and candidates of one training query; every feature reads events before
    ``point.at`` only."""
    candidates = stage_from_log(
        log, point.anchor, point.at, factors=factors, space_lists=space_lists, quotas=quotas, limit=limit
    )
    signals = log.item_signals(np.concatenate([[point.anchor], candidates.items]).astype(np.int64), point.at)
    columns = feature_columns(candidates, signals, point.at)
    labels = np.fromiter((item in point.targets for item in candidates.items.tolist()), dtype=np.float64)
    return feature_matrix(columns, names, len(candidates)), labels, candidates
