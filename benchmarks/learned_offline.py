"""The learned "for you" offline on Online Retail: the evaluation's split and metrics, features from memory.

    python benchmarks/learned_offline.py --split valid|test [--users N] [--json out.json]

``ragrec_evaluate --recommenders for_you_learned`` serves every shopper through the database (about
half an hour on the shared 2-core machine). This script runs the same model on the same protocol
in memory, minutes instead, to compare candidate sources, features and parameters:

* ``--split test``: the evaluation's split (``evaluation.runner.temporal_split``: every shopper's
  last basket held out), the ranker trained on the training events by ``ml.ranker.fit`` exactly as
  ``evaluation.learned_ranker.prepare`` trains it (``LABEL_DAYS`` of label orders, no hold-out); the lists
  are composed as ``services.ranker.learned_for_you`` composes them (``depth`` = 40 items, repeats
  at most half) from the in-memory ``EventLog`` (tests/services/test_ranker.py checks the database
  gives the same candidates and features);
* ``--split valid``: the same split applied to the training events once more (every shopper's last
  *training* basket held out): the validation split inside the training period, for tuning. The test
  baskets are never read.

Scored like the evaluation (``runner.score_lists``; ``all`` and ``new``), with per-source candidate
recall (``all`` and new items only), training time and model size. Baselines on the same split:
``buy_again`` order (the repeat source alone) and ``cooc_last``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
os.environ.setdefault("DATABASE_URL", "postgres://offline@127.0.0.1:1/unused")  # nothing here reads a database

import django  # noqa: E402

django.setup()

from ragrec_django.evaluation import learned_ranker, runner  # noqa: E402
from ragrec_django.evaluation.learned_ranker import paired  # noqa: E402
from ragrec_django.ml import ranker as trainer  # noqa: E402
from ragrec_django.ranking import learned  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "online_retail"
CACHE = Path(os.environ.get("RAGREC_OFFLINE_CACHE", "/tmp/ragrec-learned-offline.pickle"))


def load():
    """The data set and its evaluation split (cached in a pickle between runs)."""
    if CACHE.exists():
        with CACHE.open("rb") as handle:
            return pickle.load(handle)
    dataset = runner.load_online_retail(DATA)
    split = runner.temporal_split(dataset.interactions)
    partial = CACHE.with_suffix(".%d" % os.getpid())
    with partial.open("wb") as handle:
        pickle.dump((dataset.products, split), handle)
    partial.replace(CACHE)  # whole or not at all: two runs may start together
    return dataset.products, split


def log_key(visitor: str) -> str:
    """The evaluation's visitor as the event log names it (``u<user id>`` or ``s<session>``)."""
    return "u" + visitor[5:] if visitor.startswith("user:") else "s" + visitor


def event_log(products, rows) -> tuple[learned.EventLog, dict[str, int], float]:
    """The in-memory log of ``rows`` as ``storage.ranking.event_lines`` would give it; item ids in catalogue order."""
    ids = {product.key: i + 1 for i, product in enumerate(products)}
    ordered = sorted(rows, key=lambda row: row.created_at)
    lines = [
        (
            log_key(runner.visitor_of(row)),
            ids[row.item],
            row.order_id,
            row.created_at.timestamp(),
            float(row.quantity),
            row.event == "purchase",
        )
        for row in ordered
        if row.item and row.event != "search"
    ]
    prices = {ids[p.key]: float(p.price) for p in products if p.price is not None}
    categories = {ids[p.key]: p.category for p in products if p.category}
    log = learned.EventLog.build(lines, prices=prices, categories=categories)
    return log, ids, max(line[3] for line in lines) + 1.0


def text_space(products) -> learned.ItemVectors:
    """The text space ``ragrec_evaluate`` encodes (MiniLM vectors of the product texts; item id i + 1 = row i),
    cached as ``similar_candidates.py`` caches it."""
    from similar_candidates import text_vectors

    vectors = text_vectors(products)
    return learned.ItemVectors({"text": (np.arange(1, len(vectors) + 1, dtype=np.int64), vectors)})


def served_list(log, model, visitor: str, at: float, depth: int, vectors=None) -> tuple[list[int], learned.Candidates]:
    """What ``learned_for_you`` returns for ``k = depth``: the composed list and its spares, cut at ``depth``."""
    candidates, history, signals = log.candidates_at(visitor, at, factors=model.factors, vectors=vectors)
    if not len(candidates):
        return [], candidates
    features = learned.feature_matrix(candidates, history, signals)
    scores = model.predict(learned.serving_matrix(features, model.features, learned.feature_names(candidates.spaces)))
    bought = set(history.items[history.purchases].tolist())
    chosen = learned.compose(candidates, scores, bought, depth)
    chosen += [p for p in learned.compose(candidates, scores, bought, depth * 2 + 10) if p not in set(chosen)]
    return [int(candidates.items[p]) for p in chosen[:depth]], candidates


