"""Learned "for you" served from the database: end to end latency with live and materialised signals.

    python benchmarks/ranker_serving.py [--items 100000] [--events 1000000] [--shoppers 30000]
                                        [--requests 300] [--concurrency 1,2] [--label-days 1.5]
                                        [--db-name ragrec_bench_rankspeed] [--keep-db] [--reuse-model]
                                        [--profile 50] [--json out.json]

What it does:

1. creates a scratch database (``--db-name``, never ``ragrec_bench_serve``) on the configured server
   (the embedded PostgreSQL unless DATABASE_URL is set), migrates it and COPYs ``--items`` items and
   about ``--events`` events over a year: ``--shoppers`` anonymous shoppers (session keys), each with a
   few staples they re-buy and orders of 1 to 10 items drawn from their staples, their favourite
   categories and a Zipf-popular catalogue, plus views; ``--keep-db`` reuses a database of the same size;
2. trains and activates a learned ranker on it (``services.ranker.train_ranker``, the last
   ``--label-days`` of orders as training queries, no hold-out, promoted), which also
   materialises the shared signals (timed again on its own: ``refresh_signals``);
3. serves ``history.for_you(visitor, k=10)`` with ``RAGREC["RANKER"] = "learned"`` (the whole service
   call: visitor history, candidates, features, LightGBM, SHAP of the first 10, serving rules, item
   rows) for ``--requests`` random shoppers with orders, from 1 and 2 concurrent threads (each with its
   own database connection), first with the signals aggregated live from the event table per request
   (no snapshot: the path before materialisation), then read from the materialised tables; the same
   shoppers in the same order, after one warm-up pass;
4. times the model alone scoring 200 candidates (one thread, the process pinned to one core);
5. reports p50/p90/p99 per mode and concurrency, and the CPU time of each request (the process's at one
   client, so that threads working for the request count too, the request's thread's at more, plus its
   PostgreSQL backend's, from /proc: the work a request costs, which a loaded machine inflates far less
   than the wall clock), with ``--profile N`` where a materialised request's Python time goes (cProfile
   over N requests), the refresh time, the machine and its load average (a shared machine:
   latencies are upper bounds of an idle one), and drops the scratch database (``--keep-db`` keeps it,
   ``--reuse-model`` then serves its active model instead of training again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000, help="events to write, about (default 1,000,000)")
    parser.add_argument("--shoppers", type=int, default=30_000)
    parser.add_argument("--requests", type=int, default=300, help="measured requests per mode and concurrency")
    parser.add_argument("--concurrency", default="1,2", help="concurrent request threads to measure (default 1,2)")
    parser.add_argument("--label-days", type=float, default=1.5, help="training queries: orders of the last N days")
    parser.add_argument("--db-name", default="ragrec_bench_rankspeed", help="scratch database (dropped at the end)")
    parser.add_argument("--keep-db", action="store_true", help="keep the database (and reuse it next time)")
    parser.add_argument(
        "--reuse-model", action="store_true", help="serve the active model of a kept database instead of training one"
    )
    parser.add_argument(
        "--profile", type=int, default=0, help="cProfile this many materialised requests: the top functions"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the report to this JSON file")
    args = parser.parse_args(argv)
    if args.db_name == "ragrec_bench_serve":
        parser.error("ragrec_bench_serve belongs to benchmarks/serve_load.py; name another database")
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def log(message: str) -> None:
    print("[ranker_serving %s] %s" % (time.strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {
        "n": len(values),
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "mean_ms": round(statistics.mean(values) * 1000, 2),
    }


def load_items(args, connection) -> None:
    from django.utils import timezone

    from ragrec_django.models import Item

    rng = np.random.default_rng(args.seed)
    now = timezone.now()
    table = connection.ops.quote_name(Item._meta.db_table)
    columns = "key, title, category, price, in_stock, is_eligible, url, group_key, is_promoted, text, metadata, created_at, updated_at"
    prices = np.round(rng.lognormal(2.5, 0.8, args.items), 2)
    with connection.cursor() as cursor, cursor.copy("COPY %s (%s) FROM STDIN" % (table, columns)) as copy:
        for i in range(args.items):
            key = str(i + 1)
            created = now - timedelta(days=400)
            copy.write_row(
                (
                    key,
                    "Item %s" % key,
                    "c%d" % (i % 200),
                    "%.2f" % prices[i],
                    True,
                    True,
                    "/p/%s/" % key,
                    "",
                    False,
                    "item %s" % key,
                    "{}",
                    created,
                    created,
                )
            )


def load_events(args, connection) -> int:
    """Shoppers' orders and views over the last year, written with COPY; returns the number of events."""
    from ragrec_django.models import Item
    from ragrec_django.storage import interactions

    rng = np.random.default_rng(args.seed + 1)
    ids = np.asarray(sorted(Item.objects.values_list("id", flat=True)), dtype=np.int64)
    by_category = [ids[c::200] for c in range(200)]
    zipf = np.cumsum(1.0 / np.arange(1, len(ids) + 1) ** 0.9)
    zipf /= zipf[-1]
    popular_order = rng.permutation(len(ids))
    now = time.time()
    per_shopper = args.events / args.shoppers
    rows = []

    def emit(event, item, shopper, order, at):
        rows.append(
            (
                event,
                int(item),
                None,
                "shopper%d" % shopper,
                order,
                1,
                "",
                "",
                time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(at)),
            )
        )

    for shopper in range(args.shoppers):
        staples = rng.choice(ids, int(rng.integers(2, 8)), replace=False)
        favourites = rng.choice(200, 2, replace=False)
        orders = max(1, int(rng.poisson(per_shopper / 10.0)))  # an order is about 10 events
        start = now - float(rng.uniform(30, 365)) * 86400
        times = np.sort(rng.uniform(start, now - 600, orders))
        for number, at in enumerate(times):
            size = int(rng.integers(1, 11))
            draws = rng.random(size)
            basket = set()
            for draw in draws:
                if draw < 0.45:
                    basket.add(int(rng.choice(staples)))
                elif draw < 0.7:
                    basket.add(int(rng.choice(by_category[int(rng.choice(favourites))])))
                else:
                    rank = min(int(np.searchsorted(zipf, rng.random())), len(ids) - 1)
                    basket.add(int(ids[popular_order[rank]]))
            order = "o%d-%d" % (shopper, number)
            for item in basket:
                emit("view", item, shopper, "", at - 300)
                emit("purchase", item, shopper, order, at)
        if len(rows) >= 200_000:
            interactions.copy_interactions(rows)
            rows = []
            log("%d shoppers written" % (shopper + 1))
    interactions.copy_interactions(rows)
    from ragrec_django.models import Interaction

    return Interaction.objects.count()


