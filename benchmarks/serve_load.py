"""Serving under concurrency: closed-loop HTTP clients against the demo's gunicorn at 1, 4, 16 and 64 connections.

    python benchmarks/serve_load.py [--items 100000] [--seconds 60] [--clients 1,4,16,64]
                                    [--cases similar,search,for-you] [--busy] [--precision fp32|bf16]
                                    [--image-model vit-b-32|lit] [--query-threads 1|default]
                                    [--workers N] [--worker-class gthread] [--max-active N] [--max-waiting N] [--server gunicorn|runserver]
                                    [--preload on|off] [--exact-cache-rows N]
                                    [--db-name ragrec_bench_serve] [--keep-db] [--json out.json]

What it does:

1. creates a scratch database (``--db-name``) on the configured server (the embedded PostgreSQL
   unless DATABASE_URL is set) and loads the catalogue of ``benchmarks/query.py`` into it: ``--items``
   synthetic items with text, clustered 384-d "text" and 512-d "image" vectors (256-d with
   ``--image-model lit``) and their HNSW indexes (``query.load_items``/``query.load_space``); plus
   ``--shoppers`` signed-in shoppers with a month of views, baskets and orders and a session each,
   for "for you". ``--keep-db`` keeps the database and reuses a catalogue of the same size;
2. serves it with gunicorn exactly as ``./dev demo`` does (``shop_demo/run_demo.server_command``:
   ``shop_demo/gunicorn.conf.py``, ``shop_demo.wsgi``) on a free port of 127.0.0.1, with the demo's
   settings plus the benchmark's encoders (``serve_load_settings.py``: the real bundled MiniLM and a
   CLIP ViT-B-32 text tower with random weights, the same cost as trained ones, on the CPU in
   ``--precision``), ``DEBUG`` off and API throttling off (``--server runserver``: Django's development
   server instead, as the demo served before, for comparison);
3. with ``--busy``, starts an unrelated CPU-bound process (a Python busy loop) pinned to one core for
   the whole measurement, as another program on the machine would be;
4. for each case and each number of clients: a short warm-up, then ``--seconds`` of closed-loop
   clients (each sends its next request as soon as the previous one is answered, over a keep-alive
   connection; after a 503 it waits ``Retry-After``) against
   * ``similar``: ``GET /api/recommend/items/<key>/similar/`` for random eligible items;
   * ``search``: ``GET /api/recommend/search/?q=`` with a query never sent before (distinct queries
     made from catalogue words: every one is encoded, no query cache hit);
   * ``for-you``: ``GET /api/recommend/for-you/`` as a random signed-in shopper (session cookie);
5. reports per case and number of clients: answers per second (2xx), latency p50/p90/p99/max of the
   2xx answers (from sending a request to its last byte), 503s (refused by the server's admission
   limit, with their own p50), errors by kind (no answer within 60 s, other 5xx, 4xx), the load
   generator's own CPU, the machine's load average, and how many of the connections each server worker held
   half-way through (``connections_per_worker``; the demo's ``BalancedThreadWorker`` moves surplus connections to
   a quieter worker, gunicorn's own ``gthread`` (``--worker-class gthread``) keeps each with the worker that
   accepted it).

Everything listens on and connects to 127.0.0.1 only. The scratch database is dropped at the end
(unless ``--keep-db``), and every process started is stopped, also after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

import query  # noqa: E402  (the catalogue builder of the query benchmark)
import synthetic_catalogue as synth  # noqa: E402
from private_servers import ProcessGroup, free_port  # noqa: E402

CASES = ("similar", "search", "for-you")
CLIENT_TIMEOUT_S = 60
K = 10


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size (default 100000)")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per case and level (default 60)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before each level (default 3)")
    parser.add_argument("--clients", default="1,4,16,64", help="concurrent connections per level (default 1,4,16,64)")
    parser.add_argument("--cases", default=",".join(CASES), help="cases to run (default: %s)" % ",".join(CASES))
    parser.add_argument("--busy", action="store_true", help="run an unrelated CPU-bound process pinned to one core")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="query encoders' precision")
    parser.add_argument(
        "--image-model",
        default="vit-b-32",
        choices=("vit-b-32", "lit"),
        help="the image space's encoder (see benchmarks/query.py)",
    )
    parser.add_argument(
        "--query-threads",
        default="1",
        help='RAGREC["QUERY_THREADS"] of the web processes; "default": torch\'s own (one per core)',
    )
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: the demo's, per core)")
    parser.add_argument(
        "--worker-class",
        default=None,
        help="gunicorn worker class instead of the demo's BalancedThreadWorker, e.g. gthread (for comparison)",
    )
    parser.add_argument("--max-active", type=int, default=None, help="SHOP_DEMO_MAX_ACTIVE (default: the demo's, 1)")
    parser.add_argument("--max-waiting", type=int, default=None, help="SHOP_DEMO_MAX_WAITING (default: the demo's, 16)")
    parser.add_argument(
        "--server",
        default="gunicorn",
        choices=("gunicorn", "runserver"),
        help="gunicorn as ./dev demo serves (default), or Django's runserver, for comparison",
    )
    parser.add_argument(
        "--preload",
        default="on",
        choices=("on", "off"),
        help="SHOP_DEMO_PRELOAD: the master loads the application and fills the vector cache before forking the "
        "workers, which share it (on, the demo's), or each worker loads and fills its own (off)",
    )
    parser.add_argument(
        "--exact-cache-rows", type=int, default=None, help="RAGREC HNSW EXACT_CACHE_ROWS (default: the plugin's)"
    )
    parser.add_argument("--shoppers", type=int, default=500, help="signed-in shoppers with a history (default 500)")
    parser.add_argument("--db-name", default="ragrec_bench_serve", help="scratch database (dropped at the end)")
    parser.add_argument("--keep-db", action="store_true", help="keep the scratch database and reuse its catalogue")
    parser.add_argument("--write-batch", type=int, default=2000, help="rows per upsert while loading")
    parser.add_argument("--maintenance-work-mem", default=None, help="for the HNSW builds, e.g. 1GB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every figure and the machine description to this file")
    args = parser.parse_args(argv)
    args.client_levels = [int(n) for n in args.clients.split(",") if n.strip()]
    args.case_list = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.case_list) - set(CASES)
    if unknown or not args.case_list or not args.client_levels or min(args.client_levels) < 1:
        parser.error("--cases takes %s; --clients positive numbers" % ", ".join(CASES))
    return args


def log(message: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


# ---------------------------------------------------------------- the database


def encoders_settings(args) -> dict:
    """The RAGREC keys both this process (loading) and the web server use."""
    encoders = {
        "minilm": {
            "BACKEND": "ragrec_django.ml.text.TransformerTextEncoder",
            "OPTIONS": {
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "device": "cpu",
                "precision": args.precision,
            },
        },
        "clip": query.image_encoder(args),  # sets query.SPACES["image"] to the model's dimension
    }
    spaces = {"text": {"ENCODER": "minilm", "MODALITY": "text"}, "image": {"ENCODER": "clip", "MODALITY": "image"}}
    query_threads = None if args.query_threads == "default" else int(args.query_threads)
    hnsw = {"EXACT_CACHE_ROWS": args.exact_cache_rows} if args.exact_cache_rows is not None else {}
    return {
        **({"HNSW": hnsw} if hnsw else {}),
        "ENCODERS": encoders,
        "SPACES": spaces,
        "AUTO_ENCODE": False,
        "QUERY_THREADS": query_threads,
        "API_THROTTLE_RATES": {"ragrec": None, "ragrec_photo": None, "ragrec_events": None},
    }


def load_catalogue(args, catalogue, connection) -> dict:
    """Items, vectors and indexes (query.py's loader), unless a kept database already holds this catalogue."""
    from ragrec_django import storage
    from ragrec_django.models import Item, SpaceGeneration

    if args.keep_db and query.loaded_spaces(connection) == (catalogue.n, set(query.SPACES)):
        log("reusing the catalogue of %d items in the kept database %s" % (catalogue.n, args.db_name))
        return {"reused": True}
    for generation in SpaceGeneration.objects.all():
        storage.drop_generation(generation)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE %s CASCADE" % connection.ops.quote_name(Item._meta.db_table))
    t0 = time.perf_counter()
    figures = query.load_items(catalogue, connection, Item)
    ids_by_key = dict(Item.objects.values_list("key", "id"))
    item_ids = [ids_by_key[key] for key in catalogue.keys()]
    for name, dim in query.SPACES.items():
        vectors = synth.clustered_vectors(catalogue, dim, seed=args.seed + 100 + dim)
        figures[name] = query.load_space(name, vectors, item_ids, args, connection, [])
        log("%s space loaded: %s" % (name, figures[name]))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(Item._meta.db_table))
    figures["total_s"] = round(time.perf_counter() - t0, 1)
    return figures


