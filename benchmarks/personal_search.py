"""Personalised search offline on Online Retail: simulated queries, plain keyword search against the same results
re-ordered for the shopper (``ranking.personal_search``), paired.

    python benchmarks/personal_search.py --fit-model DIR [--test-model DIR] [--fit-shoppers N] [--test-shoppers N]
        [--items 2] [--json out.json]

Online Retail has no search log, so queries are simulated: for a held-out purchased item, a query of one or two
content words of its description (chosen at random, seeded), the shopper's events before the held-out basket as
the visitor. Plain search is keyword-only, in memory (``ranking.personal_search.TitleIndex``: BM25 over the descriptions'
words, plurals folded; every word must match, else any word; ties by item id): the hybrid search's keyword retriever stands in for it,
because the semantic retrievers need the MiniLM and CLIP encoders and the product texts encoded. Its first
``CANDIDATES`` results, scored as the service's reciprocal rank fusion scores a single list (1 / (60 + rank)),
are the candidate stage; personalised search re-orders them with ``rerank`` exactly as the service does.

* **Fitting the blend** (training period only): the evaluation's split applied to the training events once more
  (every shopper's last *training* basket held out, as ``learned_offline.py --split valid``), queries from
  those baskets, histories before them, and the "for you" model of ``--fit-model`` (``learned_offline.py --split
  valid --save-model DIR``: trained on the events before those baskets). ``fit_blend`` learns the weights.
* **Testing**: the evaluation's split (every shopper's last basket held out), queries from the held-out
  baskets, histories from all training events, the "for you" model of ``--test-model`` (default: the fitting
  one; ``learned_offline.py --split test --save-model DIR`` trains one on all training events, as a shop's
  nightly retraining would, the blend being kept).

A non-personal baseline re-orders the same candidates by relevance and item popularity (log of the item's orders
in the last 30 days), fitted the same way: what of the gain any shopper would get.

Reported: recall@10 and MRR (over the 50 candidates; 0 when the item is not among them) of the purchased item,
plain and personalised, their paired difference with a standard error over shoppers (a shopper's queries
averaged first: they share a history), split by query length and by whether the shopper had bought the item
before; the blend's weights; the time personalisation adds per search (features, model, re-rank; in memory).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learned_offline  # noqa: E402  (sets up Django; the cached data set and split)

from ragrec_django.evaluation import runner  # noqa: E402
from ragrec_django.ml import ranker as trainer  # noqa: E402
from ragrec_django.ranking import learned  # noqa: E402
from ragrec_django.ranking import personal_search as blending  # noqa: E402
from ragrec_django.ranking.candidates import Candidate  # noqa: E402

RRF_K = 60.0


def features_of(log, model, visitor: str, at: float, head: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``personal_features`` of ``head`` for the visitor, as ``services.personal_search`` computes them, and each
    item's popularity (log of its orders in the last 30 days: the non-personal baseline's feature, also the blend's
    last column)."""
    personal = blending.visitor_features(
        log, visitor, at, head, lambda x: model.predict(learned.serving_matrix(x, model.features)), model.factors
    )
    return personal, personal[:, -1]


def queries(split, ids, titles, shoppers, items_per_shopper, seed):
    """``(shopper, target item id, query, words, bought before)`` for a sample of the split's shoppers."""
    rng = random.Random(seed)
    visitors = sorted(split.test)
    if shoppers and shoppers < len(visitors):
        visitors = sorted(rng.sample(visitors, shoppers))
    out = []
    for visitor in visitors:
        basket = sorted({ids[item] for item in split.test[visitor].items if item in ids})
        bought = {ids[item] for item in split.bought(visitor) if item in ids}
        for item in rng.sample(basket, min(items_per_shopper, len(basket))):
            text, n = blending.simulated_query(titles[item], rng)
            if text:
                out.append((visitor, item, text, n, item in bought))
    return out


def run(split, products, model, index, titles, ids, args, seed, blends=None):
    """Per query: without ``blends``, the fitting rows (personalised and baseline); with them, the target's rank in
    the plain order, re-ordered by the personal blend (as the service does) and by the popularity baseline."""
    log, _, end = learned_offline.event_log(products, split.train)
    rows, baseline_rows, results, timings = [], [], [], []
    chosen = queries(split, ids, titles, args.fit_shoppers if blends is None else args.test_shoppers, args.items, seed)
    for number, (visitor, target, text, n, before) in enumerate(chosen, start=1):
        head = index.search(text, blending.CANDIDATES)
        key = learned_offline.log_key(visitor)
        if blends is None:
            if target in head and len(head) > 1:
                personal, popularity = features_of(log, model, key, end, head)
                relevance = blending.relevance_features(len(head))
                rows.append((np.column_stack([relevance, personal]), head.index(target)))
                baseline_rows.append((np.column_stack([relevance, popularity]), head.index(target)))
        else:
            blend, baseline = blends
            plain = head.index(target) if target in head else None
            personal_rank = popular_rank = plain
            if len(head) > 1:
                started = time.perf_counter()
                personal, popularity = features_of(log, model, key, end, head)
                found = [Candidate(item, 1.0 / (RRF_K + r)) for r, item in enumerate(head, start=1)]
                order = [c.item_id for c in blending.rerank(found, personal, blend).candidates]
                timings.append(time.perf_counter() - started)
                personal_rank = order.index(target) if target in order else None
                relevance = blending.relevance_features(len(head))
                by_popularity = baseline.score(np.column_stack([relevance, popularity]))
                popular_order = [head[i] for i in np.lexsort((np.arange(len(head)), -by_popularity))]
                popular_rank = popular_order.index(target) if target in popular_order else None
            results.append(
                {
                    "visitor": visitor,
                    "words": n,
                    "before": before,
                    "plain": plain,
                    "personal": personal_rank,
                    "popularity": popular_rank,
                }
            )
        if number % 500 == 0:
            print("  %d/%d queries" % (number, len(chosen)), flush=True)
    return rows, baseline_rows, results, timings, len(chosen)


