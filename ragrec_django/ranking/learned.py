"""Learned ranking, the pure part: candidates from every source and point-in-time features per (visitor, item).

No Django, no database, numpy only. The same two functions serve training and serving:

* ``gather_candidates``: the visitor's repeat purchases, co-purchases of their strongest repeats, co-views of
  their recently viewed items, their items' nearest neighbours (item-kNN), the matrix-factorisation (ALS) items,
  the "bought together" partners of their recent orders (the item model's basket table), the nearest items to
  their profile in each vector space (``space:<name>``), the trending items, the popular items of their
  categories, the new items and the popular items, each with its source's score and rank;
* ``feature_matrix``: one row of ``FEATURES`` per candidate, from the visitor's own events
  (``VisitorHistory``) and the item signals (``ItemSignals``), all read strictly before ``at``.

Serving reads those inputs from the database (``storage.ranking``); training and the offline
evaluation read them from an in-memory ``EventLog``, which answers the same questions for any
time ``T`` from the events before ``T`` only. Times are Unix seconds (floats); missing values are NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

DAY = 86400.0
#: Candidate sources, in the order their lists are merged; the vector spaces' sources (``space:<name>``, one per
#: space the caller passes vectors of) come after ``basket`` (``source_order``).
SOURCES = ("repeat", "co_purchase", "co_view", "knn", "als", "basket", "trending", "category", "new", "popular")
#: A vector space's source name is this prefix and the space's name.
SPACE_PREFIX = "space:"
#: Popularity windows (days): baskets holding the item in each window before ``at``.
POPULARITY_WINDOWS = (7, 30, 90, 365)
#: The repeat score's half-life in orders (as ``services.history.REPEAT_HALF_LIFE_ORDERS``).
REPEAT_HALF_LIFE_ORDERS = 3.0
#: Half-lives (orders) of the two more repeat scores the model sees: the last order or two, and the long run.
REPEAT_RECENT_HALF_LIFE_ORDERS = 1.0
REPEAT_LONG_HALF_LIFE_ORDERS = 10.0
#: Co-purchases start from the visitor's strongest repeat purchases, at most this many, each read in
#: its latest ``CO_PURCHASE_ORDERS_PER_ITEM`` orders before ``at``.
CO_PURCHASE_SEEDS = 20
CO_PURCHASE_ORDERS_PER_ITEM = 50
#: The popular source: the top items by baskets in the last ``POPULAR_WINDOW_DAYS`` before ``at``.
POPULAR_WINDOW_DAYS = 30
#: Co-views: the visitor's latest ``CO_VIEW_SEEDS`` distinct items they did not buy in that event (views, clicks,
#: adds to cart), each read in its latest ``CO_VIEW_VIEWERS`` viewers before ``at``: what each viewed within
#: ``CO_VIEW_WINDOW_SECONDS`` of their view of it (as ``storage.ranking.co_views``), summed over the seeds.
CO_VIEW_SEEDS = 5
CO_VIEW_VIEWERS = 50
CO_VIEW_WINDOW_SECONDS = 86400.0
#: Trending (as the trending service): every visitor counts once per item with their strongest event's weight
#: (``TRENDING_WEIGHTS``) decayed by its age, half-life ``TRENDING_HALF_LIFE_HOURS``; events older than eight
#: half-lives are not read.
TRENDING_HALF_LIFE_HOURS = 72.0
TRENDING_WEIGHTS = {"purchase": 5.0, "other": 1.0}
#: Category popularity: the popular items (orders in ``POPULAR_WINDOW_DAYS``) of the visitor's
#: ``CATEGORY_SEEDS`` categories with most of their purchase lines, each scored by its orders times the
#: category's share of those lines.
CATEGORY_SEEDS = 3
#: New items: first ordered (within the longest popularity window) less than ``NEW_ITEM_DAYS`` before ``at``,
#: ranked by their orders since.
NEW_ITEM_DAYS = 30
#: How many items the shared lists (trending, each category's popular items, new items) offer.
SHARED_CANDIDATES = 100
#: The visitor's profile in a vector space: the unit mean of the unit vectors of their latest ``PROFILE_EVENTS``
#: events' items, a purchase weighing ``PROFILE_PURCHASE_WEIGHT`` and any other event 1, each decayed by its age
#: before their latest event (half-life ``PROFILE_HALF_LIFE_DAYS``, as ``PROFILE_HALF_LIFE_HOURS``).
PROFILE_EVENTS = 200
PROFILE_PURCHASE_WEIGHT = 5.0
PROFILE_HALF_LIFE_DAYS = 14.0
#: A session: the visitor's events with no gap longer than this between one and the next.
SESSION_GAP_SECONDS = 1800.0
FEATURES = (
    # each source's score and rank (NaN: not from that source)
    "repeat_score",
    "repeat_rank",
    "co_purchase_score",
    "co_purchase_rank",
    "co_purchase_share",
    "co_purchase_lift",
    "co_purchase_last",
    "knn_score",
    "knn_rank",
    "knn_last",
    "als_score",
    "als_rank",
    "popular_rank",
    # the visitor and this item
    "item_orders",
    "item_order_share",
    "repeat_score_recent",
    "repeat_score_long",
    "orders_since_item",
    "item_order_gap",
    "item_order_gap_ratio",
    "days_item_before_last_order",
    "days_first_item_before_last_order",
    "item_quantity",
    "item_interval_days",
    "item_interval_ratio",
    "in_last_order",
    "item_views",
    "days_item_event_before_last_event",
    # the item
    "item_repeat_rate",
    "item_buyers",
    *("popularity_%dd" % days for days in POPULARITY_WINDOWS),
    "popularity_trend",
    "item_age_days",
    "price",
    "price_vs_visitor",
    # 1 in stock, 0 out of stock, NaN unknown: the catalogue's state now, so the training log (past queries) has
    # none to give (``EventLog.build`` without ``stock``; docs/evaluation.md, "What it is")
    "in_stock",
    # the visitor and the item's category
    "category_affinity",
    "days_category_event_before_last_event",
    # the visitor
    "visitor_orders",
    "visitor_items",
    "visitor_mean_basket_size",
    "visitor_mean_interval_days",
    # the item model's "bought together" table (``ml.ranker.basket_table``) from the visitor's recent orders
    "basket_score",
    "basket_rank",
    "basket_last",
    # the seventh round's sources (their score where it is not a feature already) and the latest session
    "co_view_score",
    "co_view_rank",
    "trending_score",
    "trending_rank",
    "category_rank",
    "new_rank",
    "session_item_events",
    "session_category_events",
    "session_events",
)


def space_source(space: str) -> str:
    """The candidate source of a vector space."""
    return SPACE_PREFIX + space


def space_features(spaces: Sequence[str]) -> tuple[str, ...]:
    """The features of the vector spaces ``spaces`` (sorted): per space the cosine between the candidate and the
    visitor's profile, and the candidate's rank in the space's source."""
    return tuple(name % space for space in sorted(spaces) for name in ("space_%s_cosine", "space_%s_rank"))


def feature_names(spaces: Sequence[str] = ()) -> tuple[str, ...]:
    """The columns ``feature_matrix`` gives for candidates featured with the vector spaces ``spaces``."""
    return FEATURES + space_features(spaces)


def source_order(spaces: Sequence[str] = ()) -> tuple[str, ...]:
    """Every source in merge order: ``SOURCES`` with the spaces' sources (sorted) after ``basket``."""
    at = SOURCES.index("basket") + 1
    return SOURCES[:at] + tuple(space_source(space) for space in sorted(spaces)) + SOURCES[at:]


@dataclass
class VisitorHistory:
    """One visitor's events before ``at``, as parallel arrays (one entry per event line).

    ``baskets`` numbers the visitor's orders (any integers, one per order; -1 for an event that is
    not a purchase). ``categories`` and ``prices`` describe each line's item ("" and NaN unknown).
    """

    at: float
    items: np.ndarray
    times: np.ndarray
    baskets: np.ndarray
    quantities: np.ndarray
    categories: np.ndarray
    prices: np.ndarray

    @classmethod
    def empty(cls, at: float) -> VisitorHistory:
        return cls.from_lines(at, [])

    @classmethod
    def from_lines(cls, at: float, lines: Sequence[tuple]) -> VisitorHistory:
        """From ``(item, time, basket, quantity, category, price)`` tuples; lines at or after ``at`` are dropped."""
        kept = [line for line in lines if line[1] < at]
        columns = list(zip(*kept, strict=True)) if kept else [()] * 6
        return cls(
            at=float(at),
            items=np.asarray(columns[0], dtype=np.int64),
            times=np.asarray(columns[1], dtype=np.float64),
            baskets=np.asarray(columns[2], dtype=np.int64),
            quantities=np.asarray(columns[3], dtype=np.float64),
            categories=np.asarray(columns[4], dtype=object),
            prices=np.asarray([np.nan if p is None else float(p) for p in columns[5]], dtype=np.float64),
        )

    @property
    def purchases(self) -> np.ndarray:
        return self.baskets >= 0


