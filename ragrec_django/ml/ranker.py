"""LightGBM LambdaRank: train on grouped feature rows, predict, save and load a versioned artefact.

No Django. ``lightgbm`` is imported only to train or load (the optional ``rank`` extra); the
rest of the library serves fused rankings without it.

An artefact is two files in a folder: ``model.txt`` (LightGBM's text model) and ``model.json``
(content hash, feature list, parameters, data window, validation metrics, feature importances).
The content hash is the sha256 of the model text and the feature list, so two processes that
load the same hash score alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ranking.learned import ItemFactors, in_validation

MODEL_FILE, META_FILE, FACTORS_FILE = "model.txt", "model.json", "factors.npz"
#: The item model's arrays beside the ALS factors (an artefact without them still loads: no kNN source; without
#: the basket table, "bought together" reads the kNN neighbours).
ITEM_MODEL_ARRAYS = (
    "neighbours",
    "similarities",
    "repeat_rate",
    "buyers",
    "basket_indptr",
    "basket_neighbours",
    "basket_similarities",
)

DEFAULT_PARAMS = {
    "objective": "lambdarank",
    "metric": "ndcg",
    "eval_at": [10],
    "lambdarank_truncation_level": 20,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 2,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
MAX_ROUNDS = 400
EARLY_STOPPING_ROUNDS = 30


class RankerUnavailable(Exception):
    """lightgbm is not installed, or a model file cannot be read."""


def _lightgbm():
    try:
        import lightgbm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RankerUnavailable("The learned ranker needs lightgbm: pip install 'ragrec-django[rank]'.") from exc
    return lightgbm


@dataclass
class RankingData:
    """Feature rows grouped by query (one query = one visitor at one time), with 0/1 labels."""

    features: np.ndarray
    labels: np.ndarray
    groups: list[int]

    @classmethod
    def stack(cls, parts: Sequence[tuple[np.ndarray, np.ndarray]], width: int) -> RankingData:
        """From ``(features, labels)`` per query; queries without a positive label are left out (no gradient)."""
        kept = [(x, y) for x, y in parts if len(y) and y.max() > 0]
        if not kept:
            return cls(np.zeros((0, width), dtype=np.float32), np.zeros(0), [])
        return cls(np.vstack([x for x, _ in kept]), np.concatenate([y for _, y in kept]), [len(y) for _, y in kept])

    def __len__(self) -> int:
        return len(self.groups)


@dataclass
class LearnedRanker:
    """A trained model and what describes it."""

    model_text: str
    features: list[str]
    params: dict
    metadata: dict = field(default_factory=dict)
    factors: ItemFactors | None = None
    _booster: object = field(default=None, repr=False)

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256(self.model_text.encode())
        digest.update(json.dumps(self.features).encode())
        digest.update(self.factors_bytes())
        return digest.hexdigest()

    def factors_bytes(self) -> bytes:
        """The matrix-factorisation item factors as ``.npz`` bytes (empty without them)."""
        if self.factors is None:
            return b""
        buffer = io.BytesIO()
        optional = {
            name: getattr(self.factors, name) for name in ITEM_MODEL_ARRAYS if getattr(self.factors, name) is not None
        }
        np.savez(
            buffer,
            item_ids=self.factors.item_ids,
            factors=self.factors.factors,
            settings=np.array([self.factors.regularization, self.factors.alpha]),
            **optional,
        )
        return buffer.getvalue()

    @staticmethod
    def factors_from_bytes(data: bytes) -> ItemFactors | None:
        if not data:
            return None
        with np.load(io.BytesIO(data)) as arrays:
            regularization, alpha = arrays["settings"].tolist()
            return ItemFactors(
                item_ids=arrays["item_ids"],
                factors=arrays["factors"],
                regularization=regularization,
                alpha=alpha,
                **{name: arrays[name] for name in ITEM_MODEL_ARRAYS if name in arrays.files},
            )

    @property
    def booster(self):
        if self._booster is None:
            try:
                self._booster = _lightgbm().Booster(model_str=self.model_text)
            except RankerUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - LightGBM raises its own error types for a bad file
                raise RankerUnavailable("Cannot read the ranker model: %s" % exc) from exc
        return self._booster

    def predict(self, features: np.ndarray) -> np.ndarray:
        if features.shape[1] != len(self.features):
            raise RankerUnavailable("The model expects %d features, got %d." % (len(self.features), features.shape[1]))
        if not len(features):
            return np.zeros(0)
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float64)

    def top_features_of(self, rows: np.ndarray, limit: int = 3) -> list[dict[str, float]]:
        """Per row, the features that raised its score most (LightGBM's SHAP values), name -> contribution."""
        contributions = np.asarray(self.booster.predict(rows, pred_contrib=True, num_threads=1))[:, :-1]
        tops = []
        for row in contributions:
            order = np.argsort(-row)[:limit]
            tops.append({self.features[i]: round(float(row[i]), 4) for i in order if row[i] > 0})
        return tops

    def metadata_document(self) -> dict:
        return {"content_hash": self.content_hash, "features": self.features, "params": self.params, **self.metadata}

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MODEL_FILE).write_text(self.model_text)
        (folder / META_FILE).write_text(json.dumps(self.metadata_document(), indent=2, sort_keys=True))
        if self.factors is not None:
            (folder / FACTORS_FILE).write_bytes(self.factors_bytes())
        return folder

    @classmethod
    def from_parts(cls, model_text: str, document: dict, factors: bytes = b"") -> LearnedRanker:
        """From the model text, the metadata document and the factors' bytes; ``RankerUnavailable`` when
        the content hash does not match."""
        reserved = {"content_hash", "features", "params"}
        try:
            item_factors = cls.factors_from_bytes(factors)
        except (OSError, ValueError, KeyError) as exc:
            raise RankerUnavailable("Cannot read the ranker's item factors: %s" % exc) from exc
        ranker = cls(
            model_text=model_text,
            features=list(document["features"]),
            params=dict(document.get("params", {})),
            metadata={k: v for k, v in document.items() if k not in reserved},
            factors=item_factors,
        )
        expected = document.get("content_hash")
        if expected and expected != ranker.content_hash:
            raise RankerUnavailable(
                "Ranker model hash mismatch: expected %s, got %s." % (expected, ranker.content_hash)
            )
        return ranker

    @classmethod
    def load(cls, folder: str | Path) -> LearnedRanker:
        folder = Path(folder)
        try:
            model_text = (folder / MODEL_FILE).read_text()
            document = json.loads((folder / META_FILE).read_text())
            factors = (folder / FACTORS_FILE).read_bytes() if (folder / FACTORS_FILE).exists() else b""
        except (OSError, ValueError) as exc:
            raise RankerUnavailable("Cannot read the ranker in %s: %s" % (folder, exc)) from exc
        return cls.from_parts(model_text, document, factors)


