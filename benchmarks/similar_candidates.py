"""Candidate recall of the "similar items" candidate stage, offline on Online Retail.

    python benchmarks/similar_candidates.py [--split valid|test] [--anchors N] [--json out.json]

The label: for an anchor item, the items bought with it later. Every eligible shopper's held-out basket
(``runner.temporal_split``, as the evaluation; ``--split valid`` holds out the last *training* basket instead) gives
one query per item of it that has training events: the anchor is that item, the targets the basket's other items
(``new``: those the shopper never bought before). The stage (``ranking.item_candidates.gather``, the function
``services.item_candidates.similar_candidates`` calls) gathers up to 200 candidates from:

* ``space:text``: the anchor's nearest neighbours by cosine over MiniLM vectors of the product texts (the text
  space ``ragrec_evaluate`` encodes; Online Retail has no pictures, so no image space);
* ``co_purchase``: orders holding the anchor among its latest 50 before the basket's time (``EventLog``, as
  ``storage.ranking.co_purchases`` reads them);
* ``knn``: the item model's size-weighted kNN neighbours (``ml.ranker.item_neighbours``, 50 per item) trained on
  every training event, as the served model's are;
* ``co_view``: none here (the data holds purchases only).

Reported per source: recall of the targets among the merged candidates (the source's rank known), recall of the
source's whole list, and recall@10 of its own first 10 (what "similar" showing that source alone would find);
``similar_items`` today serves the text space alone on this data. Micro averages (found / targets) and the mean
per anchor with its standard error.
"""

from __future__ import annotations

import argparse
import json
import os
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

from learned_offline import load  # noqa: E402  (the data set and its split, from the same cached pickle)

from ragrec_django.evaluation import runner  # noqa: E402
from ragrec_django.ml import ranker as trainer  # noqa: E402
from ragrec_django.ranking import item_candidates as stage  # noqa: E402
from ragrec_django.ranking import learned  # noqa: E402

VECTORS = Path(os.environ.get("RAGREC_SIMILAR_VECTORS", "/tmp/ragrec-similar-text-vectors.npy"))