def load_shoppers(args, catalogue) -> list[str]:
    """Signed-in shoppers with a history (views, baskets, orders over a month); returns their session keys."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    users = query.create_shoppers(catalogue, args.shoppers, args.seed)
    Session.objects.all().delete()  # the scratch database's sessions are all this benchmark's
    keys = []
    for user in users:
        session = SessionStore()
        session.update(
            {
                SESSION_KEY: str(user.pk),
                BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                HASH_SESSION_KEY: user.get_session_auth_hash(),
            }
        )
        session.create()
        keys.append(session.session_key)
    return keys


def database_url(settings_dict: dict, name: str) -> str:
    """A libpq URL of database ``name`` on the server of ``settings_dict`` (a Unix socket folder as ?host=)."""
    from urllib.parse import quote

    user = quote(settings_dict.get("USER") or "postgres")
    password = ":" + quote(settings_dict["PASSWORD"]) if settings_dict.get("PASSWORD") else ""
    host, port = settings_dict.get("HOST") or "", settings_dict.get("PORT") or ""
    if host.startswith("/"):
        return "postgres://%s%s@/%s?host=%s%s" % (user, password, name, host, "&port=%s" % port if port else "")
    return "postgres://%s%s@%s%s/%s" % (user, password, host or "127.0.0.1", ":%s" % port if port else "", name)


# ---------------------------------------------------------------- the server


def start_server(args, processes: ProcessGroup, url: str, ragrec: dict) -> tuple[int, subprocess.Popen]:
    from shop_demo import run_demo

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SHOP_DEMO_", "RAGREC_CLIP_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="serve_load_settings",
        PYTHONPATH=os.pathsep.join([str(BENCHMARKS), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        DATABASE_URL=url,
        RAGREC_CLIP_CHECKPOINT="off",
        SERVE_LOAD_RAGREC=json.dumps(ragrec),
        PYTHONUNBUFFERED="1",
    )
    env["SHOP_DEMO_PRELOAD"] = "1" if args.preload == "on" else "0"
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    if args.max_active:
        env["SHOP_DEMO_MAX_ACTIVE"] = str(args.max_active)
    if args.max_waiting is not None:
        env["SHOP_DEMO_MAX_WAITING"] = str(args.max_waiting)
    if args.server == "runserver":
        command = [sys.executable, "manage.py", "runserver", "127.0.0.1:%d" % port, "--noreload", "--skip-checks"]
    else:
        command = run_demo.server_command(port)
        if args.worker_class:
            command[-1:-1] = ["--worker-class", args.worker_class]
    server = processes.start(args.server, command, env)
    deadline = time.monotonic() + 600
    while not run_demo.wait_until_serving(port, server, timeout=2):
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("gunicorn did not serve:\n%s" % Path(server.log_path).read_text()[-5000:])
    return port, server


def server_memory(server: subprocess.Popen) -> dict:
    """Memory of the server's processes (MiB): each one's resident, proportional (shared pages divided among the
    processes mapping them) and unique set sizes, and the sums over master and workers; the proportional sum is
    what the server holds."""
    processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children()]
    rows = []
    for number, process in enumerate(processes):
        info = process.memory_full_info()
        rows.append(
            {
                "process": "master" if number == 0 else "worker %d" % number,
                **{name: round(getattr(info, name) / 2**20, 1) for name in ("rss", "pss", "uss")},
            }
        )
    return {
        "processes": rows,
        **{name + "_sum": round(sum(r[name] for r in rows), 1) for name in ("rss", "pss", "uss")},
    }


def server_description(args, server: subprocess.Popen) -> str:
    if args.server == "runserver":
        return "manage.py runserver (one process, a thread per connection)"
    limits = [("max active", args.max_active), ("max waiting", args.max_waiting)]
    return "%d %s workers, shop_demo/gunicorn.conf.py%s" % (
        len(psutil.Process(server.pid).children()),
        args.worker_class or "BalancedThreadWorker (gthread)",
        "".join(", %s %s" % (name, value) for name, value in limits if value is not None),
    )


def start_busy_process(processes: ProcessGroup) -> tuple[subprocess.Popen, int]:
    """A Python busy loop pinned to the last core this process may use (an unrelated program on the machine)."""
    core = max(os.sched_getaffinity(0))
    busy = processes.start("busy", [sys.executable, "-c", "while True: pass"], dict(os.environ))
    os.sched_setaffinity(busy.pid, {core})
    return busy, core


# ---------------------------------------------------------------- the clients


class Requests:
    """Next request of a case: (path, headers); thread-safe; every search query is used once."""

    def __init__(self, case: str, catalogue, sessions: list[str], seed: int, queries: int):
        self.case, self.lock = case, threading.Lock()
        self.rng = random.Random(seed)
        keys = catalogue.keys()
        self.anchors = [keys[i] for i in np.flatnonzero(catalogue.eligible)]
        self.sessions = sessions
        self.queries = synth.search_queries(catalogue, queries, seed=seed) if case == "search" else []
        self.used = 0

    def next(self) -> tuple[str, dict]:
        with self.lock:
            if self.case == "similar":
                return "/api/recommend/items/%s/similar/?k=%d" % (self.rng.choice(self.anchors), K), {}
            if self.case == "for-you":
                return "/api/recommend/for-you/?k=%d" % K, {"Cookie": "sessionid=%s" % self.rng.choice(self.sessions)}
            query_text = self.queries[self.used % len(self.queries)]
            if self.used >= len(self.queries):  # the pool ran out: still a text never sent before
                query_text += " %d" % (self.used // len(self.queries))
            self.used += 1
        return "/api/recommend/search/?k=%d&q=%s" % (K, query_text.replace(" ", "+")), {}


def connections_per_worker(server_pid: int, port: int) -> list[int]:
    """How many open client connections each of the server's worker processes holds, most first."""
    counts = []
    for worker in psutil.Process(server_pid).children():
        with contextlib.suppress(psutil.Error):
            held = worker.net_connections(kind="tcp")
            counts.append(sum(1 for c in held if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port))
    return sorted(counts, reverse=True)


