"""The learned "similar items" ranker offline on Online Retail: learned vs fusion vs co-purchase alone, paired.

    python benchmarks/similar_learned.py [--split valid|test] [--anchors N] [--json out.json]

The label and the queries are ``benchmarks/similar_candidates.py``'s: every eligible shopper's held-out basket
(``runner.temporal_split``; ``--split valid`` holds out the last *training* basket instead and never reads the
test baskets) gives one query per item of it with training events, the anchor; its targets are the basket's
other items (``new``: those the shopper never bought before). The stage (``ranking.item_candidates``) gathers up to
200 candidates per anchor from the text space (MiniLM vectors of the product texts, cached by
``similar_candidates.text_vectors``), the co-purchases of the anchor's latest 50 orders before the basket and the
kNN neighbours trained on every training order (``ml.ranker.similar_neighbours``, as the served artefact's).

The model is trained by ``ml.ranker.fit_similar`` exactly as ``services.item_candidates.train_similar_ranker``
trains it (defaults of ``SimilarOptions``: 180 days of label orders before the end of training, up to 5 anchors per
order, at most 12,000 queries, a validation split of 15 % of the shoppers for early stopping; no hold-out: the
held-out baskets are the test). Then, on the same candidates of the same anchors, three orders are scored:

* ``learned``: the model (what ``similar_items`` serves with ``RANKER`` {"similar": "learned"});
* ``fusion``: the text space's cosine (what ``similar_items`` serves today on this data: one space);
* ``co_purchase``: the co-purchase counts alone; ``knn``: the kNN neighbours alone.

recall@10 and nDCG@10, mean over anchors with standard errors, and the paired differences (learned - fusion,
learned - co_purchase) with two standard errors: treating every anchor as independent, and clustered by basket
(the anchors of one basket share their targets).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learned_offline import event_log, load  # noqa: E402  (sets up Django; the cached data set and split)
from similar_candidates import anchor_queries, text_vectors  # noqa: E402

from ragrec_django.evaluation import runner  # noqa: E402
from ragrec_django.evaluation.metrics import ndcg_at_k, recall_at_k  # noqa: E402
from ragrec_django.ml import ranker as trainer  # noqa: E402
from ragrec_django.ranking import item_candidates as stage  # noqa: E402

ORDERS = ("learned", "fusion", "co_purchase", "knn")


def space_lists_of(vectors: np.ndarray):
    depth = stage.SPACE_QUOTA * 2
    cache: dict[int, dict] = {}

    def lists(anchor: int) -> dict:
        if anchor not in cache:
            cache[anchor] = nearest(anchor)
        return cache[anchor]

    def nearest(anchor: int) -> dict:
        cosine = vectors @ vectors[anchor - 1]
        cosine[anchor - 1] = -np.inf
        best = np.argpartition(-cosine, depth)[:depth]
        best = best[np.lexsort((best, -cosine[best]))]
        return {"space:text": [(int(i) + 1, float(cosine[i])) for i in best]}

    return lists


def alone(candidates, source: str) -> list[int]:
    """The candidates one source lists, in its order."""
    ranks = candidates.ranks[source]
    listed = ~np.isnan(ranks)
    return candidates.items[listed][np.argsort(ranks[listed], kind="stable")].tolist()


def summary(values: np.ndarray) -> dict:
    n = len(values)
    return {
        "mean": round(float(values.mean()), 4) if n else None,
        "se": round(float(values.std(ddof=1) / np.sqrt(n)), 4) if n > 1 else None,
    }


def paired(a: np.ndarray, b: np.ndarray, clusters: np.ndarray) -> dict:
    diff = a - b
    n = len(diff)
    # clustered by basket: the SE of the mean of per-basket sums (a ratio estimator, equal weights per anchor)
    keys, index = np.unique(clusters, return_inverse=True)
    sums = np.bincount(index, weights=diff - diff.mean(), minlength=len(keys))
    clustered = float(np.sqrt((sums**2).sum() * len(keys) / max(len(keys) - 1, 1)) / n) if n else None
    return {
        "mean": round(float(diff.mean()), 4),
        "se": round(float(diff.std(ddof=1) / np.sqrt(n)), 4) if n > 1 else None,
        "se_by_basket": round(clustered, 4) if clustered is not None else None,
        "better": int((diff > 0).sum()),
        "worse": int((diff < 0).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--anchors", type=int, help="A random sample of this many test queries (default: all).")
    parser.add_argument("--max-queries", type=int, default=trainer.SimilarOptions.max_queries)
    parser.add_argument("--json", help="Write the report here.")
    args = parser.parse_args()
    started = time.perf_counter()
    products, split = load()
    if args.split == "valid":
        split = runner.temporal_split(split.train)
    log, ids, end = event_log(products, split.train)
    vectors = text_vectors(products)
    lists = space_lists_of(vectors)

    t, cpu = time.perf_counter(), time.process_time()
    options = trainer.SimilarOptions(max_queries=args.max_queries)
    fitted = trainer.fit_similar(
        log,
        end=end,
        space_lists=lists,
        spaces=["text"],
        space_weights={"text": 1.0},
        options=options,
        progress=lambda message: print("[train] %s" % message, file=sys.stderr, flush=True),
    )
    train_s, train_cpu = time.perf_counter() - t, time.process_time() - cpu
    model = fitted.ranker
    factors = model.factors  # trained on every training order, as served

    known = set(log.item_ids.tolist())
    queries = anchor_queries(split, ids, known, args.anchors)
    quotas = stage.similar_quotas(["text"])
    metrics = {variant: {name: {"recall": [], "ndcg": []} for name in ORDERS} for variant in ("all", "new")}
    baskets = {"all": [], "new": []}
    t = time.perf_counter()
    score_s = []
    for visitor, anchor, at, targets, before in queries:
        point = stage.SimilarPoint(visitor, anchor, at, targets)
        features, _, candidates = stage.query_rows(
            log, point, model.features, factors=factors, space_lists=lists(anchor), quotas=quotas
        )
        s = time.perf_counter()
        scores = model.predict(features)
        score_s.append(time.perf_counter() - s)
        ranked = {
            "learned": stage.ordered(candidates, scores),
            "fusion": stage.ordered(candidates, stage.fusion_scores(candidates, {"text": 1.0})),
            "co_purchase": alone(candidates, "co_purchase"),
            "knn": alone(candidates, "knn"),
        }
        for variant, wanted in (("all", targets), ("new", targets - before)):
            if not wanted:
                continue
            baskets[variant].append(visitor)
            for name, order in ranked.items():
                metrics[variant][name]["recall"].append(recall_at_k(order, wanted, 10))
                metrics[variant][name]["ndcg"].append(ndcg_at_k(order, wanted, 10))
    query_s = time.perf_counter() - t
    report = {
        "split": args.split,
        "queries": {variant: len(baskets[variant]) for variant in baskets},
        "baskets": {variant: len(set(baskets[variant])) for variant in baskets},
        "results@10": {},
        "paired@10": {},
        "model": {
            "features": model.features,
            "best_iteration": model.metadata.get("best_iteration"),
            "validation_ndcg@10": model.metadata.get("validation", {}).get("ndcg@10"),
            "training": model.metadata.get("training"),
            "candidate_recall_training": model.metadata.get("candidate_recall"),
            "feature_importance_gain": dict(list(model.metadata.get("feature_importance_gain", {}).items())[:10]),
            "model_text_bytes": len(model.model_text.encode()),
            "artefact_factors_bytes": len(model.factors_bytes()),
        },
        "seconds": {
            "training_wall": round(train_s, 1),
            "training_cpu": round(train_cpu, 1),
            "training_timings": model.metadata.get("timings_s"),
            "lightgbm": model.metadata.get("trained_in_s"),
            "queries": round(query_s, 1),
            "scoring_200_p50_ms": round(float(np.median(score_s)) * 1000, 3) if score_s else None,
            "total": round(time.perf_counter() - started, 1),
        },
    }
    for variant, by_name in metrics.items():
        clusters = np.asarray(baskets[variant])
        report["results@10"][variant] = {
            name: {metric: summary(np.asarray(values)) for metric, values in m.items()} for name, m in by_name.items()
        }
        report["paired@10"][variant] = {
            "learned-%s" % other: {
                metric: paired(np.asarray(by_name["learned"][metric]), np.asarray(by_name[other][metric]), clusters)
                for metric in ("recall", "ndcg")
            }
            for other in ("fusion", "co_purchase", "knn")
        }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
