"""The vector cache's reads (``storage.vector_cache``): a category's vectors read on a cache miss, and a whole
generation read when a web process starts (``warm``), by binary COPY against the rows fetched before.

    .venv/bin/python benchmarks/vector_cache_reads.py [--items 1000000] [--dimension 384] [--reads 50000]
        [--rounds 5] [--db-name vcache_bench] [--keep-db] [--json out.json]

A scratch database (``--db-name``) created and migrated like a shop's on the configured server (the embedded
PostgreSQL unless DATABASE_URL is set): ``--items`` synthetic items and one generation of the space "text" holding a
clustered unit vector per item, written by ``storage.upsert_embeddings`` (its HNSW index dropped first: reads by id
do not use it).
Then, per round, a random ``--reads`` of the items (a 5% category at 1M: 50,000), sorted by id as the filter
returns them, read both ways in alternating order:

* ``fetch``: ``SELECT item_id, halfvec_send(vector) ... item_id = ANY(%s)`` and ``fetchall`` (the read before);
* ``copy``: ``vector_cache.read_vectors``: ``COPY (SELECT item_id, vector ...) TO STDOUT (FORMAT BINARY)`` read by
  numpy in place;

both give the same ids and values (checked). Then the whole generation both ways, 10,000 rows at a time (``warm``).
The machine (``lscpu``) and load average are recorded; the scratch database is dropped unless ``--keep-db``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic_catalogue as synth  # noqa: E402
from partitions import load_items, log, machine  # noqa: E402

CHUNK = 10_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--reads", type=int, default=50_000, help="Vectors read per round (a category).")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db-name", default="vcache_bench")
    parser.add_argument("--keep-db", action="store_true", help="Keep the database; reuse it when it holds --items.")
    parser.add_argument("--json", default=None)
    return parser.parse_args()


def fetch_rows(generation, condition: str, params: list, connection) -> tuple[np.ndarray, np.ndarray]:
    """The read before binary COPY: rows of ``(item_id, halfvec_send(vector))`` fetched and joined."""
    from ragrec_django.models import Embedding

    sql = "SELECT item_id, halfvec_send(vector) FROM %s WHERE generation_id = %%s AND %s" % (
        connection.ops.quote_name(Embedding._meta.db_table),
        condition,
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [generation.pk, *params])
        rows = cursor.fetchall()
    dimension = int(generation.dimension)
    ids = np.fromiter((item_id for item_id, _ in rows), dtype=np.int64, count=len(rows))
    packed = np.frombuffer(b"".join(bytes(data) for _, data in rows), dtype=">f2").reshape(len(rows), dimension + 2)
    return ids, packed[:, 2:].astype(np.float16)


def load(args, connection) -> object:
    """The generation (made and filled unless a kept database already holds it)."""
    from ragrec_django import storage
    from ragrec_django.models import Embedding, Item, SpaceGeneration
    from ragrec_django.registry import SpaceConfig

    existing = SpaceGeneration.objects.filter(space="text").first()
    if existing is not None and Embedding.objects.filter(generation=existing).count() == args.items:
        log("reusing %d vectors in %s" % (args.items, args.db_name))
        return existing
    Item.objects.all().delete()
    catalogue = synth.make_catalogue(args.items, seed=0)
    started = time.perf_counter()
    item_ids = load_items(catalogue, connection)
    log("items: %d in %.1f s" % (len(item_ids), time.perf_counter() - started))
    vectors = synth.clustered_vectors(catalogue, args.dimension, seed=1)
    space = SpaceConfig(name="text", encoder_alias="minilm", modality="text")
    generation = storage.write_generation(space, version="bench-v1", dimension=args.dimension)
    with connection.cursor() as cursor:  # reads by id do not use the HNSW index; writes without it are ~20x faster
        cursor.execute("DROP INDEX IF EXISTS %s" % connection.ops.quote_name(generation.index_name))
    started = time.perf_counter()
    for start in range(0, len(item_ids), 20_000):
        chunk = item_ids[start : start + 20_000]
        storage.upsert_embeddings(generation, chunk, vectors[start : start + len(chunk)], ["bench"] * len(chunk))
    log("vectors: %d in %.1f s" % (len(item_ids), time.perf_counter() - started))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(storage.generation_partition(generation)))
    return generation


def same(a, b) -> bool:
    order_a, order_b = np.argsort(a[0]), np.argsort(b[0])
    return bool((a[0][order_a] == b[0][order_b]).all() and (a[1][order_a] == b[1][order_b]).all())


def category_reads(generation, args, connection) -> dict:
    from ragrec_django.models import Embedding
    from ragrec_django.storage import vector_cache

    all_ids = np.array(
        sorted(Embedding.objects.filter(generation=generation).values_list("item_id", flat=True)), dtype=np.int64
    )
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"fetch": [], "copy": []}
    for round_number in range(args.rounds + 1):  # the first round warms the caches and is not counted
        wanted = [int(i) for i in np.sort(rng.choice(all_ids, args.reads, replace=False))]
        ways = {
            "fetch": lambda: fetch_rows(generation, "item_id = ANY(%s)", [wanted], connection),
            "copy": lambda: vector_cache.read_vectors(generation, wanted, connection.alias),
        }
        results = {}
        for name in ("fetch", "copy") if round_number % 2 else ("copy", "fetch"):
            started = time.perf_counter()
            results[name] = ways[name]()
            if round_number:
                times[name].append(time.perf_counter() - started)
        assert len(results["copy"][0]) == args.reads and same(results["fetch"], results["copy"]), "the reads differ"
    return {
        name: {
            "n": len(values),
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "all_ms": [round(v * 1000, 1) for v in values],
        }
        for name, values in times.items()
    }


def whole_generation(generation, connection) -> dict:
    from ragrec_django.storage import vector_cache

    figures = {}
    for name in ("fetch", "copy", "fetch", "copy"):
        started, after, rows = time.perf_counter(), 0, 0
        while True:
            if name == "fetch":
                ids, _ = fetch_rows(generation, "item_id > %s ORDER BY item_id LIMIT %s", [after, CHUNK], connection)
            else:
                ids, _ = vector_cache._copy_vectors(
                    generation, "item_id > %d ORDER BY item_id LIMIT %d" % (after, CHUNK), connection.alias
                )
            rows += len(ids)
            if len(ids) < CHUNK:
                break
            after = int(ids[-1])
        figures.setdefault(name, []).append({"rows": rows, "s": round(time.perf_counter() - started, 2)})
    return figures


def main() -> int:
    args = parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.db import connection

    original_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = args.db_name
    log("scratch database %s" % args.db_name)
    connection.creation.create_test_db(verbosity=0, autoclobber=not args.keep_db, keepdb=args.keep_db)
    report = {"args": vars(args), "machine": machine(), "load_average_start": list(os.getloadavg())}
    try:
        generation = load(args, connection)
        report["category_reads"] = category_reads(generation, args, connection)
        log("category of %d: %s" % (args.reads, {k: v["p50_ms"] for k, v in report["category_reads"].items()}))
        report["whole_generation"] = whole_generation(generation, connection)
        log("whole generation: %s" % report["whole_generation"])
    finally:
        report["load_average_end"] = list(os.getloadavg())
        if not args.keep_db:
            connection.creation.destroy_test_db(original_name, verbosity=0)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