def closed_loop(
    port: int, requests: Requests, clients: int, seconds: float, *, warm_up: bool = False, server_pid: int | None = None
) -> dict:
    """``clients`` connections, each sending its next request when the last one is answered, for ``seconds``.

    ``warm_up``: each connection also waits for at least one answer (a server that loads its models on
    the first request, as runserver does, loads them here). ``server_pid``: also report how the server's
    workers held the connections half-way through (a keep-alive connection stays with the worker that
    accepted it).
    """
    ok, refused, errors = [], [], {}
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + seconds

    def client():
        connection, answers = None, 0
        while time.perf_counter() < deadline or (warm_up and not answers):
            path, headers = requests.next()
            sent = time.perf_counter()
            status, retry_after = None, None
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
                connection.request("GET", path, headers={"Accept": "application/json", **headers})
                response = connection.getresponse()
                response.read()
                status, retry_after = response.status, response.getheader("Retry-After")
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
                kind = None if status < 400 or status == 503 else "HTTP %d" % status
            except TimeoutError:
                kind = "no answer within %d s" % CLIENT_TIMEOUT_S
            except (OSError, http.client.HTTPException) as exc:
                kind = "connection: %s" % type(exc).__name__
            if status is None and connection is not None:
                connection.close()
                connection = None
            elapsed = time.perf_counter() - sent
            answers += status is not None
            with lock:
                if kind is not None:
                    errors[kind] = errors.get(kind, 0) + 1
                elif status == 503:
                    refused.append(elapsed)
                else:
                    ok.append(elapsed)
            if status == 503:
                time.sleep(max(0.0, min(float(retry_after or 1), deadline - time.perf_counter())))
        if connection is not None:
            connection.close()

    held = []
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    if server_pid is not None:
        sampler = threading.Timer(seconds / 2, lambda: held.extend(connections_per_worker(server_pid, port)))
        sampler.daemon = True
        threads.append(sampler)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + CLIENT_TIMEOUT_S + 30)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "ok": len(ok),
        "ok_per_s": round(len(ok) / wall, 1),
        "p50_ms": percentile(ok, 50),
        "p90_ms": percentile(ok, 90),
        "p99_ms": percentile(ok, 99),
        "max_ms": round(max(ok) * 1000, 1) if ok else None,
        "refused_503": len(refused),
        "refused_p50_ms": percentile(refused, 50),
        "errors": errors,
        "connections_per_worker": held or None,
        "load_generator_cpu_cores": round(client_cpu / wall, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# ---------------------------------------------------------------- report


def machine_info() -> dict:
    import gunicorn
    from django.db import connection

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        postgresql = cursor.fetchone()[0].split(" on ")[0]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "gunicorn": gunicorn.__version__,
        "postgresql": postgresql,
        "git_commit": commit,
    }