def metric(rank, name):
    if name == "recall@10":
        return float(rank is not None and rank < 10)
    return 1.0 / (rank + 1) if rank is not None else 0.0


def se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def summary(results) -> dict:
    """Means over shoppers (each shopper's queries averaged first) ± SE, plain and personalised, and paired."""
    per: dict[str, list] = defaultdict(list)
    for r in results:
        per[r["visitor"]].append(r)
    out = {"queries": len(results), "shoppers": len(per)}
    for name in ("recall@10", "mrr"):
        plain = np.asarray([np.mean([metric(r["plain"], name) for r in rs]) for rs in per.values()])
        personal = np.asarray([np.mean([metric(r["personal"], name) for r in rs]) for rs in per.values()])
        popularity = np.asarray([np.mean([metric(r["popularity"], name) for r in rs]) for rs in per.values()])
        difference = personal - plain
        against_popularity = personal - popularity
        out[name] = {
            "plain": round(float(plain.mean()), 4) if len(plain) else None,
            "plain_se": round(se(plain), 4),
            "personal": round(float(personal.mean()), 4) if len(plain) else None,
            "personal_se": round(se(personal), 4),
            "paired_difference": round(float(difference.mean()), 4) if len(plain) else None,
            "paired_se": round(se(difference), 4),
            "shoppers_better": int((difference > 0).sum()),
            "shoppers_worse": int((difference < 0).sum()),
            "popularity_rerank": round(float(popularity.mean()), 4) if len(plain) else None,
            "popularity_rerank_se": round(se(popularity), 4),
            "paired_personal_vs_popularity": round(float(against_popularity.mean()), 4) if len(plain) else None,
            "paired_personal_vs_popularity_se": round(se(against_popularity), 4),
        }
    out["in_candidates"] = round(float(np.mean([r["plain"] is not None for r in results])), 4) if results else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-model", required=True, help="A 'for you' artefact trained on the validation split.")
    parser.add_argument("--test-model", help="The 'for you' artefact scoring the test queries (default: --fit-model).")
    parser.add_argument("--fit-shoppers", type=int, default=1500)
    parser.add_argument("--test-shoppers", type=int, default=2000)
    parser.add_argument("--items", type=int, default=2, help="Queries per shopper (held-out items), at most.")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--json", help="Write the report here.")
    parser.add_argument("--save-blend", help="Write the fitted blend's JSON here.")
    args = parser.parse_args()

    started = time.perf_counter()
    products, split = learned_offline.load()
    ids = {product.key: i + 1 for i, product in enumerate(products)}
    titles = {ids[p.key]: p.title for p in products}
    index = blending.TitleIndex(titles)
    fit_model = trainer.LearnedRanker.load(args.fit_model)
    test_model = trainer.LearnedRanker.load(args.test_model) if args.test_model else fit_model

    print("fitting the blend on the validation split (training period only)", flush=True)
    valid = runner.temporal_split(split.train)
    t = time.perf_counter()
    rows, baseline_rows, _, _, asked = run(valid, products, fit_model, index, titles, ids, args, seed=1)
    blend = blending.fit_blend(rows, l2=args.l2)
    baseline = blending.fit_blend(baseline_rows, l2=args.l2, names=("relevance_log_rank", "popularity"))
    fit_s = time.perf_counter() - t
    blend.metadata.update({"fitted_on": "online-retail validation split", "for_you_model": fit_model.content_hash})
    print("  %d of %d queries had their item among the candidates; fitted in %.1f s" % (len(rows), asked, fit_s))
    if args.save_blend:
        Path(args.save_blend).write_text(blend.to_json())

    print("testing on the held-out baskets", flush=True)
    t = time.perf_counter()
    _, _, results, timings, _ = run(
        split, products, test_model, index, titles, ids, args, seed=2, blends=(blend, baseline)
    )
    test_s = time.perf_counter() - t
    ms = np.asarray(timings) * 1000
    report = {
        "plain_search": "keyword only, in memory: BM25 over the descriptions' words, plurals folded, all words "
        "else any word; first %d results" % blending.CANDIDATES,
        "fit": {"queries_asked": asked, "queries_used": len(rows), "seconds": round(fit_s, 1), "l2": args.l2},
        "blend_weights_standardised": dict(zip(blend.features, np.round(blend.weights, 4).tolist(), strict=True)),
        "blend_weights_per_unit": dict(
            zip(blend.features, np.round(blend.weights / blend.scale, 4).tolist(), strict=True)
        ),
        "popularity_baseline_weights_per_unit": dict(
            zip(baseline.features, np.round(baseline.weights / baseline.scale, 4).tolist(), strict=True)
        ),
        "for_you_models": {"fit": fit_model.content_hash[:12], "test": test_model.content_hash[:12]},
        "test": {
            "all": summary(results),
            "one_word": summary([r for r in results if r["words"] == 1]),
            "two_words": summary([r for r in results if r["words"] == 2]),
            "bought_before": summary([r for r in results if r["before"]]),
            "new_to_shopper": summary([r for r in results if not r["before"]]),
        },
        "added_ms_per_search": {
            "p50": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p95": round(float(np.percentile(ms, 95)), 2) if len(ms) else None,
            "mean": round(float(ms.mean()), 2) if len(ms) else None,
            "searches": len(ms),
        },
        "test_seconds": round(test_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