def prepare(args, connection) -> dict:
    from ragrec_django.models import Interaction, Item

    figures = {}
    if Item.objects.count() != args.items or Interaction.objects.count() < args.events * 0.8:
        Interaction.objects.all().delete()
        Item.objects.all().delete()
        t0 = time.perf_counter()
        load_items(args, connection)
        figures["events"] = load_events(args, connection)
        figures["load_s"] = round(time.perf_counter() - t0, 1)
        log("loaded %d items and %d events in %.0f s" % (args.items, figures["events"], figures["load_s"]))
    else:
        figures["events"] = Interaction.objects.count()
    figures["purchases"] = Interaction.objects.filter(event="purchase").count()
    return figures


def train(args) -> dict:
    from ragrec_django.services import ranker

    if args.reuse_model and ranker.active_model("for_you") is not None:
        t0 = time.perf_counter()
        snapshot = ranker.refresh_signals()
        return {"train_s": None, "refresh_s": round(time.perf_counter() - t0, 1), "signal_rows": snapshot.items}
    t0 = time.perf_counter()
    outcome = ranker.train_ranker(
        label_days=args.label_days, holdout_days=0, min_queries=1, margin=-1.0, force=True, progress=log
    )
    trained = time.perf_counter() - t0
    t0 = time.perf_counter()
    snapshot = ranker.refresh_signals()
    return {
        "train_s": round(trained, 1),
        "version": str(outcome.version),
        "refresh_s": round(time.perf_counter() - t0, 1),
        "signal_rows": snapshot.items,
    }


def shoppers_with_orders(args) -> list[str]:
    from ragrec_django.models import Interaction

    keys = list(
        Interaction.objects.filter(event="purchase")
        .values_list("session_key", flat=True)
        .distinct()
        .order_by("session_key")
    )
    rng = np.random.default_rng(args.seed + 2)
    return [keys[i] for i in rng.choice(len(keys), args.requests, replace=False)]


def measure(keys: list[str], threads: int) -> dict:
    """The service call per shopper, ``threads`` at a time (each thread its own connection)."""
    from django.db import connection

    from ragrec_django.services import history
    from ragrec_django.services.results import Visitor

    # one thread: the process's CPU (the request's thread and any thread working for it, e.g. BLAS's);
    # more: the request's thread only (the process's clock would count the other requests too)
    clock = time.process_time if threads == 1 else time.thread_time
    latencies: list[float] = []
    cpu: list[float] = []
    server: list[float] = []
    fallbacks = []
    lock = threading.Lock()
    queue = list(keys)

    def worker():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                (backend,) = cursor.fetchone()
            while True:
                with lock:
                    if not queue:
                        return
                    key = queue.pop()
                t0, c0, s0 = time.perf_counter(), clock(), server_cpu(backend)
                result = history.for_you(Visitor(session_key=key), k=10)
                elapsed = time.perf_counter() - t0
                served = server_cpu(backend) - s0
                used = clock() - c0 + served
                with lock:
                    latencies.append(elapsed)
                    cpu.append(used)
                    server.append(served)
                    if not result.items or "learned" not in result.items[0].components:
                        fallbacks.append(key)
        finally:
            connection.close()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "threads": threads,
        **percentiles(latencies),
        "cpu_p50_ms": percentiles(cpu)["p50_ms"],
        "cpu_p99_ms": percentiles(cpu)["p99_ms"],
        "server_cpu_p50_ms": percentiles(server)["p50_ms"],
        "per_s": round(len(latencies) / wall, 1),
        "not_learned": len(fallbacks),
    }