def text_vectors(products) -> np.ndarray:
    """Unit MiniLM vectors of the product texts (``ProductRow.text``, as ``runner.encode_catalogue``), cached."""
    if VECTORS.exists():
        vectors = np.load(VECTORS)
        if len(vectors) == len(products):
            return vectors
    from ragrec_django.ml.text import TransformerTextEncoder

    encoder = TransformerTextEncoder(device="cpu")
    texts = [p.text for p in products]
    vectors = np.vstack([np.asarray(encoder.encode_texts(texts[i : i + 256])) for i in range(0, len(texts), 256)])
    vectors = (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    np.save(VECTORS, vectors)
    return vectors


def event_log(products, rows):
    ids = {product.key: i + 1 for i, product in enumerate(products)}
    lines = [
        (
            "u" + runner.visitor_of(row)[5:]
            if runner.visitor_of(row).startswith("user:")
            else "s" + runner.visitor_of(row),
            ids[row.item],
            row.order_id,
            row.created_at.timestamp(),
            float(row.quantity),
            row.event == "purchase",
        )
        for row in sorted(rows, key=lambda row: row.created_at)
        if row.item and row.event != "search"
    ]
    return learned.EventLog.build(lines), ids, max(line[3] for line in lines) + 1.0


class Tally:
    def __init__(self, names):
        self.found = dict.fromkeys(names, 0)
        self.targets = 0
        self.per_anchor: dict[str, list[float]] = {name: [] for name in names}

    def add(self, counts: dict[str, int], targets: int) -> None:
        self.targets += targets
        for name in self.found:
            self.found[name] += counts.get(name, 0)
            self.per_anchor[name].append(counts.get(name, 0) / targets)

    def report(self) -> dict:
        out = {}
        for name, hits in self.found.items():
            values = np.asarray(self.per_anchor[name])
            out[name] = {
                "micro": round(hits / self.targets, 4) if self.targets else None,
                "mean": round(float(values.mean()), 4) if len(values) else None,
                "se": round(float(values.std(ddof=1) / np.sqrt(len(values))), 4) if len(values) > 1 else None,
            }
        out["anchors"], out["targets"] = len(next(iter(self.per_anchor.values()), [])), self.targets
        return out


def anchor_queries(split, ids: dict, known: set, anchors: int | None) -> list[tuple]:
    """(shopper, anchor, time, targets, items bought before) for every item with training events of every held-out
    basket of two or more items: the targets are the basket's other items; ``anchors``: a seeded sample of that many."""
    queries = []
    for visitor in sorted(split.test):
        basket = split.test[visitor]
        items = sorted({ids[key] for key in basket.items if key in ids})
        before = {ids[key] for key in split.bought(visitor) if key in ids}
        for anchor in items:
            if anchor in known and len(items) > 1:
                queries.append((visitor, anchor, basket.at.timestamp(), frozenset(set(items) - {anchor}), before))
    if anchors and anchors < len(queries):
        queries = random.Random(0).sample(queries, anchors)
    return queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--anchors", type=int, help="A random sample of this many queries (default: all).")
    parser.add_argument("--json", help="Write the report here.")
    parser.add_argument(
        "--quota", action="append", default=[], metavar="SOURCE=N", help="A source's quota (e.g. co_purchase=100)."
    )
    args = parser.parse_args()
    started = time.perf_counter()
    products, split = load()
    if args.split == "valid":
        split = runner.temporal_split(split.train)
    log, ids, end = event_log(products, split.train)
    t = time.perf_counter()
    vectors = text_vectors(products)  # row i = item id i + 1
    encode_s = time.perf_counter() - t
    t = time.perf_counter()
    neighbours, similarities = trainer.item_neighbours(log, end, 50, basket_weight=1.0)
    factors = learned.ItemFactors(log.item_ids, np.zeros((len(log.item_ids), 1), dtype=np.float32), 0.0, 1.0)
    factors.neighbours, factors.similarities = neighbours, similarities
    knn_s = time.perf_counter() - t
    known = set(log.item_ids.tolist())

    queries = anchor_queries(split, ids, known, args.anchors)
    quotas = stage.similar_quotas(["text"])
    for setting in args.quota:
        name, value = setting.split("=", 1)
        quotas[name] = int(value)
    sources = list(quotas)
    names = [*sources, "total"]
    merged = {"all": Tally(names), "new": Tally(names)}
    whole = {"all": Tally(sources), "new": Tally(sources)}
    top10 = {"all": Tally(sources), "new": Tally(sources)}
    sizes = []
    t = time.perf_counter()
    for _, anchor, at, targets, before in queries:
        cosine = vectors @ vectors[anchor - 1]
        cosine[anchor - 1] = -np.inf
        best = np.argpartition(-cosine, stage.SPACE_QUOTA * 2)[: stage.SPACE_QUOTA * 2]
        best = best[np.lexsort((best, -cosine[best]))]
        counts, _ = log.co_purchase_scores([anchor], at)
        lists = {
            "space:text": [(int(i) + 1, float(cosine[i])) for i in best],
            "co_purchase": learned._best_of(log.item_ids, counts, {anchor}, stage.SIMILAR_CANDIDATES),
            "co_view": [],
            "knn": learned._best_of(
                factors.item_ids,
                factors.knn_scores(np.asarray([anchor]), np.ones(1)),
                {anchor},
                stage.SIMILAR_CANDIDATES,
            ),
        }
        candidates = stage.gather(lists, quotas, exclude={anchor})
        sizes.append(len(candidates))
        for variant, wanted in (("all", targets), ("new", targets - before)):
            if not wanted:
                continue
            merged[variant].add(candidates.found(wanted), len(wanted))
            whole[variant].add({s: len(wanted & {i for i, _ in lists[s]}) for s in sources}, len(wanted))
            top10[variant].add({s: len(wanted & {i for i, _ in lists[s][:10]}) for s in sources}, len(wanted))
    report = {
        "split": args.split,
        "queries": len(queries),
        "candidates_mean": round(float(np.mean(sizes)), 1) if sizes else 0,
        "quotas": quotas,
        "in_candidates": {variant: tally.report() for variant, tally in merged.items()},
        "whole_list": {variant: tally.report() for variant, tally in whole.items()},
        "recall@10_alone": {variant: tally.report() for variant, tally in top10.items()},
        "seconds": {
            "encode": round(encode_s, 1),
            "knn": round(knn_s, 1),
            "queries": round(time.perf_counter() - t, 1),
            "total": round(time.perf_counter() - started, 1),
        },
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
