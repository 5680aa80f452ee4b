"""Real Celery worker processes against Redis, for the tests marked ``celery_worker``.

Each test run has a Redis database of its own, so two runs on one machine never read or
flush each other's queues: ``RAGREC_TEST_REDIS_URL`` when set, else a database of the local
Redis (127.0.0.1:6379) that this run holds an exclusive lock on (one lock file per database
number in the temporary folder, held for the whole session; another run takes the next free
number). Databases 0 and 1 (the demo's and the production settings' defaults) are never used.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
LOCAL_REDIS = "redis://127.0.0.1:6379"
FREE_DATABASES = range(2, 16)  # Redis has 16 databases by default


def lock_redis_database(stack: ExitStack, base_url: str = LOCAL_REDIS) -> str:
    """The URL of a database of ``base_url`` that no other process holds; locked until ``stack`` closes."""
    host = base_url.split("://", 1)[-1].replace(":", "-").replace("/", "")
    for number in FREE_DATABASES:
        path = os.path.join(tempfile.gettempdir(), "ragrec-test-redis-%s-db%d.lock" % (host, number))
        handle = stack.enter_context(open(path, "a"))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # another test run holds this one
        return "%s/%d" % (base_url, number)
    raise RuntimeError(
        "Every Redis database %d-%d is held by another test run." % (FREE_DATABASES[0], FREE_DATABASES[-1])
    )


@pytest.fixture(scope="session")
def test_redis_url():
    """This run's Redis database: ``RAGREC_TEST_REDIS_URL``, else a locked database of the local Redis."""
    if os.environ.get("RAGREC_TEST_REDIS_URL"):
        yield os.environ["RAGREC_TEST_REDIS_URL"]
        return
    with ExitStack() as stack:
        yield lock_redis_database(stack)


@pytest.fixture
def redis_broker(test_redis_url):
    """This run's Redis database, empty before and after the test."""
    import redis

    client = redis.Redis.from_url(test_redis_url)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running at %s (./dev test starts it)" % test_redis_url)
    client.flushdb()
    yield test_redis_url
    client.flushdb()


@pytest.fixture
def worker_env(redis_broker, tmp_path):
    """Environment for subprocesses: the test database, the Redis broker, a short visibility timeout."""
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        DATABASE_URL="postgres://%s@/%s?host=%s"
        % (db["USER"], db["NAME"], db["HOST"] or db["OPTIONS"].get("host", "")),
        CELERY_BROKER_URL=redis_broker,
        CELERY_VISIBILITY_TIMEOUT="4",
        SHOP_DEMO_MEDIA_ROOT=str(tmp_path / "media"),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path):
    """``start()``: a Celery worker of the demo project (concurrency 1) in its own session; killed after the test."""
    started = []

    def start():
        log = open(tmp_path / ("worker-%d.log" % len(started)), "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "--concurrency", "1", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "test%d@%%h" % len(started)],
            cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_for(predicate, timeout, what):
    """Poll ``predicate`` every 0.2 s until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for %s" % what)