def basket_lists(log, factors, basket: list[int], at: float, depth: int) -> dict[str, list[int]]:
    """ "Bought together" for the last training basket, never showing it: co-purchase counts (each item's latest
    orders, as ``history.bought_together_for_basket`` with the fusion ranker), the item model's basket table
    (``learned.basket_partners``, as it serves with ``RANKER`` "learned") and, for comparison, the same function
    on the model's kNN neighbours alone (what served before the basket table: ``basket_knn_neighbours``)."""
    have = set(basket)
    counts, _ = log.co_purchase_scores(basket, at)
    lists = {"basket_co_purchase": [item for item, _ in learned._best_of(log.item_ids, counts, have, depth)]}
    knn = learned.basket_partners(factors, basket, set(), depth) if factors is not None else []
    lists["basket_knn"] = [item for item, _, _ in knn]
    if factors is not None:
        without_table = dataclasses.replace(factors, basket_indptr=None, basket_neighbours=None)
        knn = learned.basket_partners(without_table, basket, set(), depth)
    lists["basket_knn_neighbours"] = [item for item, _, _ in knn]
    return lists


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("valid", "test"), default="valid")
    parser.add_argument("--users", type=int, help="Score a random sample of this many shoppers (default: all).")
    parser.add_argument("--json", help="Write the report here.")
    parser.add_argument("--save-model", help="Save the trained artefact in this folder.")
    parser.add_argument(
        "--load-model", help="Score with the artefact in this folder (saved by --save-model) instead of training."
    )
    parser.add_argument("--lists", help="Write every shopper's lists here (JSON), for paired comparisons across runs.")
    parser.add_argument(
        "--compare", help="Lists written by another run's --lists: paired differences of its lists against these."
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="A FitOptions field (e.g. als_alpha=5)."
    )
    parser.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="SOURCE=N",
        help="A candidate source's quota (learned.SOURCE_QUOTAS).",
    )
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="A LightGBM parameter.")
    parser.add_argument(
        "--vectors",
        action="store_true",
        help="The text space as a source and features (MiniLM vectors of the product texts, as ragrec_evaluate "
        "encodes them; cached in RAGREC_SIMILAR_VECTORS).",
    )
    parser.add_argument(
        "--basket-only",
        action="store_true",
        help='Only "bought together": build the item model\'s kNN neighbours and basket table as training builds '
        "them for the served model (no ALS, no LightGBM) and score the basket lists.",
    )
    args = parser.parse_args()
    options = trainer.FitOptions(label_days=learned_ranker.LABEL_DAYS, holdout_days=0)
    for setting in args.set:
        name, value = setting.split("=", 1)
        kind = type(getattr(options, name))
        setattr(options, name, value.lower() in ("1", "true", "yes") if kind is bool else kind(value))
    for setting in args.quota:
        name, value = setting.split("=", 1)
        learned.SOURCE_QUOTAS[name] = int(value)
    if args.param:
        options.params = {name: json.loads(value) for name, value in (p.split("=", 1) for p in args.param)}

    started = time.perf_counter()
    products, split = load()
    if args.split == "valid":
        split = runner.temporal_split(split.train)
    keys = [p.key for p in products]
    log, ids, end = event_log(products, split.train)
    key_of = {i: key for key, i in ids.items()}
    print("split %s: %d training lines, %d shoppers held out" % (args.split, len(split.train), len(split.test)))

    t = time.perf_counter()
    vectors = text_space(products) if args.vectors else None
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    if args.basket_only:
        factors = learned.ItemFactors(log.item_ids, np.zeros((len(log.item_ids), 1), dtype=np.float32), 0.0, 1.0)
        factors.neighbours, factors.similarities = trainer.item_neighbours(
            log, end, options.neighbours, basket_weight=options.knn_basket_weight
        )
        trainer.add_basket_table(factors, log, end, options)
        model = trainer.LearnedRanker(model_text="", features=[], params={}, factors=factors)
    elif args.load_model:
        model = trainer.LearnedRanker.load(args.load_model)
    else:
        model = trainer.fit(
            log,
            end=end,
            options=options,
            progress=lambda message: print("  " + message, flush=True),
            vectors=vectors,
        ).ranker
    training_s = time.perf_counter() - t
    size = len(model.model_text.encode()) + len(model.factors_bytes())
    table_bytes = sum(
        getattr(model.factors, name).nbytes
        for name in ("basket_indptr", "basket_neighbours", "basket_similarities")
        if model.factors is not None and getattr(model.factors, name) is not None
    )
    print("trained in %.1f s, %d bytes, best round %s" % (training_s, size, model.metadata.get("best_iteration")))
    if args.save_model:
        model.save(args.save_model)

    visitors = sorted(split.test)
    if args.users and args.users < len(visitors):
        visitors = sorted(random.Random(0).sample(visitors, args.users))
    depth = 40
    ctx = runner.build_context(split, keys, depth)
    lists: dict[str, dict[str, list[str]]] = {
        name: {}
        for name in (
            "learned",
            "fusion",
            "buy_again",
            "cooc_last",
            "basket_co_purchase",
            "basket_knn",
            "basket_knn_neighbours",
        )
    }
    sources = learned.source_order(vectors.spaces if vectors is not None else ())
    found = {"all": dict.fromkeys((*sources, "total"), 0), "new": dict.fromkeys((*sources, "total"), 0)}
    totals = {"all": 0, "new": 0}
    t = time.perf_counter()
    for visitor in visitors:
        history = split.history.get(visitor)  # none when every training basket shares the held-out one's time
        basket = [ids[item] for item in history[-1].items] if history else []
        for name, ranked in basket_lists(log, model.factors, basket, end, depth).items():
            lists[name][visitor] = [key_of[i] for i in ranked]
        lists["cooc_last"][visitor] = runner.rec_cooc_last(ctx, visitor)
        if args.basket_only:
            continue
        key = log_key(visitor)
        items, candidates = served_list(log, model, key, end, depth, vectors)
        lists["learned"][visitor] = [key_of[i] for i in items]
        repeat = candidates.ranks["repeat"]
        order = [i for i in np.argsort(repeat, kind="stable") if not np.isnan(repeat[i])]
        lists["buy_again"][visitor] = [key_of[int(candidates.items[i])] for i in order][:depth]
        # fusion's repeat and co-purchase lists on the same candidates (the service also fuses its embedding list)
        fused = learned.ordered(candidates, learned.fusion_scores(candidates, None)) if len(candidates) else []
        lists["fusion"][visitor] = [key_of[int(item)] for item in fused[:depth]]
        target = {ids[item] for item in split.test[visitor].items}
        bought = {ids[item] for item in split.bought(visitor)}
        position = {int(item): i for i, item in enumerate(candidates.items)}
        for variant, wanted in (("all", target), ("new", target - bought)):
            totals[variant] += len(wanted)
            hits = [position[item] for item in wanted if item in position]
            found[variant]["total"] += len(hits)
            for source in candidates.sources:
                found[variant][source] += sum(1 for i in hits if not np.isnan(candidates.ranks[source][i]))
    ranking_s = time.perf_counter() - t

    other = {}
    if args.compare:  # the same shoppers' lists from another run (same split and sample)
        other = {name: per_visitor for name, per_visitor in json.loads(Path(args.compare).read_text()).items()}
        other = {name: per_visitor for name, per_visitor in other.items() if name in lists}
    targets_all = {v: set(split.test[v].items) for v in visitors}
    bought = {v: split.bought(v) for v in visitors}
    targets_new = {v: items - bought[v] for v, items in targets_all.items() if items - bought[v]}
    report = {
        "split": args.split,
        "settings": {"set": args.set, "quota": dict(learned.SOURCE_QUOTAS), "param": args.param},
        "shoppers": len(visitors),
        "training_s": round(training_s, 1),
        "vectors_s": round(encode_s, 1),
        "spaces": model.metadata.get("spaces", []),
        "ranking_s": round(ranking_s, 1),
        "model_bytes": size,
        "basket_table_bytes": table_bytes,
        "basket_table_pairs": len(model.factors.basket_neighbours)
        if model.factors is not None and model.factors.basket_neighbours is not None
        else 0,
        "best_iteration": model.metadata.get("best_iteration"),
        "validation_ndcg@10": model.metadata.get("validation", {}).get("ndcg@10"),
        "training_candidate_recall": model.metadata.get("candidate_recall"),
        "candidate_recall": {v: {s: round(c / max(totals[v], 1), 4) for s, c in found[v].items()} for v in found},
        "feature_importance_gain": dict(list(model.metadata.get("feature_importance_gain", {}).items())[:20]),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "variants": {},
    }
    for variant, targets, exclude in (("all", targets_all, None), ("new", targets_new, bought)):
        scored = {}
        if args.basket_only:
            lists = {name: per_visitor for name, per_visitor in lists.items() if per_visitor}
        for name, per_visitor in lists.items():
            result = runner.score_lists(
                per_visitor, targets, k_max=20, catalogue_size=len(keys), vectors=None, exclude=exclude
            )
            scored[name] = {
                "recall@10": result["recall"][9],
                "recall@10_se": result["se"]["recall"][9],
                "ndcg@10": result["ndcg"][9],
                "ndcg@10_se": result["se"]["ndcg"][9],
            }
        if not args.basket_only:
            scored["paired_learned_vs_buy_again"] = paired(
                lists["learned"], lists["buy_again"], targets, exclude=exclude
            )
            scored["paired_learned_vs_fusion"] = paired(lists["learned"], lists["fusion"], targets, exclude=exclude)
        scored["paired_basket_knn_vs_co_purchase"] = paired(
            lists["basket_knn"], lists["basket_co_purchase"], targets, exclude=exclude
        )
        scored["paired_basket_knn_vs_knn_neighbours"] = paired(
            lists["basket_knn"], lists["basket_knn_neighbours"], targets, exclude=exclude
        )
        for name, per_visitor in other.items():
            scored["paired_%s_vs_compared" % name] = paired(lists[name], per_visitor, targets, exclude=exclude)
        report["variants"][variant] = {"shoppers": len(targets), "results": scored}
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps({k: v for k, v in report.items() if k != "feature_importance_gain"}, indent=1))
    print("top features:", list(report["feature_importance_gain"])[:12])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.lists:
        Path(args.lists).write_text(json.dumps(lists))


if __name__ == "__main__":
    main()
