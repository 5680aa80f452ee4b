"""The learned "for you" in the offline evaluation: trained inside the run on the training events only.

``prepare`` trains a version exactly as ``manage.py ragrec_train_ranker`` does (``services.ranker.
train_ranker``), on the scratch database that holds the training events alone, and activates it
(there is no hold-out to gate on: the held-out baskets are the test). ``recommend`` is then the
``for_you`` service with ``RAGREC["RANKER"]`` "learned", the path a shop serves. ``candidate_recall``
and ``paired`` add what the report needs to judge it: how many held-out items reach the candidates,
per source, and the per-shopper difference against fusion with its standard error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from . import metrics

#: Orders of returning shoppers in this many days before the end of training are the training queries.
LABEL_DAYS = 180


def prepare(ctx, progress=None) -> dict:
    """Train and activate a learned ranker on the training events; what describes it. Once per run: the
    recommenders that serve it (``for_you_learned``, ``bought_together_learned``) share the version."""
    from ..services import ranker

    if "learned_ranker" in ctx.caches:
        return ctx.caches["learned_ranker"]
    started = time.perf_counter()
    outcome = ranker.train_ranker(label_days=LABEL_DAYS, holdout_days=0, force=True, progress=progress)
    metadata = outcome.version.metadata
    factors = ranker.active_model("for_you").factors
    pairs = len(factors.basket_neighbours) if factors is not None and factors.basket_neighbours is not None else 0
    ctx.caches["learned_ranker"] = {
        "version": str(outcome.version),
        "training_s": round(time.perf_counter() - started, 1),
        "model_bytes": len(outcome.version.model_text.encode()) + len(bytes(outcome.version.factors)),
        "best_iteration": metadata.get("best_iteration"),
        "validation": {k: v for k, v in metadata.get("validation", {}).items() if k != "curve_ndcg@10"},
        "training": metadata.get("training"),
        "training_candidate_recall": metadata.get("candidate_recall"),
        "feature_importance_gain": dict(list(metadata.get("feature_importance_gain", {}).items())[:15]),
        "label_days": LABEL_DAYS,
        "scoring_200_candidates_ms": _scoring_time(ranker.active_model("for_you")),
        "basket_table_pairs": pairs,
    }
    return ctx.caches["learned_ranker"]


def _scoring_time(model, rows: int = 200, repeats: int = 50) -> dict[str, float]:
    """Milliseconds to score ``rows`` candidates with the model (one thread), median and p95 of ``repeats`` calls."""
    features = np.random.default_rng(0).random((rows, len(model.features))).astype(np.float32)
    model.predict(features)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(features)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50": round(float(np.percentile(times, 50)), 2), "p95": round(float(np.percentile(times, 95)), 2)}


def recommend(ctx, visitor: str) -> list[str]:
    """The ``for_you`` service served by the learned ranker (``ctx.depth`` items, as every service here)."""
    from django.conf import settings
    from django.test.utils import override_settings

    from ..services import recommend as services
    from ..services.results import Visitor

    with override_settings(RAGREC={**getattr(settings, "RAGREC", {}), "RANKER": {"for_you": "learned"}}):
        return [r.item.key for r in services.for_you(_visitor(visitor, Visitor), k=ctx.depth)]


def recommend_basket(ctx, visitor: str, *, with_repeats: bool = False) -> list[str]:
    """``bought_together_for_basket`` on the visitor's basket (``ctx.basket``: the last training basket, or the
    cart) with ``RAGREC["RANKER"]`` "learned" for it (the active model's basket table), as a shop serves it;
    ``ctx.depth`` items. ``with_repeats``: the visitor's repeat purchases fused in (``visitor=``, the API's
    ``repeats=true``)."""
    from django.conf import settings
    from django.test.utils import override_settings

    from ..services import history
    from ..services.results import Visitor

    basket = ctx.basket(visitor)
    if not basket:
        return []
    shopper = _visitor(visitor, Visitor) if with_repeats else None
    with override_settings(RAGREC={**getattr(settings, "RAGREC", {}), "RANKER": {"bought_together": "learned"}}):
        return [r.item.key for r in history.bought_together_for_basket(basket, k=ctx.depth, visitor=shopper)]


def recommend_basket_with_repeats(ctx, visitor: str) -> list[str]:
    """``recommend_basket`` with the visitor's repeat purchases fused in."""
    return recommend_basket(ctx, visitor, with_repeats=True)


def candidate_recall(targets: Mapping[str, set[str]]) -> dict[str, float]:
    """Share of the held-out items that reach the learned ranker's candidates at the end of training, per
    source and in total. Read from the in-memory event log of the training events, which gives the
    candidates serving reads from the database (tests/services/test_ranker.py checks they agree)."""
    from ..models import Item
    from ..ranking.learned import EventLog
    from ..services import ranker
    from ..storage import ranking as store

    model = ranker.active_model("for_you")
    prices, categories = store.item_catalogue()
    log = EventLog.build(list(store.event_lines()), prices=prices, categories=categories)
    at = float(log.basket_times.max()) + 1.0 if len(log.basket_times) else time.time()
    keys = dict(Item.objects.values_list("id", "key"))
    # the spaces the model was trained with, as serving reads them
    vectors = ranker.training_vectors() if model is not None and model.metadata.get("spaces") else None
    found: dict[str, int] = {"total": 0}
    total = 0
    for visitor, items in targets.items():
        key = "u" + visitor[5:] if visitor.startswith("user:") else "s" + visitor  # the log's visitor keys
        candidates, _, _ = log.candidates_at(key, at, factors=model.factors if model else None, vectors=vectors)
        positions = {keys[int(item)]: i for i, item in enumerate(candidates.items)}
        total += len(items)
        hits = [positions[item] for item in items if item in positions]
        found["total"] += len(hits)
        for source in candidates.sources:
            found[source] = found.get(source, 0) + sum(1 for i in hits if not np.isnan(candidates.ranks[source][i]))
    return {name: round(count / total, 4) for name, count in found.items()} if total else {}


def _visitor(visitor: str, visitor_class):
    if visitor.startswith("user:"):
        return visitor_class(user_id=int(visitor[5:]))
    return visitor_class(session_key=visitor)


def paired(
    ours: Mapping[str, Sequence[str]],
    theirs: Mapping[str, Sequence[str]],
    targets: Mapping[str, set[str]],
    *,
    k: int = 10,
    exclude: Mapping[str, set[str]] | None = None,
) -> dict:
    """Per-shopper differences (ours - theirs) of recall@k and nDCG@k: mean, standard error, wins and losses."""
    result = {}
    for name, metric in (("recall", metrics.recall_at_k), ("ndcg", metrics.ndcg_at_k)):
        differences = []
        for visitor, relevant in targets.items():
            drop = exclude.get(visitor, set()) if exclude is not None else set()
            a = [item for item in ours.get(visitor, ()) if item not in drop]
            b = [item for item in theirs.get(visitor, ()) if item not in drop]
            differences.append(metric(a, relevant, k) - metric(b, relevant, k))
        values = np.asarray(differences)
        n = len(values)
        se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        result["%s@%d" % (name, k)] = {
            "mean_difference": round(float(values.mean()), 6) if n else 0.0,
            "se": round(se, 6),
            "wins": int((values > 0).sum()),
            "losses": int((values < 0).sum()),
        }
    return result