@dataclass
class RepeatStats:
    """Per item the visitor bought: score, orders holding it, orders since its last one, times."""

    items: np.ndarray
    score: np.ndarray
    orders: np.ndarray
    orders_since: np.ndarray
    orders_since_first: np.ndarray
    score_recent: np.ndarray
    score_long: np.ndarray
    last_time: np.ndarray
    first_time: np.ndarray
    quantity: np.ndarray
    basket_count: int
    last_order_time: float
    basket_sizes: np.ndarray
    basket_times: np.ndarray

    def ranked(self) -> np.ndarray:
        """Item positions best first: score, then more recent, then lower id (as the repeat SQL)."""
        return np.lexsort((self.items, self.orders_since, -self.score))


def repeat_stats(history: VisitorHistory) -> RepeatStats:
    """The visitor's purchases summarised per item (``0.5 ** (orders since / half-life)`` summed over orders)."""
    mask = history.purchases
    items, baskets, times = history.items[mask], history.baskets[mask], history.times[mask]
    if not len(items):
        empty = np.zeros(0)
        return RepeatStats(np.zeros(0, dtype=np.int64), *([empty] * 9), 0, np.nan, empty, empty)
    basket_ids, basket_index = np.unique(baskets, return_inverse=True)
    basket_times = np.full(len(basket_ids), np.inf)
    np.minimum.at(basket_times, basket_index, times)
    # age 0 = the latest order; ties by basket id, latest id first (as the SQL's "basket DESC")
    order = np.lexsort((-basket_ids, -basket_times))
    age = np.empty(len(basket_ids), dtype=np.float64)
    age[order] = np.arange(len(basket_ids))
    pairs = np.unique(np.stack([items, basket_index]), axis=1)
    item_ids, item_index = np.unique(pairs[0], return_inverse=True)
    line_item_index = np.searchsorted(item_ids, items)
    pair_age = age[pairs[1]]

    def decayed(half_life: float) -> np.ndarray:
        return np.bincount(item_index, weights=0.5 ** (pair_age / half_life), minlength=len(item_ids))

    score = decayed(REPEAT_HALF_LIFE_ORDERS)
    orders = np.bincount(item_index, minlength=len(item_ids)).astype(np.float64)
    orders_since = np.full(len(item_ids), np.inf)
    np.minimum.at(orders_since, item_index, pair_age)
    orders_since_first = np.full(len(item_ids), -np.inf)
    np.maximum.at(orders_since_first, item_index, pair_age)
    last_time = np.full(len(item_ids), -np.inf)
    np.maximum.at(last_time, line_item_index, times)
    first_time = np.full(len(item_ids), np.inf)
    np.minimum.at(first_time, line_item_index, times)
    quantity = np.bincount(line_item_index, weights=history.quantities[mask], minlength=len(item_ids))
    sizes = np.bincount(pairs[1], minlength=len(basket_ids)).astype(np.float64)
    return RepeatStats(
        items=item_ids,
        score=score,
        orders=orders,
        orders_since=orders_since,
        orders_since_first=orders_since_first,
        score_recent=decayed(REPEAT_RECENT_HALF_LIFE_ORDERS),
        score_long=decayed(REPEAT_LONG_HALF_LIFE_ORDERS),
        last_time=last_time,
        first_time=first_time,
        quantity=quantity,
        basket_count=len(basket_ids),
        last_order_time=float(basket_times.max()),
        basket_sizes=sizes,
        basket_times=np.sort(basket_times),
    )


def co_purchase_seeds(stats: RepeatStats, limit: int = CO_PURCHASE_SEEDS) -> np.ndarray:
    """The visitor's strongest repeat purchases, the co-purchase source's seeds."""
    return stats.items[stats.ranked()[:limit]]


@dataclass
class Candidates:
    """Candidate items and, per source, their score and 1-based rank (NaN: not from that source)."""

    items: np.ndarray
    scores: dict[str, np.ndarray]
    ranks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source these candidates were ranked by, in merge order (``source_order``)."""
        return tuple(self.ranks)

    @property
    def spaces(self) -> tuple[str, ...]:
        """The vector spaces among the sources (sorted)."""
        return tuple(s[len(SPACE_PREFIX) :] for s in self.ranks if s.startswith(SPACE_PREFIX))

    def source_of(self, position: int) -> str | None:
        """The source that ranked this candidate best (by rank), for its reason."""
        ranked = [
            (self.ranks[s][position], i, s) for i, s in enumerate(self.ranks) if not np.isnan(self.ranks[s][position])
        ]
        return min(ranked)[2] if ranked else None


#: Candidates per source, at most (``gather_candidates``): the repeats carry the next basket, the
#: co-purchases discovery, the popular items the visitor with little history. The kNN source scores and
#: ranks every candidate (features) but adds none: on the validation split its own candidates pushed out
#: co-purchase and ALS ones that the model ranked better (docs/evaluation.md, learned ranking).
#: The basket source (partners in the "bought together" table of the visitor's recent orders) fills what is left
#: after ALS: 60 rather than 30 (docs/evaluation.md, "Sixth round": `new` recall@10 +0.004 against +0.002).
#: The seventh round's sources (docs/evaluation.md, "Seventh round"): each vector space's profile neighbours
#: (``"space"``: the quota of every ``space:<name>``), trending and new items took 20, 10 and 10 candidates on the
#: validation split and cost discovery (`new` nDCG@10 -0.007, 4.5 paired SE): they are gated (0) and serve as
#: features (their scores and ranks of the candidates the other sources bring). Co-views and category popularity
#: find nothing on Online Retail (no views, no categories): their quotas are not measured.
SOURCE_QUOTAS = {
    "repeat": 100,
    "co_purchase": 60,
    "co_view": 30,
    "knn": 0,
    "als": 60,
    "basket": 60,
    "space": 0,
    "trending": 0,
    "category": 20,
    "new": 0,
    "popular": 10,
}


def _quota(quotas: Mapping[str, int], source: str, limit: int) -> int:
    if source.startswith(SPACE_PREFIX):
        return quotas.get(source, quotas.get("space", limit))
    return quotas.get(source, limit)


def _merge_order(lists: Mapping[str, Sequence]) -> tuple[str, ...]:
    """The sources of ``lists`` (and every fixed source) in merge order; ``KeyError`` for an unknown one."""
    spaces = [source[len(SPACE_PREFIX) :] for source in lists if source.startswith(SPACE_PREFIX)]
    order = source_order(spaces)
    unknown = set(lists) - set(order)
    if unknown:
        raise KeyError("unknown candidate source(s): %s" % sorted(unknown))
    return order


def gather_candidates(
    lists: Mapping[str, Sequence[tuple[int, float]]],
    *,
    limit: int = 200,
    quotas: Mapping[str, int] = SOURCE_QUOTAS,
) -> Candidates:
    """Merge the sources' ranked ``(item, score)`` lists (best first; a missing source is empty): each
    source's first ``quotas[source]`` items in ``SOURCES`` order, duplicates once, up to ``limit``. Each
    candidate keeps every source's score and rank (from the whole lists, not only the quota)."""
    lists = {source: list(lists.get(source, ())) for source in _merge_order(lists)}
    chosen: dict[int, None] = {}
    for source in lists:
        for item, _ in lists[source][: _quota(quotas, source, limit)]:
            if len(chosen) >= limit:
                break
            chosen.setdefault(int(item), None)
    return ranked_items(lists, list(chosen))


def ranked_items(lists: Mapping[str, Sequence[tuple[int, float]]], items: Sequence[int]) -> Candidates:
    """``items`` (distinct ids, in their order) as candidates, each with every source's score and 1-based rank in
    the sources' whole ranked lists (NaN: not in that source's list)."""
    lists = {source: list(lists.get(source, ())) for source in _merge_order(lists)}
    chosen = dict.fromkeys(int(item) for item in items)
    items = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
    position = {item: i for i, item in enumerate(chosen)}
    scores, ranks = {}, {}
    for source in lists:
        scores[source] = np.full(len(items), np.nan)
        ranks[source] = np.full(len(items), np.nan)
        for rank, (item, score) in enumerate(lists[source], start=1):
            i = position.get(int(item))
            if i is not None and np.isnan(ranks[source][i]):
                scores[source][i], ranks[source][i] = float(score), rank
    return Candidates(items=items, scores=scores, ranks=ranks)


@dataclass
class ItemSignals:
    """What is known about each candidate item at ``at``, aligned with ``Candidates.items``.

    ``popularity``: {window days: baskets holding the item in that window}; ``first_seen``: its
    first order within the longest popularity window (NaN: none); ``co_purchase``: the co-purchase score from the
    visitor's seeds, for every candidate (0: none; the co-purchase source lists only unbought ones);
    ``seed_orders``: how many orders the seeds were read in (normalises it); ``co_purchase_last``:
    the same from the items of the visitor's last order only; ``als``: the matrix-factorisation
    score (NaN: no factors); ``knn`` and ``knn_last``: the item-kNN score from all the visitor's items and
    from their last order's; ``repeat_rate`` and ``buyers``: the share of the item's buyers who bought it in
    two or more orders, and how many bought it (NaN: unknown). The last four come with the item factors.
    """

    popularity: Mapping[int, np.ndarray]
    first_seen: np.ndarray
    price: np.ndarray
    category: np.ndarray
    co_purchase: np.ndarray
    co_purchase_last: np.ndarray
    als: np.ndarray
    seed_orders: float = 0.0
    knn: np.ndarray | None = None
    knn_last: np.ndarray | None = None
    repeat_rate: np.ndarray | None = None
    buyers: np.ndarray | None = None
    basket: np.ndarray | None = None
    basket_last: np.ndarray | None = None
    #: {space: cosine between each candidate and the visitor's profile in that space (NaN: no vector)}
    space_cosine: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: 1.0 in stock, 0.0 out of stock, NaN unknown (``SignalSource.item_stock``); None: unknown for every item
    in_stock: np.ndarray | None = None