def profile(keys: list[str], top: int = 15) -> dict:
    """Where a request spends its CPU (cProfile over ``keys``, one at a time, timed by this process's CPU
    clock, so that a busy machine's waits do not count): the ``top`` functions by own time, and the project's
    own functions by time with what they call; calls and milliseconds per request. The database server's
    work is not in it."""
    import cProfile
    import pstats

    from ragrec_django.services import history
    from ragrec_django.services.results import Visitor

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for key in keys:
        history.for_you(Visitor(session_key=key), k=10)
    profiler.disable()
    stats = pstats.Stats(profiler).stats

    def listed(entries) -> list[dict]:
        return [
            {
                "function": "%s:%d(%s)" % (Path(file).name, line, name),
                "calls_per_request": round(calls / len(keys), 2),
                "own_ms": round(own / len(keys) * 1000, 3),
                "cumulative_ms": round(cumulative / len(keys) * 1000, 3),
            }
            for (file, line, name), (_, calls, own, cumulative, _) in entries
        ]

    project = [entry for entry in stats.items() if str(ROOT / "ragrec_django") in entry[0][0]]
    return {
        "by_own_time": listed(sorted(stats.items(), key=lambda entry: -entry[1][2])[:top]),
        "project_by_cumulative_time": listed(sorted(project, key=lambda entry: -entry[1][3])[:top]),
    }


def server_cpu(pid: int) -> float:
    """CPU seconds PostgreSQL's backend ``pid`` has used, from /proc (the server runs here): the scheduler's
    nanoseconds on CPU where the kernel keeps them, else user + system in clock ticks (10 ms steps, coarse for
    a request of a few milliseconds)."""
    try:
        return int(Path("/proc/%d/schedstat" % pid).read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scoring(keys: list[str]) -> dict:
    """The model alone on 200 candidate rows (real features, tiled to 200), one thread on one core."""
    from ragrec_django.ranking import learned
    from ragrec_django.services import ranker
    from ragrec_django.services.results import Visitor

    model = ranker.active_model("for_you")
    now = time.time()
    rows = []
    for key in keys[:20]:
        candidates, history, signals = ranker.signals_for(
            Visitor(session_key=key), now, model.factors, source=ranker.signal_source(now)
        )
        rows.append(learned.feature_matrix(candidates, history, signals))
    features = np.concatenate(rows)
    blocks = [np.resize(features[i * 7 % len(features) :], (200, features.shape[1])) for i in range(20)]
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    try:
        for block in blocks:
            model.predict(block)
        times = []
        for _ in range(10):
            for block in blocks:
                t0 = time.perf_counter()
                model.predict(block)
                times.append(time.perf_counter() - t0)
        explain = []
        for block in blocks:
            t0 = time.perf_counter()
            model.top_features_of(block[: ranker.EXPLAINED_RESULTS])
            explain.append(time.perf_counter() - t0)
    finally:
        os.sched_setaffinity(0, affinity)
    return {"score_200": percentiles(times), "shap_10": percentiles(explain)}


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def run(args) -> dict:
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ.setdefault("RAGREC_CLIP_CHECKPOINT", "off")
    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from ragrec_django.models import RankerSignalSnapshot
    from ragrec_django.services import ranker

    connection.settings_dict["TEST"]["NAME"] = args.db_name
    original_name = connection.settings_dict["NAME"]
    log("scratch database %s" % args.db_name)
    connection.creation.create_test_db(verbosity=0, autoclobber=not args.keep_db, keepdb=args.keep_db, serialize=False)
    report = {"benchmark": "ranker_serving", "args": {k: v for k, v in vars(args).items() if k != "levels"}}
    report["machine_before"] = machine()
    try:
        with override_settings(RAGREC={**settings.RAGREC, "RANKER": "learned"}, DEBUG=False):
            report["data"] = prepare(args, connection)
            report["training"] = train(args)
            log("training: %s" % report["training"])
            keys = shoppers_with_orders(args)
            snapshot = RankerSignalSnapshot.objects.get()
            report["results"] = []
            for mode in ("live", "materialised"):
                if mode == "live":
                    RankerSignalSnapshot.objects.all().delete()
                else:
                    snapshot.pk = None
                    snapshot.save()
                ranker.forget_models()
                measure(keys[:30], 1)  # warm-up: model loaded, caches and buffers warm
                for threads in args.levels:
                    row = {"signals": mode, **measure(keys, threads), "load_average": machine()["load_average"]}
                    report["results"].append(row)
                    log(str(row))
                if mode == "materialised" and args.profile:
                    report["profile"] = profile(keys[: args.profile])
                    for entry in report["profile"]["project_by_cumulative_time"]:
                        log("profile: %s" % entry)
            report["scoring"] = scoring(keys)
            log("scoring: %s" % report["scoring"])
        report["machine_after"] = machine()
        return report
    finally:
        if args.keep_db:
            log("keeping scratch database %s (--keep-db)" % args.db_name)
            connection.settings_dict["NAME"] = original_name
        else:
            log("dropping scratch database %s" % args.db_name)
            connection.creation.destroy_test_db(original_name, verbosity=0)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
