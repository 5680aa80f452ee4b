"""BalancedThreadWorker: a busy worker leaves new connections to an idle one, and a crowded one hands kept-alive
connections back.

A real gunicorn with the demo's configuration (shop_demo/gunicorn.conf.py) and 2 workers serves
``balance_app``. Nothing is timed: requests are held inside the application until the test releases them,
and every wait polls for a state, with a generous limit only as a safety net for a stuck server.
"""

from __future__ import annotations

import http.client
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from ragrec_django.balanced_worker import BalancedThreadWorker, _LoadTable
from tests.serving.test_concurrency_limit import wait_until

ROOT = Path(__file__).resolve().parents[2]


class TwoWorkers:
    def __init__(self, folder: Path):
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "SHOP_DEMO_"))}
        # Each worker imports balance_app itself, which marks it ready (preloaded, the master alone would).
        env.update(SERVING_TEST_DIR=str(folder), WEB_CONCURRENCY="2", SHOP_DEMO_MAX_ACTIVE="4", SHOP_DEMO_PRELOAD="0")
        self.log_path = folder / "gunicorn.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "shop_demo" / "gunicorn.conf.py"),
                 "--bind", "127.0.0.1:%d" % self.port, "--pythonpath", str(Path(__file__).parent),
                 "balance_app:application"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until(
                lambda: len(list(folder.glob("ready-*"))) == 2 or self.process.poll() is not None, "2 workers", 300
            )
            assert self.process.poll() is None, self.log_path.read_text()
        except AssertionError:
            self.process.kill()  # no server left behind by a failed start
            self.process.wait()
            raise

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def get(self, connection: http.client.HTTPConnection, path: str, **headers) -> tuple[str, str | None]:
        """(body, the answer's Connection header) of one request on ``connection``."""
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.read().decode(), response.getheader("Connection")

    def load(self) -> dict:
        """The shared table, read by a worker over a connection of its own (closed after the answer)."""
        connection = self.connection()
        try:
            return json.loads(self.get(connection, "/load", Connection="close")[0])
        finally:
            connection.close()

    def stop(self) -> None:
        for name in ("a", "b", "c", "h"):
            (self.folder / ("release-" + name)).touch()
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def server(tmp_path):
    running = TwoWorkers(tmp_path)
    yield running
    running.stop()


def hold(server, name: str) -> threading.Thread:
    """A request held inside the application on a new connection until ``release-<name>``; waits until it runs."""
    thread = threading.Thread(target=lambda: server.get(server.connection(), "/hold/" + name, Connection="close"))
    thread.start()
    wait_until(lambda: (server.folder / ("entered-" + name)).exists(), "request %s to run" % name)
    return thread


def entered_pid(server, name: str) -> int:
    return int((server.folder / ("entered-" + name)).read_text())


def test_a_new_connection_goes_to_the_worker_with_no_request_in_flight(server):
    first = hold(server, "a")
    second = hold(server, "b")  # the first worker is busy: it does not accept until it is free again
    assert entered_pid(server, "b") != entered_pid(server, "a")
    third = hold(server, "c")  # both busy with one each: either may take it
    assert entered_pid(server, "c") in {entered_pid(server, "a"), entered_pid(server, "b")}
    for name, thread in (("a", first), ("b", second), ("c", third)):
        (server.folder / ("release-" + name)).touch()
        thread.join(120)
        assert not thread.is_alive()


def test_four_kept_alive_clients_end_up_two_on_each_worker_and_stay(server):
    """However the kernel first deals the 4 connections out, surplus ones are closed and come back to the other."""
    clients = [server.connection() for _ in range(4)]

    def one_round() -> list[int]:
        """Each client sends one request at the same time (held 20 ms in the application): the pids that answered."""
        answers = [None] * 4
        threads = [
            threading.Thread(target=lambda i=i: answers.__setitem__(i, server.get(clients[i], "/pid?hold=0.02")[0]))
            for i in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        return sorted(Counter(answers).values())

    wait_until(lambda: one_round() == [2, 2], "the connections to be shared out 2:2")
    assert [one_round() for _ in range(5)] == [[2, 2]] * 5
    for client in clients:
        client.close()


def test_the_table_ignores_rows_of_workers_that_are_gone():
    table = _LoadTable(rows=2)
    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(3)]
    gone, successor, latecomer = sleepers
    try:
        theirs, mine = table.claim(gone.pid), table.claim(os.getpid())
        table.write(theirs, in_flight=3, connections=5)
        assert theirs != mine and table.siblings(mine) == [(3, 5)]
        gone.kill()
        gone.wait()
        assert table.siblings(mine) == [] and table.snapshot() == {os.getpid(): (0, 0)}  # a gone worker: no count
        assert table.claim(successor.pid) == theirs  # its row is taken over, emptied
        assert table.siblings(mine) == [(0, 0)]
        assert table.claim(latecomer.pid) is None  # no row left: that worker runs as a plain gthread worker
    finally:
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()


def test_the_demo_configuration_uses_the_balanced_worker():
    configuration = runpy.run_path(str(ROOT / "shop_demo" / "gunicorn.conf.py"))
    assert configuration["worker_class"] == "%s.%s" % (BalancedThreadWorker.__module__, BalancedThreadWorker.__name__)
