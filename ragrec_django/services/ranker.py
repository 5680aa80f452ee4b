"""The learned ranker: serving "for you" with the active model, training and gating new versions.

``RAGREC["RANKER"]`` chooses per recommender: ``"fusion"`` (the hand-weighted lists, the default) or
``"learned"``; a serving configuration's ``ranker`` rule overrides it for the requests it serves, so an
A/B variant can serve learned against fusion. With ``"learned"``, ``for_you`` asks ``learned_for_you``
first; a missing model, a visitor without history, a missing ``lightgbm`` or any error returns None and
is logged, and fusion serves the request (never a 500).

The signals every visitor shares (item popularity per window, co-purchase partners, the popular list)
are read from tables materialised as of one instant (``refresh_signals``: a Celery task, the command's
``--signals``, and every training run), by primary key; while those are missing, stale or computed with
other parameters, the same counts are aggregated from the event table per request (slower; logged).

Every process loads the active ``RankerModel`` version from the database and re-checks its content
hash at most every ``MODEL_CHECK_SECONDS``, so web and worker processes score with the same model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from .. import storage
from ..conf import ragrec_settings
from ..exceptions import UnknownServingConfig
from ..models import Interaction, Item
from ..ranking import learned
from ..ranking.candidates import Candidate
from ..ranking.rules import RANKERS
from ..storage import ranking as store
from .results import RecommendationList, Visitor, finish, serving_rules, space_ready

logger = logging.getLogger("ragrec_django.ranker")

#: How long a process trusts its cached model before asking the database for the active hash again.
MODEL_CHECK_SECONDS = 10.0
#: The popular source is the same for everyone: cached per process for each bucket of this many seconds.
POPULAR_CACHE_SECONDS = 60.0
#: The gate's defaults: a new version is promoted when its hold-out nDCG@10 beats the current
#: ranking's by at least ``GATE_MARGIN`` over at least ``GATE_MIN_QUERIES`` orders.
GATE_MARGIN = 0.005
GATE_MIN_QUERIES = 100

#: The first this many results carry their top contributing features (SHAP values cost a model pass each).
EXPLAINED_RESULTS = 10
#: The materialised signals: the popular list is stored this long (the popular source reads its first
#: ``learned.POPULAR_CANDIDATES``), and each item keeps its this many strongest co-purchase partners (an item's
#: latest ``CO_PURCHASE_ORDERS_PER_ITEM`` orders rarely hold more distinct items; beyond it, weaker partners
#: count 0 instead of their few orders).
POPULAR_STORED = 200
PARTNERS_PER_ITEM = 2000

REASONS = {
    "co_view": "viewed with what you viewed",
    "knn": "often bought with what you buy",
    "als": "popular with shoppers like you",
    "basket": "often bought with what you buy",
    "space": "like what you buy",
    "trending": "trending now",
    "category": "popular in a category you buy",
    "new": "new and selling",
    "popular": "popular right now",
}
#: The events the co-view source and its in-memory twin read: every item event but purchases and searches.
VIEW_EVENTS = tuple(
    str(event) for event in Interaction.Event if event not in (Interaction.Event.PURCHASE, Interaction.Event.SEARCH)
)
#: Each seed's co-views read at most this many items (the source keeps the best ``learned.CO_VIEW_CANDIDATES``
#: of their sums over the seeds).
CO_VIEWS_PER_SEED = 1000


def ranker_for(recommender: str, config: str | None = None) -> str:
    """The ranking of ``recommender`` served with serving configuration ``config``: the configuration's
    ``ranker`` rule when it has one, else ``RAGREC["RANKER"]`` (a name for all recommenders, or
    {recommender: name}); "fusion" by default. An unknown configuration is the caller's error to raise."""
    if config is not None:
        try:
            chosen = serving_rules(config).ranker
        except UnknownServingConfig:
            chosen = None
        if chosen is not None:
            return chosen
    setting = ragrec_settings.RANKER
    name = setting.get(recommender, "fusion") if isinstance(setting, dict) else setting
    return name if name in RANKERS else "fusion"


# ---------------------------------------------------------------- the active model, per process


_models: dict[str, tuple[float, str | None, object | None]] = {}
_models_lock = threading.Lock()