def train(
    train_data: RankingData,
    valid_data: RankingData,
    features: Sequence[str],
    *,
    params: dict | None = None,
    max_rounds: int = MAX_ROUNDS,
    early_stopping_rounds: int = EARLY_STOPPING_ROUNDS,
    progress: Callable[[str], None] | None = None,
    metadata: dict | None = None,
) -> LearnedRanker:
    """LambdaRank with early stopping on ``valid_data`` nDCG@10; the best iteration is kept."""
    lgb = _lightgbm()
    if not len(train_data) or not len(valid_data):
        raise ValueError("Training needs queries with a positive label in both the training and the validation part.")
    params = {**DEFAULT_PARAMS, **(params or {})}
    names = [str(name) for name in features]
    train_set = lgb.Dataset(
        train_data.features, train_data.labels, group=train_data.groups, feature_name=names, free_raw_data=False
    )
    valid_set = lgb.Dataset(
        valid_data.features, valid_data.labels, group=valid_data.groups, reference=train_set, free_raw_data=False
    )
    history: dict = {}
    callbacks = [lgb.early_stopping(early_stopping_rounds, verbose=False), lgb.record_evaluation(history)]
    if progress:
        callbacks.append(_progress_callback(progress))
    started = time.perf_counter()
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - started
    best = booster.best_iteration or booster.current_iteration()
    curve = history.get("valid", {}).get("ndcg@10", [])
    gains = booster.feature_importance(importance_type="gain", iteration=best)
    importances = {
        name: round(float(gain), 3) for name, gain in sorted(zip(names, gains, strict=True), key=lambda pair: -pair[1])
    }
    text = booster.model_to_string(num_iteration=best)
    document = {
        "trained_in_s": round(seconds, 2),
        "best_iteration": int(best),
        "validation": {
            "ndcg@10": round(float(curve[best - 1]), 6) if curve else None,
            "queries": len(valid_data),
            "curve_ndcg@10": [round(float(v), 5) for v in curve],
        },
        "training": {
            "queries": len(train_data),
            "rows": int(len(train_data.labels)),
            "positives": int(train_data.labels.sum()),
        },
        "feature_importance_gain": importances,
        **(metadata or {}),
    }
    return LearnedRanker(model_text=text, features=names, params=params, metadata=document)