def feature_matrix(candidates: Candidates, history: VisitorHistory, signals: ItemSignals) -> np.ndarray:
    """One row of ``feature_names(candidates.spaces)`` per candidate (float32, NaN missing): ``FEATURES``, then
    each vector space's cosine to the visitor's profile and rank. Reads only ``history`` and ``signals``."""
    n = len(candidates)
    columns: dict[str, np.ndarray] = {}
    for source in SOURCES:
        columns[source + "_rank"] = candidates.ranks[source]
    for source in ("co_view", "trending"):
        columns[source + "_score"] = candidates.scores[source]
    for space in candidates.spaces:
        columns["space_%s_rank" % space] = candidates.ranks[space_source(space)]
        columns["space_%s_cosine" % space] = np.asarray(signals.space_cosine.get(space, np.full(n, np.nan)))
    columns.update(_session_features(candidates.items, signals.category, history))
    co_purchase = signals.co_purchase.astype(np.float64)
    columns["co_purchase_score"] = co_purchase
    columns["co_purchase_share"] = co_purchase / signals.seed_orders if signals.seed_orders else np.full(n, np.nan)
    # orders shared with the seeds per order holding the item (a lift: popular items are everywhere)
    columns["co_purchase_lift"] = co_purchase / (
        1.0 + np.asarray(signals.popularity[POPULARITY_WINDOWS[-1]], dtype=np.float64)
    )
    columns["co_purchase_last"] = signals.co_purchase_last.astype(np.float64)
    columns["als_score"] = signals.als.astype(np.float64)
    unknown = np.full(n, np.nan)
    for name, values in (
        ("knn_score", signals.knn),
        ("knn_last", signals.knn_last),
        ("item_repeat_rate", signals.repeat_rate),
        ("item_buyers", signals.buyers),
        ("basket_score", signals.basket),
        ("basket_last", signals.basket_last),
        ("in_stock", signals.in_stock),
    ):
        columns[name] = unknown if values is None else np.asarray(values, dtype=np.float64)
    columns["item_buyers"] = np.log1p(columns["item_buyers"])

    stats = repeat_stats(history)
    where = np.searchsorted(stats.items, candidates.items) if len(stats.items) else np.zeros(n, dtype=np.int64)
    bought = (
        (where < len(stats.items)) & (stats.items[np.minimum(where, max(len(stats.items) - 1, 0))] == candidates.items)
        if len(stats.items)
        else np.zeros(n, dtype=bool)
    )

    def per_item(values: np.ndarray, default: float = np.nan) -> np.ndarray:
        out = np.full(n, default)
        out[bought] = values[where[bought]]
        return out

    last_order = stats.last_order_time
    columns["repeat_score"] = per_item(stats.score, 0.0)
    columns["item_orders"] = per_item(stats.orders, 0.0)
    columns["item_order_share"] = (
        columns["item_orders"] / stats.basket_count if stats.basket_count else np.full(n, np.nan)
    )
    columns["repeat_score_recent"] = per_item(stats.score_recent, 0.0)
    columns["repeat_score_long"] = per_item(stats.score_long, 0.0)
    columns["orders_since_item"] = per_item(stats.orders_since)
    # orders between its purchases on average, and the orders since its last one against that
    orders_span = per_item(stats.orders_since_first) - columns["orders_since_item"]
    held = columns["item_orders"]
    gap = np.where(held > 1, orders_span / np.maximum(held - 1, 1), np.nan)
    columns["item_order_gap"] = gap
    columns["item_order_gap_ratio"] = (columns["orders_since_item"] + 1) / np.where(gap > 0, gap, np.nan)
    columns["days_item_before_last_order"] = (last_order - per_item(stats.last_time)) / DAY
    columns["days_first_item_before_last_order"] = (last_order - per_item(stats.first_time)) / DAY
    columns["item_quantity"] = np.log1p(per_item(stats.quantity, 0.0))
    span = (per_item(stats.last_time) - per_item(stats.first_time)) / DAY
    orders = columns["item_orders"]
    interval = np.where(orders > 1, span / np.maximum(orders - 1, 1), np.nan)
    columns["item_interval_days"] = interval
    columns["item_interval_ratio"] = columns["days_item_before_last_order"] / np.where(interval > 0, interval, np.nan)
    columns["in_last_order"] = (columns["orders_since_item"] == 0).astype(np.float64)

    others = ~history.purchases
    columns["item_views"] = _count_per(candidates.items, history.items[others])
    last_event = _last_time_per(candidates.items, history.items, history.times)
    # recency relative to the visitor's latest event (the same whether they are served now or later)
    latest = float(history.times.max()) if len(history.times) else np.nan
    columns["days_item_event_before_last_event"] = (latest - last_event) / DAY

    for days in POPULARITY_WINDOWS:
        columns["popularity_%dd" % days] = np.log1p(np.asarray(signals.popularity[days], dtype=np.float64))
    columns["popularity_trend"] = (
        columns["popularity_%dd" % POPULARITY_WINDOWS[1]] - columns["popularity_%dd" % POPULARITY_WINDOWS[2]]
    )
    columns["item_age_days"] = (history.at - signals.first_seen) / DAY
    price = signals.price.astype(np.float64)
    columns["price"] = price
    bought_prices = history.prices[history.purchases]
    bought_prices = bought_prices[np.isfinite(bought_prices) & (bought_prices > 0)]
    usual = float(np.mean(np.log(bought_prices))) if len(bought_prices) else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        columns["price_vs_visitor"] = np.where(price > 0, np.log(price) - usual, np.nan)

    affinity, category_last = _category_features(signals.category, history)
    columns["category_affinity"] = affinity
    columns["days_category_event_before_last_event"] = (latest - category_last) / DAY

    columns["visitor_orders"] = np.full(n, float(stats.basket_count))
    columns["visitor_items"] = np.full(n, float(len(stats.items)))
    columns["visitor_mean_basket_size"] = np.full(n, float(stats.basket_sizes.mean()) if stats.basket_count else np.nan)
    gaps = np.diff(stats.basket_times) / DAY
    columns["visitor_mean_interval_days"] = np.full(n, float(gaps.mean()) if len(gaps) else np.nan)
    names = feature_names(candidates.spaces)
    return (
        np.column_stack([np.asarray(columns[name], dtype=np.float64) for name in names]).astype(np.float32)
        if n
        else np.zeros((0, len(names)), dtype=np.float32)
    )


def latest_session(history: VisitorHistory) -> np.ndarray:
    """Which of the visitor's events are in their latest session (no gap over ``SESSION_GAP_SECONDS`` between one
    event and the next, back from their latest event before ``at``)."""
    if not len(history.times):
        return np.zeros(0, dtype=bool)
    times = np.sort(history.times)
    gaps = np.flatnonzero(np.diff(times) > SESSION_GAP_SECONDS)
    start = times[gaps[-1] + 1] if len(gaps) else times[0]
    return history.times >= start


def _session_features(items: np.ndarray, categories: np.ndarray, history: VisitorHistory) -> dict[str, np.ndarray]:
    """Per candidate, the visitor's events other than purchases (views, clicks, adds to cart) in their latest
    session on it and on its category, and how many such events the session holds."""
    n = len(items)
    session = latest_session(history) & ~history.purchases
    if not session.any():
        zeros = np.zeros(n)
        return {"session_item_events": zeros, "session_category_events": zeros, "session_events": zeros}
    counted: dict[str, float] = {}
    for category in history.categories[session].tolist():
        if category:
            counted[category] = counted.get(category, 0.0) + 1.0
    return {
        "session_item_events": _count_per(items, history.items[session]),
        "session_category_events": np.asarray([counted.get(c, 0.0) if c else 0.0 for c in categories], dtype=float),
        "session_events": np.full(n, float(session.sum())),
    }


def _count_per(items: np.ndarray, events: np.ndarray) -> np.ndarray:
    if not len(events):
        return np.zeros(len(items))
    values, counts = np.unique(events, return_counts=True)
    where = np.minimum(np.searchsorted(values, items), len(values) - 1)
    return np.where(values[where] == items, counts[where], 0).astype(np.float64)


def _last_time_per(items: np.ndarray, events: np.ndarray, times: np.ndarray) -> np.ndarray:
    if not len(events):
        return np.full(len(items), np.nan)
    values, index = np.unique(events, return_inverse=True)
    last = np.full(len(values), -np.inf)
    np.maximum.at(last, index, times)
    where = np.minimum(np.searchsorted(values, items), len(values) - 1)
    return np.where(values[where] == items, last[where], np.nan)