def print_report(report: dict) -> None:
    config = report["config"]
    print(
        "\n%s items; server: %s; query threads %s; precision %s, image model %s; busy process: %s"
        % (
            config["items"],
            config["server"],
            config["query_threads"],
            config["precision"],
            config["image_model"],
            "pinned to core %d" % config["busy_core"] if config["busy"] else "none",
        )
    )
    print(
        "%-8s %7s %8s %9s %8s %8s %8s %8s %6s %9s  %s"
        % (
            "case",
            "clients",
            "answers",
            "answers/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "503s",
            "loadgen",
            "errors",
        )
    )
    for row in report["results"]:
        print(
            "%-8s %7d %8d %9.1f %8s %8s %8s %8s %6d %9.2f  %s"
            % (
                row["case"],
                row["clients"],
                row["ok"],
                row["ok_per_s"],
                row["p50_ms"],
                row["p90_ms"],
                row["p99_ms"],
                row["max_ms"],
                row["refused_503"],
                row["load_generator_cpu_cores"],
                row["errors"] or "none",
            )
        )


def save(args, report: dict) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


# ---------------------------------------------------------------- main


@contextlib.contextmanager
def scratch_database(args, connection):
    """The block runs on the scratch database ``args.db_name``: created (reused with ``--keep-db``) before it,
    dropped after it unless ``--keep-db``, also after an error."""
    connection.settings_dict["TEST"]["NAME"] = args.db_name
    original_name = connection.settings_dict["NAME"]
    log("scratch database %s" % args.db_name)
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=args.keep_db, serialize=False)
    try:
        yield
    finally:
        if args.keep_db:
            log("keeping scratch database %s (--keep-db)" % args.db_name)
            connection.settings_dict["NAME"] = original_name
        else:
            log("dropping scratch database %s" % args.db_name)
            connection.creation.destroy_test_db(original_name, verbosity=0)


