"""Real product text inside a 1M-item catalogue: recall@10 and latency for real MiniLM vectors.

benchmarks/query.py's catalogue is synthetic (clustered random vectors). This adds the Online Retail products
(``products.csv`` of the shared data set: about 4,000 real descriptions) as items to a database that script kept,
encodes their descriptions with the text space's encoder (the bundled MiniLM) and writes the vectors into the active
text generation through ``storage.upsert_embeddings`` (into its HNSW index, as a shop's new products arrive). Then,
for real query strings (a product's description with one word left out, encoded as a search query is), it measures
recall@10 of ``storage.nearest`` with the plugin's ``ef_search`` against exact search over the whole generation, and
the latency; and for the real products, ``storage.nearest_to_item`` (what similar items asks) against exact, once per
``--small-category-rows`` value. The real products are one category, "real" (``--categories one``), or a category
per last word of their description, a shop's product types ("holder", "bag", "mug": ``--categories last-word``);
with the setting above a category's size, similar items rank the anchor's category exactly and a query the small
categories among the ``--query-categories`` whose centroids are nearest it (computed first, timed).

    python benchmarks/real_text_subset.py --db-name ragrec_bench_1m [--queries 200] [--json out.json]

The real items stay in the database (their keys start with ``real-``); a second run reuses them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
PRODUCTS = ROOT.parent / "shared" / "datasets" / "online_retail" / "products.csv"
K = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-name", default="ragrec_bench_1m", help="A database benchmarks/query.py kept.")
    parser.add_argument("--products", default=str(PRODUCTS), help="CSV with StockCode and Description columns.")
    parser.add_argument("--queries", type=int, default=200, help="Queries (and similar-items anchors) measured.")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument(
        "--small-category-rows",
        default="0,5000",
        help="RAGREC HNSW SMALL_CATEGORY_ROWS values measured in turn (similar items also rank the anchor's category, "
        "and a query the small ones among the QUERY_CATEGORIES nearest it, exactly when a category holds at most this "
        "many items; the real products are one category of about 4,000; 0: off).",
    )
    parser.add_argument("--query-categories", type=int, default=128, help="RAGREC HNSW QUERY_CATEGORIES.")
    parser.add_argument(
        "--categories",
        choices=("one", "last-word"),
        default="one",
        help='The real products\' categories: one ("real"), or one per last word of the description ("real-bag").',
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="Also write the figures to this file.")
    return parser.parse_args()


def read_products(path: str) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [(row["StockCode"].strip(), " ".join(row["Description"].split())) for row in csv.DictReader(handle)]
    seen, products = set(), []
    for code, text in rows:
        if code and len(text) >= 8 and code not in seen:
            seen.add(code)
            products.append((code, text.lower()))
    return products


def ensure_real_items(products, storage, Item) -> tuple[list[int], dict]:
    """The real products as items with their text vectors in the active text generation (written once)."""
    from ragrec_django import registry

    keys = ["real-%s" % code for code, _ in products]
    existing = dict(Item.objects.filter(key__in=keys).values_list("key", "id"))
    generation = storage.active_generation("text")
    figures = {}
    if len(existing) < len(keys):
        Item.objects.bulk_create(
            [
                Item(key=key, title=text, text=text, category="real")
                for key, (_, text) in zip(keys, products, strict=True)
            ],
            ignore_conflicts=True,
        )
        existing = dict(Item.objects.filter(key__in=keys).values_list("key", "id"))
    ids = [existing[key] for key in keys]
    have = set(storage.vectors_for_items("text", ids))  # only those without a vector are encoded and written
    todo = [(item_id, text) for item_id, (_, text) in zip(ids, products, strict=True) if item_id not in have]
    if todo:
        encoder = registry.get_space("text").encoder
        t0 = time.perf_counter()
        vectors = encoder.encode_texts([text for _, text in todo])
        figures["encode_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        for start in range(0, len(todo), 500):
            part = todo[start : start + 500]
            storage.upsert_embeddings(
                generation, [i for i, _ in part], vectors[start : start + 500], ["real"] * len(part)
            )
        figures["indexed_write_rows_per_s"] = round(len(todo) / (time.perf_counter() - t0), 1)
    figures["real_items"] = len(ids)
    return ids, figures


def assign_categories(products, ids, how: str, Item) -> dict:
    """Give the real products their categories (``--categories``); the number of categories and the largest."""
    from collections import Counter

    from django.db import connection

    names = ["real" if how == "one" else "real-" + text.split()[-1] for _, text in products]
    for name in sorted(set(names)):
        Item.objects.filter(id__in=[i for i, n in zip(ids, names, strict=True) if n == name]).update(category=name)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE %s" % Item._meta.db_table)  # the planner's estimates of the categories' sizes
    sizes = Counter(names)
    return {"real_categories": len(sizes), "largest_real_category": max(sizes.values())}


def measure(products, ids, args, storage) -> dict:
    from ragrec_django.services import query_vectors

    rng = np.random.default_rng(args.seed)
    chosen = rng.choice(len(products), size=min(args.queries, len(products)), replace=False)
    queries = []
    for index in chosen:
        words = products[index][1].split()
        if len(words) > 2:
            del words[int(rng.integers(len(words)))]
        queries.append(" ".join(words))
    vectors = [query_vectors.text_query_vector("text", q) for q in queries]
    stored = storage.vectors_for_items("text", [ids[n] for n in chosen])
    out = {}
    for label, run in (
        (
            "search query (a description less one word)",
            lambda n, exact: storage.nearest("text", vectors[n], K, exact=exact),
        ),
        (
            "similar items (a real product as anchor)",
            lambda n, exact: (
                storage.nearest("text", stored[ids[chosen[n]]], K, exact=True)
                if exact
                else storage.nearest_to_item("text", ids[chosen[n]], K)
            ),
        ),
    ):
        recalls, latencies, in_real = [], [], []
        for n in range(len(chosen)):
            truth = run(n, True)
            t0 = time.perf_counter()
            found = run(n, False)
            latencies.append(time.perf_counter() - t0)
            cutoff = truth[-1].distance + 1e-6
            expected = {t.item_id for t in truth}
            recalls.append(min(K, sum(1 for f in found if f.item_id in expected or f.distance <= cutoff)) / K)
            in_real.append(len(expected & set(ids)) / K)
        out[label] = {
            "queries": len(chosen),
            "recall_at_10": round(float(np.mean(recalls)), 4),
            "recall_min": round(float(np.min(recalls)), 2),
            "queries_below_0.5": int(sum(r < 0.5 for r in recalls)),
            "share_of_true_neighbours_that_are_real_items": round(float(np.mean(in_real)), 3),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
        }
        print(label, out[label], flush=True)
    return out


def main() -> int:
    args = parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    connection.settings_dict["NAME"] = args.db_name
    encoder = {
        "BACKEND": "ragrec_django.ml.text.TransformerTextEncoder",
        "OPTIONS": {"model": "sentence-transformers/all-MiniLM-L6-v2", "device": "cpu", "precision": args.precision},
    }
    ragrec = {
        **settings.RAGREC,
        "ENCODERS": {"minilm": encoder},
        "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text"}},
        "AUTO_ENCODE": False,
    }
    with override_settings(RAGREC=ragrec, DEBUG=False):
        from ragrec_django import conf, storage
        from ragrec_django.models import Item

        products = read_products(args.products)
        ids, figures = ensure_real_items(products, storage, Item)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM ragrec_django_embedding WHERE generation_id = %s",
                [storage.active_generation("text").pk],
            )
            figures["text_generation_rows"] = cursor.fetchone()[0]
        figures.update(assign_categories(products, ids, args.categories, Item))
        t0 = time.perf_counter()
        figures["centroid_categories"] = storage.refresh_centroids(storage.active_generation("text"))
        figures["centroids_refresh_s"] = round(time.perf_counter() - t0, 2)
        print(figures, flush=True)
        figures["results"] = {}
        hnsw = {**conf.DEFAULTS["HNSW"], **ragrec.get("HNSW", {}), "QUERY_CATEGORIES": args.query_categories}
        figures["query_categories"] = args.query_categories
        for rows in [int(value) for value in args.small_category_rows.split(",")]:
            print("SMALL_CATEGORY_ROWS %d" % rows, flush=True)
            with override_settings(RAGREC={**ragrec, "HNSW": {**hnsw, "SMALL_CATEGORY_ROWS": rows}}):
                figures["results"]["small_category_rows=%d" % rows] = measure(products, ids, args, storage)
        figures["ef_search"] = storage.ef_search_for(storage.ItemFilter(), generation=storage.active_generation("text"))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