def _progress_callback(say: Callable[[str], None]):
    def callback(env) -> None:
        if env.iteration % 25 == 0 and env.evaluation_result_list:
            _, metric, value, _ = env.evaluation_result_list[0][:4]
            say("round %d: validation %s %.4f" % (env.iteration + 1, metric, value))

    return callback


def train_item_factors(
    visitors: int,
    items: Sequence[int],
    entries: Sequence[tuple[int, int, float]],
    *,
    factors: int = 64,
    regularization: float = 0.05,
    alpha: float = 1.0,
    iterations: int = 15,
    seed: int = 0,
    threads: int = 2,
):
    """Implicit ALS (``implicit`` package) on ``(visitor row, item column, orders)`` entries: the item factors.

    Returns ``ranking.learned.ItemFactors`` (visitor vectors are solved per request from their history).
    """
    try:
        from implicit.als import AlternatingLeastSquares
        from scipy.sparse import csr_matrix
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RankerUnavailable(
            "The matrix-factorisation source needs implicit: pip install 'ragrec-django[rank]'."
        ) from exc
    rows, columns, values = (np.asarray(v) for v in zip(*entries, strict=True)) if entries else (np.zeros(0),) * 3
    matrix = csr_matrix(
        (values.astype(np.float32), (rows.astype(np.int64), columns.astype(np.int64))), shape=(visitors, len(items))
    )
    from threadpoolctl import threadpool_limits

    # implicit runs its own threads: a BLAS thread pool under them only slows it (and it warns)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=threads,
        )
        model.fit(matrix, show_progress=False)
    item_factors = np.asarray(getattr(model.item_factors, "to_numpy", lambda: model.item_factors)(), dtype=np.float32)
    return ItemFactors(
        item_ids=np.asarray(items, dtype=np.int64), factors=item_factors, regularization=regularization, alpha=alpha
    )


# ---------------------------------------------------------------- the whole job: from an event log to a gated model


class NotEnoughData(ValueError):
    """Too few orders to train (or to judge) a ranker; the current ranking stays."""


@dataclass
class FitOptions:
    label_days: float = 180.0  # orders in this window (before the hold-out) are the training queries
    holdout_days: float = 0.0  # the latest orders, kept for the gate (0: no gate)
    valid_share: float = 0.15  # visitors whose queries validate (early stopping)
    candidates: int = 200
    min_queries: int = 50
    factors: bool = True  # the item model (ALS and kNN sources), when ``implicit`` is installed
    als_factors: int = 64
    als_regularization: float = 0.05
    als_alpha: float = 1.0
    neighbours: int = 50  # item-kNN neighbours kept per item (0: no kNN source)
    knn_basket_weight: float = 1.0  # an order counts size ** -this in the kNN similarities (0: every order 1)
    # "bought together" for a basket: its own table of partners per item (``basket_table``), in the served model only
    basket_neighbours: int = 200  # partners kept per item (0: no table; the kNN neighbours serve)
    basket_max_pairs: int = 2_000_000  # at most this many (item, partner) pairs in all, 6 bytes each
    basket_half_life_days: float = 120.0  # an order counts 0.5 ** (its age / this) (0: no decay)
    basket_shrink: float = 20.0
    item_model_days: float = 30.0  # training queries use an item model retrained every this many days
    params: dict | None = None
    seed: int = 0


@dataclass
class Fitted:
    ranker: LearnedRanker
    gate: dict | None = None