def run(args) -> dict:
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ.setdefault("RAGREC_CLIP_CHECKPOINT", "off")
    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    ragrec = encoders_settings(args)
    with scratch_database(args, connection):
        processes = ProcessGroup(Path(os.environ.get("TMPDIR", "/tmp")) / ("ragrec-serve-load-%d" % os.getpid()))
        report = {"benchmark": "serve_load", "args": {k: v for k, v in vars(args).items() if k != "case_list"}}
        try:
            with override_settings(RAGREC={**settings.RAGREC, **ragrec}, DEBUG=False):
                catalogue = synth.make_catalogue(args.items, seed=args.seed)
                report["load"] = load_catalogue(args, catalogue, connection)
                sessions = load_shoppers(args, catalogue)
                report["machine"] = machine_info()
            url = database_url(connection.settings_dict, args.db_name)
            connection.close()
            port, server = start_server(args, processes, url, ragrec)
            busy, core = start_busy_process(processes) if args.busy else (None, None)
            report["config"] = {
                "items": args.items,
                "seconds": args.seconds,
                "busy": args.busy,
                "busy_core": core,
                "query_threads": ragrec["QUERY_THREADS"] or "torch default",
                "precision": args.precision,
                "image_model": args.image_model,
                "server": server_description(args, server),
                "preload": args.preload,
                "exact_cache_rows": args.exact_cache_rows,
            }
            report["results"] = []
            log("serving on 127.0.0.1:%d: %s" % (port, report["config"]["server"]))
            report["server_memory_at_start"] = server_memory(server)
            log("server memory at start: %s" % report["server_memory_at_start"])
            for case in args.case_list:
                pool = int(args.seconds * 400 * len(args.client_levels)) if case == "search" else 0
                requests = Requests(case, catalogue, sessions, seed=args.seed + 31, queries=max(pool, 1000))
                for clients in args.client_levels:
                    closed_loop(port, requests, clients, args.warmup, warm_up=True)
                    row = {"case": case, **closed_loop(port, requests, clients, args.seconds, server_pid=server.pid)}
                    report["results"].append(row)
                    log("%s, %d clients: %s" % (case, clients, row))
                    save(args, report)
            report["server_memory_at_end"] = server_memory(server)
            log("server memory at the end: %s" % report["server_memory_at_end"])
            report["server_log_tail"] = Path(server.log_path).read_text()[-2000:]
            return report
        finally:
            processes.stop_all(signal.SIGINT)


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report = run(args)
    print_report(report)
    save(args, report)
    if args.json:
        print("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
