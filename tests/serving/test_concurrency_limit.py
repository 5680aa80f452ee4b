"""ConcurrencyLimit: a bounded number of requests run, a bounded line waits in order, the rest get a clean 503.

Real threads and, in the last test, a real gunicorn with the demo's configuration. Nothing is timed:
requests are held inside the application until the test releases them, and every wait on the test's
side polls for a state (with a generous limit only as a safety net for a stuck server).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ragrec_django.admission import ConcurrencyLimit

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate, what: str, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "gave up waiting for " + what
        time.sleep(0.005)


class Gate:
    """A WSGI application that records who entered and holds every request until ``release`` is set."""

    def __init__(self):
        self.entered: list[str] = []
        self.release = threading.Event()
        self.closed = 0

    def __call__(self, environ, start_response):
        self.entered.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        self.release.wait()
        start_response("200 OK", [("Content-Type", "text/plain")])
        gate = self

        class Body(list):
            def close(self):
                gate.closed += 1

        return Body([environ["PATH_INFO"].encode()])


def call(application, path: str = "/", accept: str = "application/json"):
    """One request in this thread: (status code, headers, body), the response closed as a server does."""
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(headers)

    response = application({"PATH_INFO": path, "REQUEST_METHOD": "GET", "HTTP_ACCEPT": accept}, start_response)
    try:
        body = b"".join(response)
    finally:
        getattr(response, "close", lambda: None)()
    return answer["status"], answer["headers"], body


class Background:
    """Requests running in threads; ``results`` keeps each one's (status, headers, body) by path."""

    def __init__(self, application):
        self.application, self.results, self.threads = application, {}, []

    def start(self, path: str) -> None:
        thread = threading.Thread(target=lambda: self.results.__setitem__(path, call(self.application, path)))
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(120)
            assert not thread.is_alive()


def test_requests_beyond_the_line_get_503_with_retry_after_and_the_others_are_served():
    gate = Gate()
    limit = ConcurrencyLimit(gate, max_active=2, max_waiting=1, max_wait=600)
    requests = Background(limit)
    requests.start("/a")
    requests.start("/b")
    wait_until(lambda: len(gate.entered) == 2, "two requests to run")
    requests.start("/c")
    wait_until(lambda: limit.waiting == 1, "a request in line")

    status, headers, body = call(limit, "/d")
    assert status == 503 and headers["Retry-After"] == "1" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"detail": "The server is busy: please retry in 1 s."}
    status, headers, body = call(limit, "/e", accept="text/html,*/*")
    assert status == 503 and headers["Content-Type"].startswith("text/html") and b"busy" in body
    assert gate.entered == ["/a", "/b"]  # refused requests never reach the application

    gate.release.set()
    requests.join()
    assert {path: result[0] for path, result in requests.results.items()} == {"/a": 200, "/b": 200, "/c": 200}
    assert (limit.active, limit.waiting, limit.refused, gate.closed) == (0, 0, 2, 3)


def test_the_line_is_served_first_come_first_served():
    gate = Gate()
    limit = ConcurrencyLimit(gate, max_active=1, max_waiting=3, max_wait=600)
    requests = Background(limit)
    requests.start("/first")
    wait_until(lambda: gate.entered == ["/first"], "the first request to run")
    for position, path in enumerate(["/second", "/third", "/fourth"], start=1):
        requests.start(path)
        wait_until(lambda position=position: limit.waiting == position, "%s in line" % path)
    gate.release.set()
    requests.join()
    assert gate.entered == ["/first", "/second", "/third", "/fourth"]
    assert limit.refused == 0


def test_a_request_that_waited_max_wait_is_refused():
    gate = Gate()
    limit = ConcurrencyLimit(gate, max_active=1, max_waiting=5, max_wait=0.01)
    requests = Background(limit)
    requests.start("/holding")
    wait_until(lambda: gate.entered == ["/holding"], "the slot to be taken")
    status, headers, _ = call(limit, "/late")  # the slot stays taken: the wait runs out
    assert status == 503 and headers["Retry-After"] == "1"
    assert limit.waiting == 0 and limit.refused == 1
    gate.release.set()
    requests.join()