def _category_features(categories: np.ndarray, history: VisitorHistory) -> tuple[np.ndarray, np.ndarray]:
    """Share of the visitor's purchase lines in each candidate's category; the time of their last event in it."""
    n = len(categories)
    affinity, recency = np.full(n, np.nan), np.full(n, np.nan)
    known = history.categories != ""
    if not len(known) or not known.any():
        return affinity, recency
    purchases = history.purchases & known
    total = purchases.sum()
    shares: dict[str, float] = {}
    last: dict[str, float] = {}
    for category, time, purchase in zip(
        history.categories[known], history.times[known], history.purchases[known], strict=True
    ):
        if purchase:
            shares[category] = shares.get(category, 0.0) + 1.0
        last[category] = max(last.get(category, -np.inf), time)
    for i, category in enumerate(categories):
        if not category:
            continue
        affinity[i] = shares.get(category, 0.0) / total if total else np.nan
        if category in last:
            recency[i] = last[category]
    return affinity, recency


# ---------------------------------------------------------------- the in-memory event log


@dataclass
class EventLog:
    """Events held in memory that answer every candidate and feature question as of any time ``T``.

    Built once from event lines (visitor, item, order, time, quantity, purchase or not); each
    question for time ``T`` reads only events strictly before ``T``. A basket is one (visitor,
    order id) pair, its time its first line's.
    """

    item_ids: np.ndarray  # sorted item ids; column index = position here
    prices: np.ndarray
    categories: np.ndarray
    basket_times: np.ndarray  # per basket
    basket_indptr: np.ndarray  # basket -> its distinct item columns (CSR)
    basket_columns: np.ndarray
    pair_keys: np.ndarray  # (column, basket time) pairs sorted: column * SPAN + time offset
    pair_baskets: np.ndarray
    column_start: np.ndarray  # first pair of each column
    visitor_lines: dict[str, list[tuple]] = field(default_factory=dict)
    origin: float = 0.0
    span: float = 0.0
    popular_cache: dict = field(default_factory=dict)
    # every event line by time (trending) and the lines that are not purchases (co-views), by item and by visitor
    events: _Events | None = None
    # every catalogue item's price and category, those without events too (a vector space can propose them)
    catalogue: tuple[Mapping[int, float], Mapping[int, str]] = ({}, {})
    # {item id: in stock} as the catalogue says now; None: unknown for every item (the training log: there is
    # no stock history, so a past query cannot know the stock of its time)
    stock: Mapping[int, bool] | None = None

    @classmethod
    def build(
        cls,
        lines: Sequence[tuple[str, int, str, float, float, bool]],
        *,
        prices: Mapping[int, float] | None = None,
        categories: Mapping[int, str] | None = None,
        stock: Mapping[int, bool] | None = None,
    ) -> EventLog:
        """From ``(visitor, item id, order id, time, quantity, is_purchase)`` lines. ``stock``: {item id: in
        stock} for the ``in_stock`` feature at every time asked (None: NaN, unknown, for every item)."""
        prices, categories = prices or {}, categories or {}
        item_ids = np.unique(np.fromiter((line[1] for line in lines), dtype=np.int64, count=len(lines)))
        column = {int(item): i for i, item in enumerate(item_ids)}
        baskets: dict[tuple[str, str], int] = {}
        basket_time: list[float] = []
        basket_items: list[set[int]] = []
        visitor_lines: dict[str, list[tuple]] = {}
        for visitor, item, order, time, quantity, purchase in lines:
            c = column[int(item)]
            basket = -1
            if purchase:
                key = (visitor, order or "line:%d:%s" % (len(basket_time), time))
                basket = baskets.get(key, -1)
                if basket < 0:
                    basket = baskets[key] = len(basket_time)
                    basket_time.append(time)
                    basket_items.append(set())
                basket_time[basket] = min(basket_time[basket], time)
                basket_items[basket].add(c)
            visitor_lines.setdefault(visitor, []).append(
                (int(item), float(time), basket, float(quantity), categories.get(int(item), ""), prices.get(int(item)))
            )
        times = np.asarray(basket_time, dtype=np.float64)
        sizes = np.fromiter((len(s) for s in basket_items), dtype=np.int64, count=len(basket_items))
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        columns = np.fromiter((c for s in basket_items for c in sorted(s)), dtype=np.int64, count=int(indptr[-1]))
        pair_baskets = np.repeat(np.arange(len(times)), sizes)
        origin = float(times.min()) if len(times) else 0.0
        span = float(times.max() - origin) + 2 * DAY * 366 * 10 if len(times) else 1.0
        keys = columns * span + (times[pair_baskets] - origin)
        order = np.argsort(keys, kind="stable")
        keys, pair_baskets_sorted = keys[order], pair_baskets[order]
        column_start = np.searchsorted(keys, np.arange(len(item_ids) + 1) * span)
        return cls(
            item_ids=item_ids,
            prices=np.asarray([np.nan if prices.get(int(i)) is None else float(prices[int(i)]) for i in item_ids]),
            categories=np.asarray([categories.get(int(i), "") for i in item_ids], dtype=object),
            basket_times=times,
            basket_indptr=indptr,
            basket_columns=columns,
            pair_keys=keys,
            pair_baskets=pair_baskets_sorted,
            column_start=column_start,
            visitor_lines=visitor_lines,
            origin=origin,
            span=span,
            events=_Events.build(lines, item_ids),
            catalogue=(prices, categories),
            stock=stock,
        )

    def columns_of(self, items: Sequence[int]) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        where = np.minimum(np.searchsorted(self.item_ids, items), max(len(self.item_ids) - 1, 0))
        if len(items) and not np.array_equal(self.item_ids[where], items):
            raise KeyError("item(s) not in the event log: %s" % items[self.item_ids[where] != items][:5].tolist())
        return where

    def history(self, visitor: str, at: float) -> VisitorHistory:
        return VisitorHistory.from_lines(at, self.visitor_lines.get(visitor, ()))

    def _before(self, columns: np.ndarray, at: float) -> np.ndarray:
        """Index (into the pair arrays) of the first pair of each column at or after ``at``."""
        return np.searchsorted(self.pair_keys, columns * self.span + (at - self.origin), side="left")

    def popularity(self, columns: np.ndarray, at: float, days: float) -> np.ndarray:
        """Baskets holding each item with a time in ``[at - days, at)``."""
        return (self._before(columns, at) - self._before(columns, at - days * DAY)).astype(np.float64)

    def popular(self, at: float, limit: int, days: float = POPULAR_WINDOW_DAYS) -> list[tuple[int, float]]:
        """The most popular items over the window before ``at`` (cached per day), ties by lower id."""
        key = (int(at // DAY), limit, days)
        cached = self.popular_cache.get(key)
        if cached is None:
            columns = np.arange(len(self.item_ids))
            counts = self.popularity(columns, at, days)
            order = np.lexsort((self.item_ids, -counts))[:limit]
            cached = self.popular_cache[key] = [
                (int(self.item_ids[c]), float(counts[c])) for c in order if counts[c] > 0
            ]
        return cached

    def co_purchase_scores(
        self, seeds: Sequence[int], at: float, per_item: int = CO_PURCHASE_ORDERS_PER_ITEM
    ) -> tuple[np.ndarray, float]:
        """Per item column: orders holding it among each seed's latest ``per_item`` orders before ``at``, summed over seeds.

        Returns the scores (seeds included, they count the other seeds) and how many orders were read.
        """
        scores = np.zeros(len(self.item_ids))
        if not len(seeds):
            return scores, 0.0
        seed_columns = self.columns_of(seeds)
        ends = self._before(seed_columns, at)
        starts = np.maximum(self.column_start[seed_columns], ends - per_item)
        picked = (
            np.concatenate([self.pair_baskets[s:e] for s, e in zip(starts, ends, strict=True)])
            if len(seed_columns)
            else np.zeros(0, dtype=np.int64)
        )
        if not len(picked):
            return scores, 0.0
        # an order read for two seeds weighs 2: the count is summed over seeds, as in the SQL
        lengths = self.basket_indptr[picked + 1] - self.basket_indptr[picked]
        offsets = np.repeat(self.basket_indptr[picked], lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        scores += np.bincount(self.basket_columns[offsets], minlength=len(self.item_ids))
        return scores, float(len(picked))

    def co_purchases(self, seed_sets: Sequence[Sequence[int]], at: float) -> list[tuple[dict[int, float], float]]:
        """``SignalSource.co_purchases`` from memory: per set, {item id: score} (score > 0) and the orders read."""
        results = []
        for seeds in seed_sets:
            scores, orders = self.co_purchase_scores(seeds, at)
            found = np.flatnonzero(scores)
            results.append(({int(self.item_ids[c]): float(scores[c]) for c in found}, orders))
        return results

    def item_signals(
        self, items: np.ndarray, at: float
    ) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """``SignalSource.item_signals`` from memory: popularity per window, the first order within the longest
        window (NaN: none), price, category (from the catalogue given to ``build``: NaN and "" unknown); 0 and NaN
        for an item without events."""
        items = np.asarray(items, dtype=np.int64)
        columns = np.minimum(np.searchsorted(self.item_ids, items), max(len(self.item_ids) - 1, 0))
        known = self.item_ids[columns] == items if len(self.item_ids) else np.zeros(len(items), dtype=bool)
        popularity = {days: np.where(known, self.popularity(columns, at, days), 0.0) for days in POPULARITY_WINDOWS}
        start = self._before(columns, at - POPULARITY_WINDOWS[-1] * DAY)
        first = (
            self.pair_keys[np.minimum(start, max(len(self.pair_keys) - 1, 0))] - columns * self.span + self.origin
            if len(self.pair_keys)
            else np.zeros(len(items))
        )
        first_seen = np.where(known & (self._before(columns, at) > start), first, np.nan)
        price = np.where(known, self.prices[columns], np.nan) if len(self.item_ids) else np.full(len(items), np.nan)
        category = np.where(known, self.categories[columns], "") if len(self.item_ids) else np.full(len(items), "")
        prices, categories = self.catalogue
        for i in np.flatnonzero(~known):  # items without events: the catalogue's attributes
            price[i] = np.nan if prices.get(int(items[i])) is None else float(prices[int(items[i])])
            category[i] = categories.get(int(items[i]), "")
        return popularity, first_seen, price, np.asarray(category, dtype=object)

    def item_stock(self, items: np.ndarray) -> np.ndarray:
        """``SignalSource.item_stock`` from the ``stock`` given to ``build`` (NaN for every item without it)."""
        stock = self.stock
        if stock is None:
            return np.full(len(items), np.nan)
        return np.asarray([_stock_value(stock.get(int(item))) for item in items], dtype=np.float64)

    def co_views(self, seeds: Sequence[int], at: float) -> dict[int, float]:
        """``SignalSource.co_views`` from memory."""
        scores: dict[int, float] = {}
        if self.events is None:
            return scores
        for seed in seeds:
            column = int(np.searchsorted(self.item_ids, int(seed)))
            if column >= len(self.item_ids) or self.item_ids[column] != int(seed):
                continue
            for other, viewers in self.events.co_views(column, at).items():
                item = int(self.item_ids[other])
                scores[item] = scores.get(item, 0.0) + viewers
        return scores

    def trending(self, at: float, limit: int) -> list[tuple[int, float]]:
        """``SignalSource.trending`` from memory, as of the start of ``at``'s hour (cached per hour)."""
        hour = np.floor(at / 3600.0) * 3600.0
        key = ("trending", hour)
        if key not in self.popular_cache:  # the whole list, whatever the limit: one per hour
            scores = (
                self.events.trending(hour, len(self.item_ids))
                if self.events is not None
                else np.zeros(len(self.item_ids))
            )
            self.popular_cache[key] = _best_of(self.item_ids, scores, set(), len(self.item_ids))
        return self.popular_cache[key][:limit]

    def category_popular(self, categories: Sequence[str], at: float, limit: int) -> dict[str, list[tuple[int, float]]]:
        """``SignalSource.category_popular`` from memory, as of the start of ``at``'s day (cached per day)."""
        day = np.floor(at / DAY) * DAY
        found = {}
        for category in categories:
            key = ("category", day, category)
            if key not in self.popular_cache:
                columns = np.flatnonzero(self.categories == category)
                counts = self.popularity(columns, day, POPULAR_WINDOW_DAYS)
                order = np.lexsort((self.item_ids[columns], -counts))
                self.popular_cache[key] = [
                    (int(self.item_ids[columns[i]]), float(counts[i])) for i in order if counts[i] > 0
                ]
            found[category] = self.popular_cache[key][:limit]
        return found

    def new_items(self, at: float, limit: int) -> list[tuple[int, float]]:
        """``SignalSource.new_items`` from memory, as of the start of ``at``'s day (cached per day)."""
        day = np.floor(at / DAY) * DAY
        key = ("new", day)
        if key not in self.popular_cache:
            # no order in the longest window before the last NEW_ITEM_DAYS; ranked by the orders since
            columns = np.arange(len(self.item_ids))
            start = self._before(columns, day - POPULARITY_WINDOWS[-1] * DAY)
            fresh = self._before(columns, day - NEW_ITEM_DAYS * DAY) == start
            scores = np.where(fresh, self.popularity(columns, day, NEW_ITEM_DAYS), 0.0)
            self.popular_cache[key] = _best_of(self.item_ids, scores, set(), len(self.item_ids))
        return self.popular_cache[key][:limit]

    def candidates_at(
        self,
        visitor: str,
        at: float,
        *,
        factors: ItemFactors | None = None,
        limit: int = 200,
        shown: Sequence[int] | None = None,
        vectors: VectorSource | None = None,
    ) -> tuple[Candidates, VisitorHistory, ItemSignals]:
        return candidates_at(
            self, self.history(visitor, at), factors=factors, limit=limit, shown=shown, vectors=vectors
        )

    def visitor_item_counts(self, before: float) -> tuple[list[str], list[tuple[int, int, float]]]:
        """Visitors and their ``(visitor row, item column, orders holding it)`` before ``before``: the matrix
        factorisation's input."""
        visitors = sorted(self.visitor_lines)
        entries = []
        for row, visitor in enumerate(visitors):
            held: dict[int, set[int]] = {}
            for item, time, basket, *_ in self.visitor_lines[visitor]:
                if basket >= 0 and time < before:
                    held.setdefault(item, set()).add(basket)
            entries += [(row, int(self.columns_of([item])[0]), float(len(baskets))) for item, baskets in held.items()]
        return visitors, entries


@dataclass
class _Events:
    """The event lines of an ``EventLog`` as arrays: all of them by time (trending), and those that are not
    purchases (views, clicks, adds to cart: "views" here) by item and by visitor (co-views)."""

    times: np.ndarray
    columns: np.ndarray
    visitors: np.ndarray
    purchase: np.ndarray
    view_order_by_item: np.ndarray  # positions of the view lines, sorted by (column, time)
    view_order_by_visitor: np.ndarray  # the same, sorted by (visitor, time)

    @classmethod
    def build(cls, lines: Sequence[tuple], item_ids: np.ndarray) -> _Events:
        names = {name: i for i, name in enumerate(sorted({line[0] for line in lines}))}
        n = len(lines)
        times = np.fromiter((line[3] for line in lines), dtype=np.float64, count=n)
        columns = np.searchsorted(item_ids, np.fromiter((line[1] for line in lines), dtype=np.int64, count=n))
        visitors = np.fromiter((names[line[0]] for line in lines), dtype=np.int64, count=n)
        purchase = np.fromiter((bool(line[5]) for line in lines), dtype=bool, count=n)
        order = np.argsort(times, kind="stable")
        times, columns, visitors, purchase = times[order], columns[order], visitors[order], purchase[order]
        views = np.flatnonzero(~purchase)
        by_item = views[np.lexsort((times[views], columns[views]))]
        by_visitor = views[np.lexsort((times[views], visitors[views]))]
        return cls(times, columns, visitors, purchase, by_item, by_visitor)

    def trending(self, at: float, items: int) -> np.ndarray:
        """Per item column: every visitor's strongest event on it in the eight half-lives before ``at``, weighted
        (``TRENDING_WEIGHTS``) and decayed by its age, summed over visitors."""
        half_life = TRENDING_HALF_LIFE_HOURS * 3600.0
        start = np.searchsorted(self.times, at - 8 * half_life, side="right")
        end = np.searchsorted(self.times, at, side="left")
        scores = np.zeros(items)
        if end <= start:
            return scores
        weight = np.where(self.purchase[start:end], TRENDING_WEIGHTS["purchase"], TRENDING_WEIGHTS["other"])
        value = weight * 0.5 ** ((at - self.times[start:end]) / half_life)
        keys = self.visitors[start:end] * len(scores) + self.columns[start:end]
        unique, index = np.unique(keys, return_inverse=True)
        best = np.zeros(len(unique))
        np.maximum.at(best, index, value)
        return np.bincount(unique % len(scores), weights=best, minlength=len(scores))

    def co_views(self, column_of_seed: int, at: float) -> dict[int, float]:
        """``storage.ranking.co_views`` of one item column before ``at``: {other column: viewers}."""
        lines = self.view_order_by_item
        columns = self.columns[lines]
        start, end = np.searchsorted(columns, [column_of_seed, column_of_seed + 1])
        within = lines[start:end][self.times[lines[start:end]] < at]
        if not len(within):
            return {}
        seen: dict[int, float] = {}
        for visitor, time in zip(self.visitors[within].tolist(), self.times[within].tolist(), strict=True):
            seen[visitor] = max(seen.get(visitor, -np.inf), time)
        viewers = sorted(seen, key=lambda visitor: (-seen[visitor], visitor))[:CO_VIEW_VIEWERS]
        by_visitor = self.view_order_by_visitor
        owners = self.visitors[by_visitor]
        counts: dict[int, float] = {}
        for visitor in viewers:
            first, last = np.searchsorted(owners, [visitor, visitor + 1])
            mine = by_visitor[first:last]
            times = self.times[mine]
            near = mine[(times < at) & (np.abs(times - seen[visitor]) <= CO_VIEW_WINDOW_SECONDS)]
            for column in set(self.columns[near].tolist()) - {column_of_seed}:
                counts[column] = counts.get(column, 0.0) + 1.0
        return counts


def _last_basket(history: VisitorHistory) -> int:
    """The visitor's latest order (by its first line's time, then the larger id); -2 when none."""
    purchases = history.purchases
    if not purchases.any():
        return -2
    baskets, times = history.baskets[purchases], history.times[purchases]
    first = {}
    for basket, time in zip(baskets.tolist(), times.tolist(), strict=True):
        first[basket] = min(first.get(basket, time), time)
    return max(first, key=lambda basket: (first[basket], basket))


@dataclass
class ItemFactors:
    """The item model trained with the ranker: ALS item factors, item-kNN neighbours, repeat statistics.

    Implicit-feedback matrix factorisation (ALS): ``score = visitor vector . item factor``, the visitor
    vector being the least-squares solution with the items fixed (Hu, Koren and Volinsky 2008):
    confidence ``alpha * orders`` per item they bought, ``regularization`` the ridge term.

    Item-kNN (optional): each item's ``neighbours`` (row positions, -1 padding) and their cosine
    ``similarities`` over the orders that held them; a visitor's kNN score of an item sums the
    similarities to their items, weighted. ``repeat_rate`` / ``buyers`` per item: the share of its
    buyers who bought it in two or more orders, and how many bought it. All are computed from the
    events before a cut-off (``ml.ranker``); the methods read only the history they are given.
    """

    item_ids: np.ndarray  # sorted
    factors: np.ndarray  # one row per item id
    regularization: float
    alpha: float
    neighbours: np.ndarray | None = None  # (items, M) int
    similarities: np.ndarray | None = None  # (items, M) float
    repeat_rate: np.ndarray | None = None  # (items,)
    buyers: np.ndarray | None = None  # (items,)
    # "bought together" (optional, ``ml.ranker.basket_table``): each row's partners as CSR rows, best first
    basket_indptr: np.ndarray | None = None  # (items + 1,) int
    basket_neighbours: np.ndarray | None = None  # row positions, int32
    basket_similarities: np.ndarray | None = None  # float16
    _gram: np.ndarray | None = field(default=None, repr=False)

    @property
    def gram(self) -> np.ndarray:
        if self._gram is None:
            self._gram = self.factors.T @ self.factors
        return self._gram

    def _rows(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row positions of ``items`` and which of them have a row."""
        items = np.asarray(items, dtype=np.int64)
        if not len(self.item_ids):
            return np.zeros(len(items), dtype=np.int64), np.zeros(len(items), dtype=bool)
        rows = np.minimum(np.searchsorted(self.item_ids, items), len(self.item_ids) - 1)
        return rows, self.item_ids[rows] == items

    def visitor_vector(self, items: np.ndarray, orders: np.ndarray) -> np.ndarray:
        rows, known = self._rows(items)
        rows, confidence = rows[known], self.alpha * orders[known]
        width = self.factors.shape[1]
        if not len(rows):
            return np.zeros(width)
        y = self.factors[rows].astype(np.float64)
        a = self.gram + self.regularization * np.eye(width) + (y.T * (confidence - 1.0)) @ y
        b = (y * confidence[:, None]).sum(axis=0)
        return np.linalg.solve(a, b)

    def scores_for_stats(self, stats: RepeatStats) -> np.ndarray:
        """Every factor item's score (aligned with ``item_ids``) for the visitor of ``stats``, in the factors'
        precision (float32 as trained) and on this thread: ``einsum`` rather than BLAS, whose threads a busy
        server cannot give (a 100k x 64 product took 12 ms of CPU through threaded BLAS against 1 ms here)."""
        vector = self.visitor_vector(stats.items, stats.orders).astype(self.factors.dtype)
        return np.einsum("ij,j->i", self.factors, vector)

    def scores_of(self, items: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """``scores`` (aligned with ``item_ids``: ALS, kNN, repeat rate) of ``items``, NaN for items without a row."""
        rows, known = self._rows(items)
        return np.where(known, scores[rows], np.nan) if len(self.item_ids) else np.full(len(items), np.nan)

    def knn_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """Every item's similarity to ``items`` summed with ``weights`` (aligned with ``item_ids``); None without
        neighbours."""
        if self.neighbours is None or self.similarities is None:
            return None
        rows, known = self._rows(items)
        neighbours = self.neighbours[rows[known]]
        similarities = self.similarities[rows[known]] * np.asarray(weights, dtype=np.float64)[known, None]
        valid = neighbours >= 0
        return np.bincount(neighbours[valid], weights=similarities[valid], minlength=len(self.item_ids))

    def basket_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """Every item's "bought together" similarity (the basket table) to ``items`` summed with ``weights``
        (aligned with ``item_ids``); None without a basket table."""
        if self.basket_indptr is None or self.basket_neighbours is None or self.basket_similarities is None:
            return None
        rows, known = self._rows(items)
        rows, weights = rows[known], np.asarray(weights, dtype=np.float64)[known]
        starts, lengths = self.basket_indptr[rows], self.basket_indptr[rows + 1] - self.basket_indptr[rows]
        offsets = np.repeat(starts, lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        return np.bincount(
            self.basket_neighbours[offsets].astype(np.int64),
            weights=self.basket_similarities[offsets].astype(np.float64) * np.repeat(weights, lengths),
            minlength=len(self.item_ids),
        )


def basket_partners(
    factors: ItemFactors, basket: Sequence[int], exclude: set, limit: int
) -> list[tuple[int, float, int]]:
    """What goes with a basket from the item model: every item's similarity to the basket's items, summed (each
    basket item weighs 1), as ``(item id, score, strongest basket item)``, best first, ties by lower id. The
    similarities are the model's basket table (``ml.ranker.basket_table``: orders weighted by size and age) when
    it has one, else its kNN neighbours. The strongest basket item is the one with the largest similarity to it
    (it names the reason; ties by lower id). Items of ``exclude`` and of the basket never; empty when the model
    has neither table or knows no basket item."""
    basket = np.asarray(sorted(set(int(item) for item in basket)), dtype=np.int64)
    rows, known = factors._rows(basket)
    rows, anchors = rows[known], basket[known]
    if factors.basket_indptr is not None and factors.basket_neighbours is not None:
        starts, ends = factors.basket_indptr[rows], factors.basket_indptr[rows + 1]
        lengths = ends - starts
        offsets = np.repeat(starts, lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        partners = factors.basket_neighbours[offsets].astype(np.int64)
        similarities = factors.basket_similarities[offsets].astype(np.float64)
        seeds = np.repeat(anchors, lengths)
    elif factors.neighbours is not None and factors.similarities is not None:
        table = factors.neighbours[rows]
        valid = table >= 0
        partners = table[valid].astype(np.int64)
        similarities = factors.similarities[rows].astype(np.float64)[valid]
        seeds = np.repeat(anchors, valid.sum(axis=1))
    else:
        return []
    if not len(partners):
        return []
    scores = np.bincount(partners, weights=similarities, minlength=len(factors.item_ids))
    ranked = _best_of(factors.item_ids, scores, set(exclude) | set(basket.tolist()), limit)
    # per partner, the basket item with the largest similarity to it (ties by lower id): the first after sorting
    order = np.lexsort((seeds, -similarities, partners))
    first = np.flatnonzero(np.r_[True, partners[order][1:] != partners[order][:-1]])
    best = partners[order][first]
    strongest = dict(zip(factors.item_ids[best].tolist(), seeds[order][first].tolist(), strict=True))
    return [(item, score, int(strongest[item])) for item, score in ranked]


# ---------------------------------------------------------------- candidates and signals, from any source


class SignalSource(Protocol):
    """Where the global signals come from: an ``EventLog`` in memory, or the database when serving.

    Every method reads events strictly before ``at`` only.
    """

    def co_purchases(self, seed_sets: Sequence[Sequence[int]], at: float) -> list[tuple[dict[int, float], float]]:
        """Per set of seeds: {item id: orders holding it among each seed's latest ``CO_PURCHASE_ORDERS_PER_ITEM``
        orders, summed over the seeds} (seeds included; only items above 0) and the number of orders read."""

    def popular(self, at: float, limit: int) -> list[tuple[int, float]]:
        """The items in most orders over the last ``POPULAR_WINDOW_DAYS``, best first, ties by lower id."""

    def item_signals(
        self, items: np.ndarray, at: float
    ) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """For ``items``: {window days: orders holding it}, the time of its first order within the longest
        window (NaN: none), price, category."""

    def item_stock(self, items: np.ndarray) -> np.ndarray:
        """For ``items``: 1.0 in stock, 0.0 out of stock, NaN unknown (the catalogue's state; it has no history)."""

    def co_views(self, seeds: Sequence[int], at: float) -> dict[int, float]:
        """{item: viewers}: per seed, what its latest ``CO_VIEW_VIEWERS`` viewers viewed within
        ``CO_VIEW_WINDOW_SECONDS`` of their view of it (never the seed itself), summed over the seeds."""

    def trending(self, at: float, limit: int) -> list[tuple[int, float]]:
        """The trending items (``TRENDING_*``), best first, ties by lower id."""

    def category_popular(self, categories: Sequence[str], at: float, limit: int) -> dict[str, list[tuple[int, float]]]:
        """Per category, its items in most orders over the last ``POPULAR_WINDOW_DAYS``, best first."""

    def new_items(self, at: float, limit: int) -> list[tuple[int, float]]:
        """The items first ordered (within the longest popularity window) less than ``NEW_ITEM_DAYS`` before
        ``at``, by their orders since, best first."""


class VectorSource(Protocol):
    """Item vectors of the vector spaces (content: they have no time): in memory for training, the database when
    serving."""

    spaces: Sequence[str]

    def vectors(self, space: str, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors of ``items`` (one row each, zeros where none) and which of them have one."""

    def nearest(self, space: str, vector: np.ndarray, limit: int, exclude: set) -> list[tuple[int, float]]:
        """The ``limit`` items nearest to ``vector`` by cosine, best first, none of ``exclude``."""


@dataclass
class ItemVectors:
    """``VectorSource`` in memory: per space, sorted item ids and their unit vectors (one row each)."""

    by_space: Mapping[str, tuple[np.ndarray, np.ndarray]]

    @classmethod
    def from_vectors(cls, by_space: Mapping[str, Mapping[int, np.ndarray]]) -> ItemVectors:
        """From {space: {item id: vector}} (normalised here); spaces without a vector are left out."""
        spaces = {}
        for space, vectors in by_space.items():
            if not vectors:
                continue
            ids = np.asarray(sorted(vectors), dtype=np.int64)
            matrix = np.vstack([np.asarray(vectors[int(i)], dtype=np.float32) for i in ids])
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            spaces[space] = (ids, (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32))
        return cls(spaces)

    @property
    def spaces(self) -> list[str]:
        return sorted(self.by_space)

    def vectors(self, space: str, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids, matrix = self.by_space[space]
        items = np.asarray(items, dtype=np.int64)
        rows = np.minimum(np.searchsorted(ids, items), len(ids) - 1)
        known = ids[rows] == items
        return np.where(known[:, None], matrix[rows], 0.0).astype(np.float32), known

    def nearest(self, space: str, vector: np.ndarray, limit: int, exclude: set) -> list[tuple[int, float]]:
        ids, matrix = self.by_space[space]
        # on this thread (``einsum``, not threaded BLAS, as ``ItemFactors.scores_for_stats``)
        return _best_of(ids, np.einsum("ij,j->i", matrix, np.asarray(vector, dtype=np.float32)), exclude, limit)


def visitor_profile(history: VisitorHistory, vectors: np.ndarray, known: np.ndarray) -> np.ndarray | None:
    """The visitor's profile in one space (``PROFILE_*``) from the unit ``vectors`` of ``history.items`` (one row
    per event line; ``known``: which have one); None when none of their latest events has a vector."""
    latest = np.argsort(-history.times, kind="stable")[:PROFILE_EVENTS]
    latest = latest[known[latest]]
    if not len(latest):
        return None
    ages = (history.times.max() - history.times[latest]) / DAY
    weights = np.where(history.purchases[latest], PROFILE_PURCHASE_WEIGHT, 1.0) * 0.5 ** (ages / PROFILE_HALF_LIFE_DAYS)
    profile = weights @ vectors[latest].astype(np.float64)
    norm = np.linalg.norm(profile)
    return profile / norm if norm > 0 else None


#: How many popular items the popular source offers.
POPULAR_CANDIDATES = 50
#: How many items each vector space's profile source offers, and the co-view source.
SPACE_CANDIDATES = 100
CO_VIEW_CANDIDATES = 100


def candidates_at(
    source: SignalSource,
    history: VisitorHistory,
    *,
    factors: ItemFactors | None = None,
    limit: int = 200,
    shown: Sequence[int] | None = None,
    vectors: VectorSource | None = None,
) -> tuple[Candidates, VisitorHistory, ItemSignals]:
    """The visitor's candidates from every source and their item signals, as of ``history.at``. With ``shown``
    (item ids, an impression's list), the candidates are those items, in that order, each with every source's
    score and rank as the sources would have given them at that time (an impression query). With ``vectors``,
    each of its spaces is a source (the profile's nearest items) and gives every candidate its cosine to the
    profile."""
    at = history.at
    stats = repeat_stats(history)
    ranked = stats.ranked()
    bought = set(stats.items.tolist())
    in_last = set(history.items[history.purchases & (history.baskets == _last_basket(history))].tolist())
    last_seeds = [int(item) for item in stats.items[ranked] if int(item) in in_last][:CO_PURCHASE_SEEDS]
    seeds = stats.items[ranked[:CO_PURCHASE_SEEDS]].tolist()
    (seed_scores, seed_orders), (last_scores, _) = source.co_purchases([seeds, last_seeds], at)
    als = factors.scores_for_stats(stats) if factors is not None else None
    knn = factors.knn_scores(stats.items, stats.score) if factors is not None else None
    # partners of the recent orders' items: each item weighs 0.5 ** orders before the latest, summed over its orders
    basket = factors.basket_scores(stats.items, stats.score_recent) if factors is not None else None
    lists = {
        "repeat": [(int(stats.items[i]), float(stats.score[i])) for i in ranked],
        "co_purchase": _best(seed_scores, bought, limit),
        "knn": _best_of(factors.item_ids, knn, bought, limit) if knn is not None else [],
        "als": _best_of(factors.item_ids, als, bought, limit) if als is not None else [],
        "basket": _best_of(factors.item_ids, basket, bought, limit) if basket is not None else [],
        "popular": source.popular(at, POPULAR_CANDIDATES),
        "co_view": _best(source.co_views(view_seeds(history), at), bought, CO_VIEW_CANDIDATES),
        "trending": [pair for pair in source.trending(at, SHARED_CANDIDATES + len(bought)) if pair[0] not in bought][
            :SHARED_CANDIDATES
        ],
        "category": _category_list(source, history, at, bought),
        "new": [pair for pair in source.new_items(at, SHARED_CANDIDATES + len(bought)) if pair[0] not in bought][
            :SHARED_CANDIDATES
        ],
    }
    profiles = {}
    for space in vectors.spaces if vectors is not None else ():
        profile = visitor_profile(history, *vectors.vectors(space, history.items))
        profiles[space] = profile
        found = vectors.nearest(space, profile, SPACE_CANDIDATES, bought) if profile is not None else []
        lists[space_source(space)] = found
    candidates = gather_candidates(lists, limit=limit) if shown is None else ranked_items(lists, shown)
    items = candidates.items.tolist()
    popularity, first_seen, price, category = source.item_signals(candidates.items, at)
    item_model = {}
    if knn is not None:
        last_items = np.asarray(sorted(in_last), dtype=np.int64)
        item_model = {
            "knn": factors.scores_of(candidates.items, knn),
            "knn_last": factors.scores_of(candidates.items, factors.knn_scores(last_items, np.ones(len(last_items)))),
        }
    if factors is not None and factors.repeat_rate is not None:
        item_model["repeat_rate"] = factors.scores_of(candidates.items, factors.repeat_rate)
        item_model["buyers"] = factors.scores_of(candidates.items, factors.buyers)
    if basket is not None:
        last_items = np.asarray(sorted(in_last), dtype=np.int64)
        item_model["basket"] = factors.scores_of(candidates.items, basket)
        item_model["basket_last"] = factors.scores_of(
            candidates.items, factors.basket_scores(last_items, np.ones(len(last_items)))
        )
    signals = ItemSignals(
        popularity=popularity,
        first_seen=first_seen,
        price=price,
        category=category,
        co_purchase=np.asarray([seed_scores.get(i, 0.0) for i in items], dtype=np.float64),
        co_purchase_last=np.asarray([last_scores.get(i, 0.0) for i in items], dtype=np.float64),
        als=factors.scores_of(candidates.items, als) if als is not None else np.full(len(items), np.nan),
        seed_orders=seed_orders,
        space_cosine={
            space: _cosines(vectors, space, profile, candidates.items) for space, profile in profiles.items()
        },
        in_stock=source.item_stock(candidates.items),
        **item_model,
    )
    return candidates, history, signals


def _stock_value(state) -> float:
    """The ``in_stock`` feature of a catalogue state: 1.0 / 0.0, NaN for None (unknown)."""
    return np.nan if state is None else float(bool(state))


def view_seeds(history: VisitorHistory, limit: int = CO_VIEW_SEEDS) -> list[int]:
    """The co-view source's seeds: the visitor's latest ``limit`` distinct items of events other than purchases."""
    others = np.flatnonzero(~history.purchases)
    seeds: dict[int, None] = {}
    for position in others[np.lexsort((-history.items[others], -history.times[others]))]:
        seeds.setdefault(int(history.items[position]), None)
        if len(seeds) == limit:
            break
    return list(seeds)


def _category_list(source: SignalSource, history: VisitorHistory, at: float, bought: set) -> list[tuple[int, float]]:
    """The popular items of the visitor's ``CATEGORY_SEEDS`` categories with most purchase lines, each scored
    by its orders times its category's share of those lines; never an item they bought."""
    mask = history.purchases & (history.categories != "")
    if not mask.any():
        return []
    names, counts = np.unique(history.categories[mask].astype(str), return_counts=True)
    order = np.lexsort((names, -counts))[:CATEGORY_SEEDS]
    shares = {str(names[i]): float(counts[i]) / float(mask.sum()) for i in order}
    listed = source.category_popular(list(shares), at, SHARED_CANDIDATES + len(bought))
    scores = {}
    for category, items in listed.items():
        for item, orders in items:
            if item not in bought:
                scores[int(item)] = max(scores.get(int(item), 0.0), shares[category] * orders)
    return _best(scores, bought, SHARED_CANDIDATES)


def _cosines(vectors: VectorSource, space: str, profile: np.ndarray | None, items: np.ndarray) -> np.ndarray:
    """Each item's cosine to ``profile`` in ``space`` (NaN: no profile, or no vector)."""
    if profile is None or not len(items):
        return np.full(len(items), np.nan)
    rows, known = vectors.vectors(space, items)
    return np.where(known, rows.astype(np.float64) @ profile, np.nan)


def _best_of(item_ids: np.ndarray, scores: np.ndarray, bought: set, limit: int) -> list[tuple[int, float]]:
    """The best-scored items (scores aligned with ``item_ids``) not bought, positive scores only, ties by lower id."""
    positions = np.flatnonzero((scores > 0) & np.isfinite(scores))
    # sort only the items scored at least the (limit + bought)-th best, ties included: the best ``limit`` of
    # the items not bought are among them; the bought ones are then left out of those few, not of every item
    depth = limit + len(bought)
    if 0 < limit and depth < len(positions):
        kept = scores[positions]
        positions = positions[kept >= np.partition(kept, len(kept) - depth)[len(kept) - depth]]
    if bought:
        positions = positions[~np.isin(item_ids[positions], np.fromiter(bought, dtype=np.int64, count=len(bought)))]
    order = positions[np.lexsort((item_ids[positions], -scores[positions]))][:limit]
    return [(int(item_ids[p]), float(scores[p])) for p in order]


def _best(scores: Mapping[int, float], bought: set, limit: int) -> list[tuple[int, float]]:
    """The best-scored items not bought (finite scores), ties by lower id."""
    ranked = sorted(((-score, item) for item, score in scores.items() if item not in bought and np.isfinite(score)))
    return [(item, -negative) for negative, item in ranked[:limit]]


# ---------------------------------------------------------------- training examples


@dataclass
class LabelPoint:
    """One training query: the visitor at the time of one of their orders, labelled by its items."""

    visitor: str
    at: float
    items: frozenset


def label_points(log: EventLog, *, since: float, until: float = np.inf) -> list[LabelPoint]:
    """Every order placed in ``[since, until)`` by a visitor with an earlier order: one query each."""
    points = []
    for visitor in sorted(log.visitor_lines):
        baskets: dict[int, tuple[float, set]] = {}
        for item, time, basket, *_ in log.visitor_lines[visitor]:
            if basket >= 0:
                at, items = baskets.setdefault(basket, (time, set()))
                baskets[basket] = (min(at, time), items)
                items.add(item)
        if not baskets:
            continue
        first = min(at for at, _ in baskets.values())
        for _, (at, items) in sorted(baskets.items(), key=lambda pair: (pair[1][0], pair[0])):
            if since <= at < until and at > first:
                points.append(LabelPoint(visitor, at, frozenset(items)))
    return points


def query_rows(
    log: EventLog,
    point: LabelPoint,
    *,
    factors: ItemFactors | None = None,
    limit: int = 200,
    vectors: VectorSource | None = None,
) -> tuple[np.ndarray, np.ndarray, Candidates]:
    """Features, 0/1 labels and candidates of one label point (features from events before its time only)."""
    candidates, history, signals = log.candidates_at(
        point.visitor, point.at, factors=factors, limit=limit, vectors=vectors
    )
    labels = np.fromiter(
        (item in point.items for item in candidates.items.tolist()), dtype=np.float64, count=len(candidates)
    )
    return feature_matrix(candidates, history, signals), labels, candidates


# ---------------------------------------------------------------- impressions: shown lists labelled by what followed

#: The feature an impression query adds: the item's 0-based position in the list shown. NaN for the next-basket
#: queries (nothing was shown); 0 for every candidate when serving (``serving_matrix``), so the model ranks each
#: as if it were shown first and the position's own effect (a top slot is clicked more) is left out.
POSITION = "position"
#: An impression's shown item is labelled by the strongest of what the visitor did with it after the impression
#: (a click on it in that list, then an add to cart or a purchase credited to that click): graded, stronger
#: intent higher. Nothing: 0.
IMPRESSION_GRADES = {"click": 1.0, "add_to_cart": 2.0, "purchase": 3.0}


@dataclass
class ImpressionPoint:
    """One training query from an impression: the visitor at the time the list was shown, the shown items in
    order (``positions``: each one's 0-based place in the list as shown) and their graded labels."""

    visitor: str
    at: float
    items: tuple[int, ...]
    positions: tuple[int, ...]
    labels: tuple[float, ...]


def impression_grade(clicked: bool, carted: bool, purchased: bool) -> float:
    """The label of one shown item: a purchase > an add to cart > a click > nothing (``IMPRESSION_GRADES``)."""
    for done, event in ((purchased, "purchase"), (carted, "add_to_cart"), (clicked, "click")):
        if done:
            return IMPRESSION_GRADES[event]
    return 0.0


def impression_rows(
    log: EventLog,
    point: ImpressionPoint,
    *,
    factors: ItemFactors | None = None,
    limit: int = 200,
    vectors: VectorSource | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (``FEATURES`` then ``POSITION``) and graded labels of an impression's shown items, featured from
    the events before the impression only: the same sources, scores and ranks as a candidate stage run then."""
    candidates, history, signals = log.candidates_at(
        point.visitor, point.at, factors=factors, limit=limit, shown=point.items, vectors=vectors
    )
    where = {int(item): i for i, item in enumerate(point.items)}
    keep = [where[int(item)] for item in candidates.items.tolist()]  # duplicates were dropped, first kept
    positions = np.asarray([point.positions[i] for i in keep], dtype=np.float64)
    labels = np.asarray([point.labels[i] for i in keep], dtype=np.float64)
    return with_position(feature_matrix(candidates, history, signals), positions), labels


def with_position(features: np.ndarray, positions: np.ndarray | float) -> np.ndarray:
    """``features`` (``FEATURES`` columns) with the ``POSITION`` column appended (a scalar fills every row)."""
    column = np.broadcast_to(np.asarray(positions, dtype=np.float32), (len(features),))
    return (
        np.column_stack([features, column]).astype(np.float32)
        if len(features)
        else np.zeros((0, features.shape[1] + 1), dtype=np.float32)
    )


def serving_matrix(features: np.ndarray, names: Sequence[str], produced: Sequence[str] = FEATURES) -> np.ndarray:
    """``feature_matrix``'s rows (columns ``produced``) as a model with feature list ``names`` scores them when
    serving: with the position, if the model has it, fixed at 0 for every candidate, and NaN (missing) for a vector
    space's features the rows lack (its space not ready now). ``ValueError`` for any other feature list."""
    names, produced = list(names), list(produced)
    if names == produced:
        return features
    if names == [*produced, POSITION]:
        return with_position(features, 0.0)
    known = {name: i for i, name in enumerate(produced)}
    spaces = {name for name in names if name.startswith("space_") and name.endswith(("_cosine", "_rank"))}
    unknown = [name for name in names if name not in known and name != POSITION and name not in spaces]
    if unknown:
        raise ValueError("A model with features %s cannot score this version's candidates." % unknown)
    # an older model (a subset of today's features, in its own order): its columns, the position at 0
    columns = [
        features[:, known[name]]
        if name in known
        else np.full(len(features), np.nan if name in spaces else 0.0, dtype=np.float32)
        for name in names
    ]
    return np.column_stack(columns).astype(np.float32) if len(features) else np.zeros((0, len(names)), dtype=np.float32)


def in_validation(visitor: str, share: float, seed: int = 0) -> bool:
    """A stable pseudo-random split of visitors (the same visitor always lands on the same side)."""
    import hashlib

    digest = hashlib.sha256(("%d:%s" % (seed, visitor)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def fusion_scores(
    candidates: Candidates, history: VisitorHistory, weights: Mapping[str, float] | None = None, constant: float = 60.0
) -> np.ndarray:
    """Today's "for you" order on the same candidates: reciprocal rank fusion of the repeat and co-purchase
    lists (``FOR_YOU_WEIGHTS`` defaults; the embedding list is not part of the candidates)."""
    weights = weights or {"repeat": 1.25, "co_purchase": 1.0}
    scores = np.zeros(len(candidates))
    for source, weight in weights.items():
        ranks = candidates.ranks[source]
        scores += np.where(np.isnan(ranks), 0.0, weight / (constant + np.nan_to_num(ranks, nan=1.0)))
    return scores


def ordered(candidates: Candidates, scores: np.ndarray) -> np.ndarray:
    """Candidate item ids by score, best first, ties by lower id."""
    return candidates.items[np.lexsort((candidates.items, -np.asarray(scores, dtype=np.float64)))]


#: Repeat purchases take at most this share of a learned list (rounded up), so that it keeps room for
#: discovery; the model's order decides everything else (docs/evaluation.md, learned ranking).
REPEAT_SHARE = 0.5


def compose(
    candidates: Candidates, scores: np.ndarray, bought: set, k: int, repeat_share: float = REPEAT_SHARE
) -> list[int]:
    """Positions of the candidates to show, best score first: at most ``ceil(repeat_share * k)`` of
    them items the visitor bought, then the best of the rest, up to ``k``."""
    cap = int(np.ceil(repeat_share * k))
    chosen, repeats = [], 0
    for position in np.lexsort((candidates.items, -np.asarray(scores, dtype=np.float64))):
        if int(candidates.items[position]) in bought:
            if repeats >= cap:
                continue
            repeats += 1
        chosen.append(int(position))
        if len(chosen) == k:
            break
    return chosen