def active_model(recommender: str = "for_you"):
    """The active version as a ``LearnedRanker`` (cached per process by content hash), or None."""
    from ..ml.ranker import LearnedRanker

    now = time.monotonic()
    checked, digest, model = _models.get(recommender, (0.0, None, None))
    if now - checked < MODEL_CHECK_SECONDS:
        return model
    current = store.active_ranker_hash(recommender)
    if current != digest:
        row = store.active_ranker(recommender) if current else None
        model = LearnedRanker.from_parts(row.model_text, row.metadata, bytes(row.factors)) if row is not None else None
        digest = current
    with _models_lock:
        _models[recommender] = (now, digest, model)
    return model


def forget_models() -> None:
    """Drop the cached models and signal snapshot (tests; a process that must reload at once)."""
    with _models_lock:
        _models.clear()
    _snapshot[:] = [float("-inf"), None]
    _shared_lists.clear()


# ---------------------------------------------------------------- signals from the database


def _max_per_source() -> int | None:
    return ragrec_settings.POPULARITY_MAX_PER_SOURCE


class DatabaseSignals:
    """``ranking.learned.SignalSource`` aggregated from the event table per request (events before ``at`` only;
    verified purchases, ``POPULARITY_MAX_PER_SOURCE`` orders per origin and item)."""

    _popular: dict[tuple, list] = {}

    def __init__(self):
        self.strongest_seed: dict[int, int] = {}

    def seed_of(self, item: int) -> int | None:
        """The seed ``item`` shares most orders with (its "bought with" reason), None when none."""
        return self.strongest_seed.get(item)

    def co_purchases(self, seed_sets, at):
        results = store.co_purchases(
            seed_sets, at=at, orders_per_item=learned.CO_PURCHASE_ORDERS_PER_ITEM, max_per_source=_max_per_source()
        )
        for _, _, strongest in results:
            for item, seed in strongest.items():
                self.strongest_seed.setdefault(item, seed)
        return [(scores, orders) for scores, orders, _ in results]

    def popular(self, at, limit):
        # one list per POPULAR_CACHE_SECONDS bucket of ``at`` (the latest bucket only is kept)
        key = (limit, int(at // POPULAR_CACHE_SECONDS), _max_per_source())
        if key not in self._popular:
            self._popular.clear()
            self._popular[key] = store.popular(
                at=at, days=learned.POPULAR_WINDOW_DAYS, limit=limit, max_per_source=_max_per_source()
            )
        return self._popular[key]

    def item_signals(self, items, at):
        return store.item_signals(items, at=at, windows=learned.POPULARITY_WINDOWS, max_per_source=_max_per_source())

    def item_stock(self, items):
        return store.item_stock(items)

    def co_views(self, seeds, at):
        scores: dict[int, float] = {}
        for seed in seeds:
            for item, viewers in store.co_views(
                seed,
                at=at,
                viewers=learned.CO_VIEW_VIEWERS,
                window_seconds=learned.CO_VIEW_WINDOW_SECONDS,
                limit=CO_VIEWS_PER_SEED,
                views=VIEW_EVENTS,
            ):
                scores[item] = scores.get(item, 0.0) + viewers
        return scores

    def trending(self, at, limit):
        # as of the start of the hour, as the in-memory log answers it
        hour = float(np.floor(at / 3600.0) * 3600.0)
        weights = {event: learned.TRENDING_WEIGHTS["other"] for event in VIEW_EVENTS}
        weights[str(Interaction.Event.PURCHASE)] = learned.TRENDING_WEIGHTS["purchase"]
        read = _read_size(limit)
        return _shared(
            ("trending", hour, read),
            lambda: storage.decayed_popularity(
                event_weights=weights,
                half_life_seconds=learned.TRENDING_HALF_LIFE_HOURS * 3600,
                category=None,
                limit=read,
                max_per_source=_max_per_source(),
                at=datetime.fromtimestamp(hour, tz=timezone.utc),
            ),
        )[:limit]

    def category_popular(self, categories, at, limit):
        day = float(np.floor(at / learned.DAY) * learned.DAY)  # as of the start of the day, as the log
        read = _read_size(limit)
        found = _shared(  # every category's list at once: the query counts every item's orders anyway
            ("category", day, read),
            lambda: store.category_popular(
                None, at=day, days=learned.POPULAR_WINDOW_DAYS, limit=read, max_per_source=_max_per_source()
            ),
        )
        return {category: found.get(category, [])[:limit] for category in categories}

    def new_items(self, at, limit):
        day = float(np.floor(at / learned.DAY) * learned.DAY)
        read = _read_size(limit)
        return _shared(
            ("new", day, read),
            lambda: store.new_items(
                at=day,
                days=learned.NEW_ITEM_DAYS,
                windows=learned.POPULARITY_WINDOWS,
                limit=read,
                max_per_source=_max_per_source(),
            ),
        )[:limit]


#: The shared lists are read this many items at a time (a multiple of it at least ``limit``), so visitors asking for
#: different lengths (the list's own length plus what they bought) share one read.
SHARED_READ = 1000


def _read_size(limit: int) -> int:
    return SHARED_READ * max(1, -(-int(limit) // SHARED_READ))


_shared_lists: dict[tuple, object] = {}
#: At most this many shared lists are cached (per category sets, they vary by visitor).
SHARED_CACHE_SIZE = 256


def _shared(key: tuple, read: Callable[[], object]):
    """A list every visitor shares (trending, a category's popular items, new items), read once per process for
    each ``key`` (which holds the instant it is read as of: the start of an hour or day)."""
    key = (*key, _max_per_source())
    if key not in _shared_lists:
        if len(_shared_lists) >= SHARED_CACHE_SIZE:
            _shared_lists.clear()
        _shared_lists[key] = read()
    return _shared_lists[key]


class DatabaseVectors:
    """``ranking.learned.VectorSource`` from the database: the stored vectors of the active generations of
    ``spaces`` that are ready, the nearest items by the space's index (eligible items only)."""

    def __init__(self, spaces):
        self.spaces = [space for space in spaces if space_ready(space)]

    def vectors(self, space, items):
        items = np.asarray(items, dtype=np.int64)
        found = storage.vectors_for_items(space, sorted(set(items.tolist())))
        if not found:
            return np.zeros((len(items), 1), dtype=np.float32), np.zeros(len(items), dtype=bool)
        # normalised as training's ``ItemVectors`` normalises them, so both give the same cosines
        return learned.ItemVectors.from_vectors({space: found}).vectors(space, items)

    def nearest(self, space, vector, limit, exclude):
        """The index's ``limit`` nearest items re-ranked by their exact cosine (as ``ItemVectors.nearest``: ties
        to the lower id, positive cosines only), so training and serving agree wherever the index finds them."""
        filters = storage.ItemFilter(exclude_ids=frozenset(int(item) for item in exclude))
        found = [n.item_id for n in storage.nearest(space, vector, limit, filters=filters)]
        if not found:
            return []
        ids = np.unique(np.asarray(found, dtype=np.int64))
        rows, known = self.vectors(space, ids)
        return learned.ItemVectors({space: (ids[known], rows[known])}).nearest(space, vector, limit, set())


def training_vectors() -> learned.ItemVectors | None:
    """Every item's vector in each space of ``SIMILAR_WEIGHTS`` (weight above 0) that is ready, for training the
    "for you" model's space sources and features; None when no space is ready."""
    spaces = [space for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items() if weight and space_ready(space)]
    if not spaces:
        return None
    ids = list(Item.objects.values_list("id", flat=True))
    vectors = learned.ItemVectors.from_vectors({space: storage.vectors_for_items(space, ids) for space in spaces})
    return vectors if vectors.spaces else None


class MaterialisedSignals:
    """``ranking.learned.SignalSource`` read by primary key from the tables ``refresh_signals`` wrote: the counts
    of ``DatabaseSignals`` as of the snapshot's instant, whatever ``at`` (the visitor's own events stay live)."""

    def __init__(self, snapshot):
        self.snapshot = snapshot
        self._sets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # per seed set: partner, seed, count

    def seed_of(self, item: int) -> int | None:
        """The seed ``item`` shares most orders with, ties to the lower id (as ``store.co_purchases``)."""
        for partners, seeds, counts in self._sets:
            mine = (partners == item) & (seeds != item)
            if mine.any():
                best = np.lexsort((seeds[mine], -counts[mine]))[0]
                return int(seeds[mine][best])
        return None

    def co_purchases(self, seed_sets, at):
        rows = store.materialised_partners(sorted({int(seed) for seeds in seed_sets for seed in seeds}))
        results = []
        for seeds in seed_sets:
            present = [int(seed) for seed in seeds if int(seed) in rows]
            if not present:
                self._sets.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)))
                results.append(({}, 0.0))
                continue
            partners = np.concatenate([rows[seed][1] for seed in present])
            counts = np.concatenate([rows[seed][2] for seed in present])
            owners = np.repeat(present, [len(rows[seed][1]) for seed in present])
            self._sets.append((partners, owners, counts))
            items, index = np.unique(partners, return_inverse=True)
            totals = np.bincount(index, weights=counts, minlength=len(items))
            read = float(sum(rows[seed][0] for seed in present))
            results.append((dict(zip(items.tolist(), totals.tolist(), strict=True)), read))
        return results

    def popular(self, at, limit):
        return [(int(item), float(orders)) for item, orders in self.snapshot.popular[:limit]]

    def co_views(self, seeds, at):
        return DatabaseSignals().co_views(seeds, at)  # a visitor's own items: not materialised

    def trending(self, at, limit):
        return DatabaseSignals().trending(at, limit)

    def category_popular(self, categories, at, limit):
        return DatabaseSignals().category_popular(categories, at, limit)

    def new_items(self, at, limit):
        return DatabaseSignals().new_items(at, limit)

    def item_signals(self, items, at):
        windows = list(self.snapshot.windows)
        popularity, first_seen, price, category = store.materialised_item_signals(items, width=len(windows))
        return {days: popularity[:, offset] for offset, days in enumerate(windows)}, first_seen, price, category

    def item_stock(self, items):
        return store.item_stock(items)  # the catalogue's state now: not materialised


_reported: set = set()
#: The snapshot row as last read by this process: (monotonic time read, snapshot or None); re-read every
#: ``MODEL_CHECK_SECONDS`` and after this process refreshes it.
_snapshot: list = [float("-inf"), None]


def signal_source(at: float) -> DatabaseSignals | MaterialisedSignals:
    """The materialised signals when their snapshot is usable at ``at``, else the live aggregates (the reason logged
    once per process and snapshot)."""
    if time.monotonic() - _snapshot[0] >= MODEL_CHECK_SECONDS:
        _snapshot[:] = [time.monotonic(), store.signal_snapshot()]
    snapshot = _snapshot[1]
    problem = _unusable(snapshot, at)
    if problem is None:
        return MaterialisedSignals(snapshot)
    key = (getattr(snapshot, "pk", None), problem.split(":")[0])
    if key not in _reported:
        _reported.add(key)
        logger.warning("Learned ranker signals read from the event table per request (slower): %s", problem)
    return DatabaseSignals()


def _unusable(snapshot, at: float) -> str | None:
    """Why ``snapshot`` cannot stand for the signals at ``at`` (None: it can)."""
    if snapshot is None:
        return "none materialised yet: run manage.py ragrec_train_ranker --signals or tasks.refresh_ranker_signals_task"
    age = at - snapshot.as_of.timestamp()
    if age < 0:
        return "materialised after %s: cannot answer for an earlier time" % snapshot.as_of.isoformat()
    if age > ragrec_settings.RANKER_SIGNALS_MAX_AGE_HOURS * 3600:
        return "stale: materialised %.1f hours ago (RAGREC['RANKER_SIGNALS_MAX_AGE_HOURS'] is %s)" % (
            age / 3600,
            ragrec_settings.RANKER_SIGNALS_MAX_AGE_HOURS,
        )
    expected = (
        list(learned.POPULARITY_WINDOWS),
        learned.CO_PURCHASE_ORDERS_PER_ITEM,
        float(learned.POPULAR_WINDOW_DAYS),
        _max_per_source(),
    )
    found = (list(snapshot.windows), snapshot.orders_per_item, snapshot.popular_days, snapshot.max_per_source)
    if found != expected:
        return "parameters: materialised with %s, serving needs %s; refresh them" % (found, expected)
    return None


def refresh_signals(*, at: float | None = None) -> object:
    """Materialise the shared signals as of ``at`` (default now) with the parameters serving reads them with;
    returns the ``RankerSignalSnapshot``. Idempotent: a refresh replaces the previous one."""
    snapshot = store.refresh_signals(
        at=time.time() if at is None else at,
        windows=learned.POPULARITY_WINDOWS,
        orders_per_item=learned.CO_PURCHASE_ORDERS_PER_ITEM,
        max_per_source=_max_per_source(),
        popular_days=float(learned.POPULAR_WINDOW_DAYS),
        popular_limit=POPULAR_STORED,
        partners_per_item=PARTNERS_PER_ITEM,
    )
    logger.info("Materialised the learned ranker's signals: %s in %.1f s.", snapshot, snapshot.seconds)
    _snapshot[:] = [time.monotonic(), snapshot]
    return snapshot


def signals_for(visitor: Visitor, at: float, factors, *, source=None, limit: int | None = None, vectors=None):
    """``(candidates, history, signals)`` of a visitor at ``at``, read from the database (``source``: the live
    aggregates by default; ``vectors``: a ``DatabaseVectors`` for the vector spaces' sources and features)."""
    lines, _ = store.visitor_lines(user_id=visitor.user_id, session_key=visitor.session_key, at=at)
    return _signals(lines, at, factors, source or DatabaseSignals(), limit, vectors)


def _signals(lines, at: float, factors, source, limit: int | None = None, vectors=None):
    history = learned.VisitorHistory.from_lines(at, lines)
    return learned.candidates_at(
        source, history, factors=factors, limit=limit or candidate_count(), vectors=vectors or None
    )


def training_log() -> tuple[learned.EventLog, int, float]:
    """The shop's events as the training jobs read them: the in-memory log, how many events it holds, and the end
    of the data (just after the latest event). ``NotEnoughData`` when there are none."""
    from ..ml.ranker import NotEnoughData

    prices, categories = store.item_catalogue()
    lines = list(store.event_lines())
    # no ``stock``: the catalogue's stock is today's, and there is no history of it, so a past query's ``in_stock``
    # is unknown (NaN) rather than read from after its time (docs/evaluation.md, "What it is")
    if not lines:
        raise NotEnoughData("The shop has no events yet; the ranker needs orders to learn from.")
    log = learned.EventLog.build(lines, prices=prices, categories=categories)
    return log, len(lines), max(line[3] for line in lines) + 1.0


def candidate_count() -> int:
    """How many candidates a learned ranker's stage gathers (``RAGREC["RANKER_CANDIDATES"]``)."""
    return int(ragrec_settings.RANKER_CANDIDATES)


# ---------------------------------------------------------------- serving


@dataclass
class _Scored:
    candidates: learned.Candidates
    features: np.ndarray
    scores: np.ndarray
    chosen: list[int]


def learned_for_you(visitor: Visitor, *, k: int, config: str, at: float | None = None) -> RecommendationList | None:
    """ "For you" ranked by the active model as of ``at`` (default now); None (logged) when it cannot serve, so
    fusion does."""
    try:
        model = active_model("for_you")
        if model is None:
            logger.warning("RAGREC RANKER for_you is 'learned' but no model is active: serving fusion.")
            return None
        if not visitor:
            return None
        now = time.time() if at is None else at
        source = signal_source(now)
        lines, titles = store.visitor_lines(user_id=visitor.user_id, session_key=visitor.session_key, at=now)
        vectors = DatabaseVectors(model.metadata.get("spaces", []))
        candidates, history, signals = _signals(lines, now, model.factors, source, vectors=vectors)
        if not history.purchases.any() or not len(candidates):
            return None  # nothing bought yet: fusion's lists (similar items, trending) serve them
        features = learned.serving_matrix(
            learned.feature_matrix(candidates, history, signals),
            model.features,
            learned.feature_names(candidates.spaces),
        )
        scores = model.predict(features)
        bought = set(history.items[history.purchases].tolist())
        chosen = learned.compose(candidates, scores, bought, k)
        # spares after the k (serving rules may drop some), composed the same way
        chosen += [p for p in learned.compose(candidates, scores, bought, k * 2 + 10) if p not in set(chosen)]
        scored = _Scored(candidates, features, scores, chosen)
        return finish("for_you", config, _explained(scored, model, bought, source, history, titles, k), k)
    except Exception:  # noqa: BLE001 - the learned path must never fail a request: fusion serves it
        logger.exception("Learned ranking of for_you failed: serving fusion.")
        return None


def learned_basket_partners(items: list[int], *, exclude: set[int], limit: int) -> list[tuple[int, float, int]] | None:
    """ "Bought together" from the active model's item-kNN (``ranking.learned.basket_partners``); None (logged)
    when no model with neighbours is active, so the co-purchase counts serve."""
    try:
        model = active_model("for_you")
        if model is None or model.factors is None or model.factors.neighbours is None:
            logger.warning("RAGREC RANKER bought_together is 'learned' but no model with neighbours is active.")
            return None
        return learned.basket_partners(model.factors, items, exclude, limit)
    except Exception:  # noqa: BLE001 - the learned path must never fail a request: the counts serve it
        logger.exception("Learned bought_together failed: serving co-purchase counts.")
        return None


def _explained(scored: _Scored, model, bought: set, source, history, titles: dict, k: int) -> list[Candidate]:
    """Candidates with the model's score, the reason of their strongest source and the top contributing features
    (``titles``: of the visitor's items, which every "bought with" seed is)."""
    stats = learned.repeat_stats(history)
    orders = dict(zip(stats.items.tolist(), stats.orders.tolist(), strict=True))
    top = scored.chosen[: min(k, EXPLAINED_RESULTS)]
    contributions = model.top_features_of(scored.features[top]) if top else []
    result = []
    for rank, position in enumerate(scored.chosen):
        item = int(scored.candidates.items[position])
        seed = None if item in bought else source.seed_of(item)
        if item in bought:
            reason = "you buy this often" if orders.get(item, 0) > 1 else "you bought this before"
        elif seed in titles:
            reason = "bought with %s" % titles[seed]
        else:
            strongest = scored.candidates.source_of(position) or "popular"
            strongest = "space" if strongest.startswith(learned.SPACE_PREFIX) else strongest
            reason = REASONS.get(strongest, REASONS["popular"])
        components = {"learned": float(scored.scores[position])}
        for name in scored.candidates.sources:
            value = scored.candidates.ranks[name][position]
            if not np.isnan(value):
                components[name + "_rank"] = float(value)
        if rank < len(contributions):
            components.update({"feature:" + name: value for name, value in contributions[rank].items()})
        # the score keeps the composed order (repeat share) through the serving rules
        result.append(
            Candidate(item_id=item, score=float(len(scored.chosen) - rank), reasons=[reason], components=components)
        )
    return result


# ---------------------------------------------------------------- training


@dataclass
class TrainingOutcome:
    version: object  # RankerModel
    promoted: bool
    message: str


def train_ranker(
    *,
    recommender: str = "for_you",
    label_days: float = 180,
    holdout_days: float = 14,
    margin: float = GATE_MARGIN,
    min_queries: int = GATE_MIN_QUERIES,
    promote: bool = True,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> TrainingOutcome:
    """Train a version on the shop's events, judge it on the latest ``holdout_days`` against the serving
    ranking (the active model, else fusion) and promote it when it wins by ``margin`` on nDCG@10.

    ``NotEnoughData`` (from ``ml.ranker``) when the shop has too few orders: nothing is stored.
    """
    from ..ml import ranker as trainer

    say = progress or (lambda message: None)
    started = time.time()
    say("reading events")
    log, events, end = training_log()
    say("%d events, %d items, %d orders" % (events, len(log.item_ids), len(log.basket_times)))
    current = active_model(recommender)
    baseline = _model_baseline(current) if current is not None else None
    options = trainer.FitOptions(
        label_days=label_days,
        holdout_days=holdout_days,
        basket_max_pairs=int(ragrec_settings.RANKER_BASKET_MAX_PAIRS),
        candidates=candidate_count(),
    )
    shown = impression_points(
        recommender, since=end - (holdout_days + label_days) * learned.DAY, until=end - holdout_days * learned.DAY
    )
    if shown:
        say("%d impression(s) of %s with their clicks, adds to cart and purchases" % (len(shown), recommender))
    vectors = training_vectors()
    if vectors is not None:
        say("vector spaces as sources and features: %s" % ", ".join(vectors.spaces))
    fitted = trainer.fit(
        log, end=end, options=options, baseline=baseline, progress=say, impressions=shown, vectors=vectors
    )
    ranker = fitted.ranker
    ranker.metadata.update({"events": events, "trained_at": started})
    say("materialising the signals serving reads")
    refresh_signals()
    return keep_or_promote(
        recommender,
        ranker,
        fitted.gate,
        against="active model" if baseline is not None else "fusion",
        margin=margin,
        min_queries=min_queries,
        promote=promote,
        force=force,
    )


def keep_or_promote(
    recommender: str,
    ranker,
    gate: dict | None,
    *,
    against: str,
    margin: float = GATE_MARGIN,
    min_queries: int = GATE_MIN_QUERIES,
    promote: bool = True,
    force: bool = False,
) -> TrainingOutcome:
    """Store a trained ``LearnedRanker`` as a version of ``recommender`` and promote it when its hold-out nDCG@10
    (``gate``, from ``ml.ranker.judge`` or ``judge_similar``) beats ``against``'s by ``margin`` over at least
    ``min_queries`` queries (or ``force``); otherwise it stays a candidate."""
    gate = dict(gate or {})
    gate.update({"margin": margin, "min_queries": min_queries, "against": against})
    wins = (
        gate.get("queries", 0) >= min_queries
        and gate.get("learned_ndcg@10", 0) >= gate.get("baseline_ndcg@10", 0) + margin
    )
    ranker.metadata["gate"] = gate
    version = store.store_ranker(
        recommender,
        model_text=ranker.model_text,
        factors=ranker.factors_bytes(),
        metadata=ranker.metadata_document(),
        content_hash=ranker.content_hash,
    )
    if promote and (wins or force):
        store.promote_ranker(version)
        forget_models()
        return TrainingOutcome(
            version,
            True,
            "Promoted %s: hold-out nDCG@10 %.4f vs %.4f (%s)."
            % (version, gate.get("learned_ndcg@10", 0), gate.get("baseline_ndcg@10", 0), gate["against"]),
        )
    why = (
        "forced off"
        if not promote
        else (
            "too few hold-out queries (%d < %d)" % (gate.get("queries", 0), min_queries)
            if gate.get("queries", 0) < min_queries
            else "hold-out nDCG@10 %.4f does not beat %.4f by %.3f"
            % (gate.get("learned_ndcg@10", 0), gate.get("baseline_ndcg@10", 0), margin)
        )
    )
    return TrainingOutcome(version, False, "Kept the current ranking; stored %s as a candidate: %s." % (version, why))


def impression_points(recommender: str, *, since: float, until: float) -> list[learned.ImpressionPoint]:
    """The ``recommender`` lists shown in ``[since, until)`` (Unix seconds) as training queries: the shown items
    in order, each labelled by the visitor's click on it in that list, add to cart or purchase credited to that
    click within ``experiments.ATTRIBUTION_WINDOW`` (``learned.impression_grade``); events before ``until`` only."""
    from datetime import datetime, timezone

    from .experiments import ATTRIBUTION_WINDOW, CONVERSION_EVENTS

    rows = store.impression_labels(
        recommender,
        since=datetime.fromtimestamp(since, tz=timezone.utc),
        until=datetime.fromtimestamp(until, tz=timezone.utc),
        window=ATTRIBUTION_WINDOW,
        conversion_events=CONVERSION_EVENTS,
    )
    points: dict = {}
    for impression, visitor, at, position, item, clicked, carted, purchased in rows:
        point = points.setdefault(impression, learned.ImpressionPoint(visitor, float(at), (), (), ()))
        point.items += (int(item),)
        point.positions += (int(position),)
        point.labels += (learned.impression_grade(clicked, carted, purchased),)
    return list(points.values())


def _model_baseline(current):
    """The active model's scores on the gate's queries, as it serves them (its feature list must be this version's,
    with or without the position)."""
    try:
        learned.serving_matrix(np.zeros((0, len(learned.FEATURES)), dtype=np.float32), current.features)
    except ValueError:
        return None

    def scores(candidates, history, features):
        return current.predict(
            learned.serving_matrix(features, current.features, learned.feature_names(candidates.spaces))
        )

    return scores


def promote_version(version) -> object:
    """Activate a stored version (the admin's and the command's promote); every process picks it up."""
    store.promote_ranker(version)
    forget_models()
    return version


def rollback_version(recommender: str = "for_you"):
    """Re-activate the version active before the current one; None (fusion serves) when there is none."""
    previous = store.rollback_ranker(recommender)
    forget_models()
    return previous
