"""run_demo: its steps in order, the banner with the demo logins, cleaning up on Ctrl-C, and the web server
(gunicorn with shop_demo/gunicorn.conf.py) serving the shop and its static files, then stopping on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess

import psutil
import pytest

from shop_demo import run_demo
from tests.serving.server import DemoServer


class FakeProcess:
    def __init__(self, args, **kwargs):
        self.args, self.returncode, self.terminated = args, None, False

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self.returncode = 0
        return self.returncode

    def terminate(self):
        self.terminated, self.returncode = True, -15

    def kill(self):
        self.returncode = -9


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgres://unused/db")  # no embedded server to start or stop
    monkeypatch.setenv("SHOP_DEMO_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    calls, processes = [], []

    def popen(args, **kwargs):
        processes.append(FakeProcess(args))
        return processes[-1]

    monkeypatch.setattr(run_demo.subprocess, "run", lambda args, **kwargs: calls.append(args[2:]))
    monkeypatch.setattr(run_demo.subprocess, "Popen", popen)
    monkeypatch.setattr(run_demo, "wait_until_serving", lambda port, process, timeout=180.0: True)
    monkeypatch.setattr(run_demo.signal, "signal", lambda *args: None)
    return calls, processes


def test_steps_run_in_order_and_the_banner_lists_the_logins(fake, capsys, tmp_path):
    calls, processes = fake
    assert run_demo.main(["--port", "8123"]) == 0
    assert [c[0] for c in calls] == [
        "migrate",
        "seed_catalog",
        "seed_people",
        "prepare_demo",
        "ragrec_reindex",
        "prepare_demo",
    ]
    # The image space's CLIP model first (trained on the first run), so the worker starts with it in its settings.
    assert calls[3] == ["prepare_demo", "--clip-only", "--clip-minutes", "3.0"]
    assert calls[4] == ["ragrec_reindex", "--stale", "--wait", "--timeout", "1800"]
    assert calls[5] == ["prepare_demo", "--drafts", "50"]
    worker, server = processes
    assert "worker" in worker.args
    assert server.args[1:] == [
        "-m",
        "gunicorn",
        "-c",
        str(run_demo.GUNICORN_CONF),
        "--bind",
        "127.0.0.1:8123",
        "shop_demo.wsgi",
    ]
    assert (tmp_path / "broker" / "processed").is_dir()
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8123/demo/login/" in out and 'password "demo"' in out
    assert "alice, bob" in out and "reviewer" in out and "manager" in out
    assert "Models: text space = all-MiniLM-L6-v2" in out


def test_no_worker_encodes_and_generates_in_process(fake):
    calls, processes = fake
    run_demo.main(["--no-worker", "--drafts", "5"])
    assert calls[4] == ["ragrec_reindex", "--sync", "--stale"]
    assert calls[5] == ["prepare_demo", "--drafts", "5", "--in-process"]
    assert len(processes) == 1  # the web server only


def test_web_workers_option(fake):
    _, processes = fake
    run_demo.main(["--no-worker", "--web-workers", "3", "--port", "8124"])
    (server,) = processes
    assert server.args[-4:] == ["127.0.0.1:8124", "--workers", "3", "shop_demo.wsgi"]


def test_clip_budget_and_skipping_the_training(fake):
    calls, _ = fake
    run_demo.main(["--clip-minutes", "1.5"])
    assert calls[3] == ["prepare_demo", "--clip-only", "--clip-minutes", "1.5"]
    calls.clear()
    run_demo.main(["--skip-clip-training"])
    assert calls[3] == ["prepare_demo", "--clip-only", "--skip-clip-training"]


def test_ctrl_c_stops_what_was_started(fake, monkeypatch, capsys):
    calls, processes = fake

    def interrupted(args, **kwargs):
        calls.append(args[2:])
        if args[2] == "prepare_demo" and "--clip-only" not in args:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_demo.subprocess, "run", interrupted)
    assert run_demo.main([]) == 0
    (worker,) = processes
    assert worker.terminated and "Stopping..." in capsys.readouterr().out


def test_a_failed_step_is_reported(fake, monkeypatch, capsys):
    def failing(args, **kwargs):
        raise subprocess.CalledProcessError(3, args)

    monkeypatch.setattr(run_demo.subprocess, "run", failing)
    assert run_demo.main([]) == 3
    assert "Step failed" in capsys.readouterr().err


# ---------------------------------------------------------------- the real web server


@pytest.mark.django_db(transaction=True)
def test_the_demo_is_served_by_gunicorn_with_its_static_files_and_stops_on_ctrl_c(settings, tmp_path):
    """The command run_demo starts: gunicorn serves pages, the API and the admin's CSS; SIGINT stops everything."""
    server = DemoServer(tmp_path, settings.DATABASES["default"], WEB_CONCURRENCY="2")
    try:
        server.wait_until_serving()
        workers = psutil.Process(server.process.pid).children()
        assert len(workers) == 2
        # the master loaded the application and filled the vector cache once, for the workers it forked to share
        assert "vectors cached per space before forking the workers" in server.log()

        status, headers, body = server.get("/", Accept="text/html")
        assert status == 200 and headers["server"] == "gunicorn", body[:500]
        assert b"<html" in body.lower()
        status, headers, body = server.get("/static/admin/css/base.css")  # DEBUG: StaticFilesHandler, as runserver
        assert status == 200 and headers["content-type"].startswith("text/css") and b"body" in body
        status, headers, body = server.get("/api/recommend/trending/", Accept="application/json")
        assert status == 200 and headers["content-type"] == "application/json", body[:500]

        assert server.stop(signal.SIGINT) == 0  # what Ctrl-C sends the whole foreground process group
        assert not [worker for worker in workers if worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE]
    finally:
        server.stop(signal.SIGKILL)