def test_the_slot_comes_back_when_the_application_raises():
    gate = Gate()
    gate.release.set()
    limit = ConcurrencyLimit(gate, max_active=1, max_waiting=0, max_wait=0)
    with pytest.raises(RuntimeError):
        call(limit, "/boom")
    assert limit.active == 0
    assert call(limit, "/after")[0] == 200
    assert limit.active == 0 and limit.refused == 0


@pytest.mark.parametrize("options", [{"max_active": 0, "max_waiting": 1}, {"max_active": 1, "max_waiting": -1}])
def test_bad_limits_are_refused(options):
    with pytest.raises(ValueError):
        ConcurrencyLimit(Gate(), **options)


def test_the_demo_application_runs_behind_the_limit_and_static_files_do_not_wait(monkeypatch, settings):
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.handlers.wsgi import WSGIHandler

    from shop_demo import wsgi

    monkeypatch.setenv("SHOP_DEMO_MAX_ACTIVE", "2")
    monkeypatch.setenv("SHOP_DEMO_MAX_WAITING", "12")
    monkeypatch.setenv("SHOP_DEMO_MAX_WAIT", "5")
    settings.DEBUG = True
    application = wsgi.build_application()
    assert isinstance(application, StaticFilesHandler) and isinstance(application.application, ConcurrencyLimit)
    limit = application.application
    assert (limit.max_active, limit.max_waiting, limit.max_wait) == (2, 12, 5.0)

    monkeypatch.delenv("SHOP_DEMO_MAX_ACTIVE")
    settings.DEBUG = False
    assert type(wsgi.build_application()) is WSGIHandler  # no limit unless configured; a deployment serves static


# ---------------------------------------------------------------- through gunicorn


def test_gunicorn_with_the_demo_configuration_refuses_beyond_the_line_and_serves_the_rest(tmp_path):
    """Threads = active + line + 2 (shop_demo/gunicorn.conf.py): a request over the limit is answered 503 at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "SHOP_DEMO_"))}
    env.update(
        SERVING_TEST_DIR=str(tmp_path),
        WEB_CONCURRENCY="1",
        SHOP_DEMO_MAX_ACTIVE="1",
        SHOP_DEMO_MAX_WAITING="1",
        SHOP_DEMO_MAX_WAIT="600",
    )
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "shop_demo" / "gunicorn.conf.py"),
                "--bind",
                "127.0.0.1:%d" % port,
                "--pythonpath",
                str(Path(__file__).parent),
                "blocking_app:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def get(path: str):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.getheader("Retry-After"), response.read()
        finally:
            connection.close()

    def status() -> dict:
        try:
            return json.loads(get("/status")[2])
        except OSError:
            assert server.poll() is None, log_path.read_text()
            return {}

    results = {}

    def hold(name):
        results[name] = get("/hold/" + name)

    threads = [threading.Thread(target=hold, args=(name,)) for name in ("a", "b")]
    try:
        wait_until(lambda: status().get("active") == 0, "gunicorn to serve", limit=300)
        threads[0].start()
        wait_until(lambda: (tmp_path / "entered-a").exists(), "the first request to run")
        threads[1].start()
        wait_until(lambda: status()["waiting"] == 1, "the second request in line")

        code, retry_after, body = get("/hold/c")
        assert (code, retry_after) == (503, "1") and json.loads(body)["detail"].startswith("The server is busy")
        assert not (tmp_path / "entered-c").exists()

        (tmp_path / "release").touch()
        for thread in threads:
            thread.join(120)
        assert results == {"a": (200, None, b"a"), "b": (200, None, b"b")}
        # gunicorn closes the response (which frees the slot) after the client has read it
        wait_until(lambda: status() == {"active": 0, "waiting": 0, "refused": 1}, "the slots to be freed")
    finally:
        (tmp_path / "release").touch()
        server.send_signal(signal.SIGINT)
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