def fit(
    log,
    *,
    end: float,
    options: FitOptions | None = None,
    baseline: Callable | None = None,
    progress: Callable[[str], None] | None = None,
    impressions: Sequence = (),
    vectors=None,
) -> Fitted:
    """Train a ranker on an ``EventLog`` whose events end before ``end`` (Unix seconds).

    Queries are the orders of ``label_days`` before the hold-out; their features read only earlier
    events, and the item factors used for them are trained on events before that window. ``impressions``
    (``learned.ImpressionPoint``) shown in the same window are queries too: their shown items, featured as of
    the impression, labelled by what followed (graded), with the ``POSITION`` feature (NaN for the order
    queries); without any that has a positive label, the model has no position feature. With
    ``holdout_days``, the latest orders judge the model against ``baseline(candidates, history,
    features)`` -> scores (default: ``learned.fusion_scores``), nDCG@10 over those orders. The stored
    item factors are retrained on every event before ``end``, as serving sees them. ``vectors``
    (``learned.VectorSource``): each of its spaces is a candidate source and two features
    (``learned.space_features``); the metadata's ``spaces`` names them.
    """
    from ..ranking import learned

    options = options or FitOptions()
    say = progress or (lambda message: None)
    started = time.perf_counter()
    holdout_start = end - options.holdout_days * learned.DAY
    label_start = holdout_start - options.label_days * learned.DAY
    points = learned.label_points(log, since=label_start, until=holdout_start)
    if len(points) < options.min_queries:
        raise NotEnoughData(
            "Only %d order(s) by returning shoppers in the %g days before the hold-out; the ranker needs at least %d."
            % (len(points), options.label_days, options.min_queries)
        )
    use_factors = options.factors and _has_implicit()
    # the item model a query sees is trained on the events before its period of ``item_model_days`` (as
    # serving's is trained before it serves): stale by at most that much, never reading the query's future
    period = max(options.item_model_days, 1.0) * learned.DAY
    item_models: dict[float, object] = {}
    say("%d training queries (orders of returning shoppers); building features" % len(points))
    parts: dict[bool, list] = {True: [], False: []}
    recall = _CandidateRecall()
    for i, point in enumerate(points, start=1):
        cut = label_start + np.floor((point.at - label_start) / period) * period
        if use_factors and cut not in item_models:
            item_models[cut] = _factors(log, cut, options)
        factors = item_models.get(cut)
        features, labels, candidates = learned.query_rows(
            log, point, factors=factors, limit=options.candidates, vectors=vectors
        )
        parts[learned.in_validation(point.visitor, options.valid_share, options.seed)].append((features, labels))
        recall.add(candidates, point.items)
        if i % 1000 == 0:
            say("features: %d/%d queries" % (i, len(points)))
    spaces = list(vectors.spaces) if vectors is not None else []
    names, shown = list(learned.feature_names(spaces)), _ImpressionCount()
    kept = [p for p in impressions if label_start <= p.at < holdout_start and len(p.items)]
    if kept:
        say("%d impression queries; building their features" % len(kept))
    impression_parts: dict[bool, list] = {True: [], False: []}
    for point in kept:
        cut = label_start + np.floor((point.at - label_start) / period) * period
        if use_factors and cut not in item_models:
            item_models[cut] = _factors(log, cut, options)
        features, labels = learned.impression_rows(
            log, point, factors=item_models.get(cut), limit=options.candidates, vectors=vectors
        )
        impression_parts[learned.in_validation(point.visitor, options.valid_share, options.seed)].append(
            (features, labels)
        )
        shown.add(labels)
    if shown.positive_queries:
        # the order queries have no shown position: NaN, the model's missing value
        names.append(learned.POSITION)
        for side in parts:
            parts[side] = [(learned.with_position(x, np.nan), y) for x, y in parts[side]] + impression_parts[side]
    train_data = RankingData.stack(parts[False], len(names))
    valid_data = RankingData.stack(parts[True], len(names))
    feature_seconds = time.perf_counter() - started
    say(
        "training LightGBM LambdaRank on %d queries (%d rows), validating on %d"
        % (len(train_data), len(train_data.labels), len(valid_data))
    )
    ranker = train(
        train_data,
        valid_data,
        names,
        params=options.params,
        progress=say,
        metadata={
            "data_window": {"label_start": label_start, "holdout_start": holdout_start, "end": end},
            "candidate_recall": recall.report(),
            "impressions": shown.report(),
            "spaces": spaces,
            "options": {k: v for k, v in options.__dict__.items() if k != "params"},
        },
    )
    gate = None
    if options.holdout_days:
        gate_factors = _factors(log, holdout_start, options) if use_factors else None
        gate = judge(
            log,
            learned.label_points(log, since=holdout_start, until=end),
            ranker,
            gate_factors,
            baseline=baseline,
            limit=options.candidates,
            vectors=vectors,
        )
        say(
            "hold-out: learned nDCG@10 %.4f vs current %.4f over %d orders"
            % (gate["learned_ndcg@10"], gate["baseline_ndcg@10"], gate["queries"])
        )
    ranker.factors = _factors(log, end, options) if use_factors else None
    ranker.metadata["timings_s"] = {
        "features": round(feature_seconds, 1),
        "total": round(time.perf_counter() - started, 1),
    }
    if gate is not None:
        ranker.metadata["gate"] = gate
    return Fitted(ranker=ranker, gate=gate)


def judge(
    log, points, ranker: LearnedRanker, factors, *, baseline: Callable | None = None, limit: int = 200, vectors=None
) -> dict:
    """nDCG@10 of the learned order and of ``baseline`` on the same queries (paired difference and its SE)."""
    from ..evaluation.metrics import ndcg_at_k
    from ..ranking import learned

    baseline = baseline or (lambda candidates, history, features: learned.fusion_scores(candidates, history))
    differences, learned_values, baseline_values = [], [], []
    for point in points:
        candidates, history, signals = log.candidates_at(
            point.visitor, point.at, factors=factors, limit=limit, vectors=vectors
        )
        if not len(candidates):
            continue
        features = learned.feature_matrix(candidates, history, signals)
        ours = ranker.predict(
            learned.serving_matrix(features, ranker.features, learned.feature_names(candidates.spaces))
        )
        theirs = baseline(candidates, history, features)
        values = [ndcg_at_k(learned.ordered(candidates, scores).tolist(), point.items, 10) for scores in (ours, theirs)]
        learned_values.append(values[0])
        baseline_values.append(values[1])
        differences.append(values[0] - values[1])
    n = len(differences)
    se = float(np.std(differences, ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return {
        "queries": n,
        "learned_ndcg@10": round(float(np.mean(learned_values)), 6) if n else 0.0,
        "baseline_ndcg@10": round(float(np.mean(baseline_values)), 6) if n else 0.0,
        "difference_se": round(se, 6),
    }


class _ImpressionCount:
    """What the impression queries held: queries, those with a positive label, shown items per grade."""

    def __init__(self):
        self.queries = self.positive_queries = 0
        self.labels: dict[str, int] = {}

    def add(self, labels: np.ndarray) -> None:
        self.queries += 1
        self.positive_queries += int(len(labels) > 0 and labels.max() > 0)
        for grade in labels.tolist():
            key = "%g" % grade
            self.labels[key] = self.labels.get(key, 0) + 1

    def report(self) -> dict:
        return {"queries": self.queries, "queries_with_a_positive": self.positive_queries, "labels": self.labels}


class _CandidateRecall:
    """Share of the labelled items that reach the candidates, per source and in total."""

    def __init__(self):
        self.found: dict[str, int] = {}
        self.targets = 0

    def add(self, candidates, items: frozenset) -> None:
        self.targets += len(items)
        present = {int(item): i for i, item in enumerate(candidates.items)}
        hits = [present[item] for item in items if item in present]
        self.found["total"] = self.found.get("total", 0) + len(hits)
        for source in candidates.sources:
            self.found[source] = self.found.get(source, 0) + sum(
                1 for i in hits if not np.isnan(candidates.ranks[source][i])
            )

    def report(self) -> dict[str, float]:
        return {name: round(count / self.targets, 4) for name, count in self.found.items()} if self.targets else {}


def _has_implicit() -> bool:
    try:
        import implicit  # noqa: F401
    except ImportError:
        return False
    return True


def _factors(log, before: float, options: FitOptions):
    """The item model from the events before ``before``: ALS factors, kNN neighbours, repeat rates, basket table."""
    visitors, entries = log.visitor_item_counts(before)
    if not entries:
        return None
    factors = train_item_factors(
        len(visitors),
        log.item_ids,
        entries,
        factors=options.als_factors,
        regularization=options.als_regularization,
        alpha=options.als_alpha,
        seed=options.seed,
    )
    if options.neighbours:
        factors.neighbours, factors.similarities = item_neighbours(
            log, before, options.neighbours, basket_weight=options.knn_basket_weight
        )
    factors.repeat_rate, factors.buyers = repeat_rates(len(log.item_ids), entries)
    # the "bought together" table: "for you"'s basket source and features, and the basket service's partners
    add_basket_table(factors, log, before, options)
    return factors


def _baskets_before(log, before: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The baskets of ``log`` made before ``before`` as sparse coordinates: ``(basket positions, their lengths,
    one basket row per line, that line's item column)``, rows numbered 0.. in the baskets' order."""
    baskets = np.flatnonzero(log.basket_times < before)
    starts, ends = log.basket_indptr[baskets], log.basket_indptr[baskets + 1]
    lengths = ends - starts
    columns = log.basket_columns[
        np.repeat(starts, lengths) + (np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
    ]
    rows = np.repeat(np.arange(len(baskets)), lengths)
    return baskets, lengths, rows, columns


def item_neighbours(
    log, before: float, size: int, shrink: float = 5.0, basket_weight: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``size`` nearest items by cosine over the orders placed before ``before``.

    ``similarity(i, j) = sum over orders holding both of order size ** -basket_weight / (sqrt(orders holding
    i * orders holding j) + shrink)``: an order of 40 lines says less about any one pair than an order of 3
    (``basket_weight`` 0: every order counts 1), and the shrink term damps pairs seen once or twice. Returns
    (row positions, -1 padding; similarities), both ``(items, size)``, best first.
    """
    from scipy.sparse import csr_matrix

    items = len(log.item_ids)
    baskets, lengths, rows, columns = _baskets_before(log, before)
    matrix = csr_matrix((np.ones(len(columns), dtype=np.float64), (rows, columns)), shape=(len(baskets), items))
    weights = np.repeat(np.power(np.maximum(lengths, 1).astype(np.float64), -basket_weight), lengths)
    weighted = csr_matrix((weights, (rows, columns)), shape=(len(baskets), items))
    together = (matrix.T @ weighted).tocsr()
    held = np.asarray(matrix.sum(axis=0)).ravel()
    neighbours = np.full((items, size), -1, dtype=np.int32)
    similarities = np.zeros((items, size), dtype=np.float32)
    for row in range(items):
        start, end = together.indptr[row], together.indptr[row + 1]
        others, counts = together.indices[start:end], together.data[start:end].astype(np.float64)
        keep = others != row
        others, counts = others[keep], counts[keep]
        if not len(others):
            continue
        cosine = counts / (np.sqrt(held[row] * held[others]) + shrink)
        best = np.lexsort((others, -cosine))[:size]
        neighbours[row, : len(best)] = others[best]
        similarities[row, : len(best)] = cosine[best]
    return neighbours, similarities


def add_basket_table(factors, log, before: float, options: FitOptions) -> None:
    """Give ``factors`` (``ItemFactors``) the "bought together" table of ``options`` from the orders before
    ``before``; nothing when ``options.basket_neighbours`` is 0."""
    if options.basket_neighbours:
        factors.basket_indptr, factors.basket_neighbours, factors.basket_similarities = basket_table(
            log,
            before,
            options.basket_neighbours,
            max_pairs=options.basket_max_pairs,
            half_life_days=options.basket_half_life_days,
            shrink=options.basket_shrink,
            basket_weight=options.knn_basket_weight,
        )


def basket_table(
    log,
    before: float,
    size: int,
    *,
    max_pairs: int = 2_000_000,
    half_life_days: float = 120.0,
    shrink: float = 20.0,
    basket_weight: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's partners for "bought together" (``ranking.learned.basket_partners``), from the orders placed
    before ``before``: the kNN's size-weighted cosine (``item_neighbours``), each order also weighted by its age,
    ``0.5 ** (age in days / half_life_days)`` (this year's baskets say more about next month's than last year's),
    with a larger shrink::

        similarity(i, j) = sum over orders holding both of size ** -basket_weight * 0.5 ** (age / half life)
                           / (sqrt(orders holding i * orders holding j) + shrink)

    At most ``size`` partners per item, best first (ties by lower row), and at most ``max_pairs`` in all: when
    the items' lists would hold more, every list is cut at the largest length that fits. Only items with a
    partner take room. Returns CSR rows: ``indptr`` (int64, items + 1), partner row positions (int32) and
    similarities (float16, scaled so the largest is 1: the order within a list is what serving uses).
    """
    from scipy.sparse import csr_matrix

    items = len(log.item_ids)
    baskets, lengths, rows, columns = _baskets_before(log, before)
    weight = np.power(np.maximum(lengths, 1).astype(np.float64), -basket_weight)
    if half_life_days > 0:
        weight *= np.power(0.5, (before - log.basket_times[baskets]) / (half_life_days * 86400.0))
    matrix = csr_matrix((np.ones(len(columns), dtype=np.float64), (rows, columns)), shape=(len(baskets), items))
    weighted = csr_matrix((np.repeat(weight, lengths), (rows, columns)), shape=(len(baskets), items))
    pairs = (matrix.T @ weighted).tocoo()
    other = pairs.row != pairs.col  # an item is not its own partner
    together = csr_matrix((pairs.data[other], (pairs.row[other], pairs.col[other])), shape=(items, items))
    held = np.asarray(matrix.sum(axis=0)).ravel()
    counts = np.diff(together.indptr)
    limit = max(0, size)
    if np.minimum(counts, limit).sum() > max_pairs:  # the longest cut that fits, found by bisection
        low, high = 0, limit
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if np.minimum(counts, middle).sum() <= max_pairs else (low, middle - 1)
        limit = low
    kept = np.minimum(counts, limit)
    indptr = np.zeros(items + 1, dtype=np.int64)
    np.cumsum(kept, out=indptr[1:])
    partners = np.zeros(int(indptr[-1]), dtype=np.int32)
    similarities = np.zeros(int(indptr[-1]), dtype=np.float64)
    for row in np.flatnonzero(kept):
        start, end = together.indptr[row], together.indptr[row + 1]
        others = together.indices[start:end]
        cosine = together.data[start:end] / (np.sqrt(held[row] * held[others]) + shrink)
        best = np.lexsort((others, -cosine))[: kept[row]]
        partners[indptr[row] : indptr[row + 1]] = others[best]
        similarities[indptr[row] : indptr[row + 1]] = cosine[best]
    top = similarities.max() if len(similarities) else 1.0
    return indptr, partners, (similarities / (top or 1.0)).astype(np.float16)


def repeat_rates(items: int, entries) -> tuple[np.ndarray, np.ndarray]:
    """Per item column, from ``(visitor row, item column, orders holding it)`` entries: the share of its buyers
    who bought it in two or more orders (NaN: no buyer) and the number of buyers."""
    columns = np.fromiter((entry[1] for entry in entries), dtype=np.int64, count=len(entries))
    orders = np.fromiter((entry[2] for entry in entries), dtype=np.float64, count=len(entries))
    buyers = np.bincount(columns, minlength=items).astype(np.float64)
    again = np.bincount(columns, weights=(orders >= 2).astype(np.float64), minlength=items)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(buyers > 0, again / buyers, np.nan)
    return rate.astype(np.float32), buyers.astype(np.float32)


# ---------------------------------------------------------------- "similar items": its own model over its own stage


@dataclass
class SimilarOptions:
    """How ``fit_similar`` trains the "similar items" ranker (``ranking.item_candidates``)."""

    label_days: float = 180.0  # orders in this window (before the hold-out) give the training queries
    holdout_days: float = 0.0  # the latest orders, kept for the gate (0: no gate)
    valid_share: float = 0.15  # shoppers whose queries validate (early stopping)
    anchors_per_order: int = 5  # anchors sampled per order (wholesale orders hold dozens of lines)
    max_queries: int = 12_000  # training queries at most (a seeded sample)
    gate_queries: int = 3_000  # hold-out queries at most
    candidates: int = 200
    neighbours: int = 50  # the kNN source's neighbours per item
    knn_basket_weight: float = 1.0
    item_model_days: float = 30.0  # the kNN neighbours used for a query are retrained every this many days
    min_queries: int = 50
    params: dict | None = None
    seed: int = 0


def similar_neighbours(log, before: float, options: SimilarOptions) -> ItemFactors | None:
    """The kNN source's item model from the orders before ``before`` (no ALS: "similar" reads the neighbours)."""
    if not options.neighbours or not len(log.item_ids):
        return None
    factors = ItemFactors(log.item_ids, np.zeros((len(log.item_ids), 1), dtype=np.float32), 0.0, 1.0)
    factors.neighbours, factors.similarities = item_neighbours(
        log, before, options.neighbours, basket_weight=options.knn_basket_weight
    )
    return factors


def fit_similar(
    log,
    *,
    end: float,
    space_lists: Callable[[int], dict],
    spaces: Sequence[str],
    space_weights: dict,
    options: SimilarOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> Fitted:
    """Train the "similar items" ranker on an ``EventLog`` whose events end before ``end``.

    Queries: items of the orders of ``label_days`` before the hold-out (``item_candidates.similar_points``), each
    an anchor labelled by the rest of its order; candidates and features from the events before the order only
    (``item_candidates.query_rows``), the kNN neighbours retrained every ``item_model_days`` on the orders before
    each period. ``space_lists(anchor)``: {``space:<name>``: ranked ``(item, cosine)``} (content: no time).
    The gate (``holdout_days``) compares nDCG@10 with the spaces' fusion (``space_weights``) on the same
    candidates. The artefact's item factors carry the kNN neighbours trained on every order before ``end``.
    """
    from ..ranking import item_candidates as stage

    options = options or SimilarOptions()
    say = progress or (lambda message: None)
    started = time.perf_counter()
    holdout_start = end - options.holdout_days * 86400.0
    label_start = holdout_start - options.label_days * 86400.0
    points = stage.similar_points(
        log,
        since=label_start,
        until=holdout_start,
        per_basket=options.anchors_per_order,
        seed=options.seed,
        limit=options.max_queries,
    )
    if len(points) < options.min_queries:
        raise NotEnoughData(
            "Only %d anchor(s) in orders of two or more items in the %g training days; the similar-items ranker "
            "needs at least %d." % (len(points), options.label_days, options.min_queries)
        )
    quotas = stage.similar_quotas(spaces)
    sources = [source for source in quotas if source != "co_view"]  # co-views are not in the training log
    names = stage.feature_names(sources)
    say("similar items: %d training queries; building their features" % len(points))
    period = max(options.item_model_days, 1.0) * 86400.0
    item_models: dict[float, ItemFactors | None] = {}
    lists_of: dict[int, dict] = {}
    parts: dict[bool, list] = {True: [], False: []}
    recall = {"targets": 0, "found": 0}
    for i, point in enumerate(points, start=1):
        cut = label_start + np.floor((point.at - label_start) / period) * period
        if cut not in item_models:
            item_models[cut] = similar_neighbours(log, cut, options)
        if point.anchor not in lists_of:
            lists_of[point.anchor] = space_lists(point.anchor)
        features, labels, _ = stage.query_rows(
            log,
            point,
            names,
            factors=item_models[cut],
            space_lists=lists_of[point.anchor],
            quotas=quotas,
            limit=options.candidates,
        )
        parts[in_validation(point.visitor, options.valid_share, options.seed)].append((features, labels))
        recall["targets"] += len(point.targets)
        recall["found"] += int(labels.sum())
        if i % 2000 == 0:
            say("similar features: %d/%d queries" % (i, len(points)))
    train_data = RankingData.stack(parts[False], len(names))
    valid_data = RankingData.stack(parts[True], len(names))
    feature_seconds = time.perf_counter() - started
    say(
        "similar items: LightGBM LambdaRank on %d queries (%d rows), validating on %d"
        % (len(train_data), len(train_data.labels), len(valid_data))
    )
    ranker = train(
        train_data,
        valid_data,
        names,
        params=options.params,
        progress=say,
        metadata={
            "recommender": "similar",
            "data_window": {"label_start": label_start, "holdout_start": holdout_start, "end": end},
            "candidate_recall": {"total": round(recall["found"] / recall["targets"], 4) if recall["targets"] else 0},
            "spaces": list(spaces),
            "options": {k: v for k, v in options.__dict__.items() if k != "params"},
        },
    )
    gate = None
    if options.holdout_days:
        held = stage.similar_points(
            log,
            since=holdout_start,
            until=end,
            per_basket=options.anchors_per_order,
            seed=options.seed + 1,
            limit=options.gate_queries,
        )
        factors = similar_neighbours(log, holdout_start, options)
        gate = judge_similar(
            log,
            held,
            ranker,
            factors=factors,
            space_lists=lambda anchor: lists_of.get(anchor) or lists_of.setdefault(anchor, space_lists(anchor)),
            quotas=quotas,
            space_weights=space_weights,
            limit=options.candidates,
        )
        say(
            "similar items hold-out: learned nDCG@10 %.4f vs fusion %.4f over %d anchors"
            % (gate["learned_ndcg@10"], gate["baseline_ndcg@10"], gate["queries"])
        )
        ranker.metadata["gate"] = gate
    ranker.factors = similar_neighbours(log, end, options)
    ranker.metadata["timings_s"] = {
        "features": round(feature_seconds, 1),
        "total": round(time.perf_counter() - started, 1),
    }
    return Fitted(ranker=ranker, gate=gate)


def judge_similar(
    log, points, ranker: LearnedRanker, *, factors, space_lists, quotas, space_weights, limit: int = 200
) -> dict:
    """nDCG@10 of the learned order and of the spaces' fusion on the same candidates of the same anchors (paired
    difference and its SE); anchors whose candidates hold none of their targets count 0 for both."""
    from ..evaluation.metrics import ndcg_at_k
    from ..ranking import item_candidates as stage

    ours, theirs = [], []
    for point in points:
        features, labels, candidates = stage.query_rows(
            log,
            point,
            ranker.features,
            factors=factors,
            space_lists=space_lists(point.anchor),
            quotas=quotas,
            limit=limit,
        )
        if not len(candidates):
            continue
        targets = set(point.targets)
        ours.append(ndcg_at_k(stage.ordered(candidates, ranker.predict(features)), targets, 10))
        theirs.append(ndcg_at_k(stage.ordered(candidates, stage.fusion_scores(candidates, space_weights)), targets, 10))
    n = len(ours)
    differences = np.asarray(ours) - np.asarray(theirs)
    return {
        "queries": n,
        "learned_ndcg@10": round(float(np.mean(ours)), 6) if n else 0.0,
        "baseline_ndcg@10": round(float(np.mean(theirs)), 6) if n else 0.0,
        "difference_se": round(float(np.std(differences, ddof=1) / np.sqrt(n)), 6) if n > 1 else 0.0,
    }
