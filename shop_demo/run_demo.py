"""Run the whole demo on one machine: database, migrations, catalogue, people, encoding worker, web server.

    python -m shop_demo.run_demo [--port 8000] [--count 1200] [--no-worker] [--clip-minutes 3] [--skip-clip-training]
                                 [--web-workers N]

Starts the embedded PostgreSQL (unless DATABASE_URL is set), migrates, seeds
the catalogue and the demo people with their shopping history, gets the image
space a CLIP model (without pretrained CLIP weights: trains a LiT model on the
demo catalogue on the first run, within --clip-minutes, and reuses it later;
see prepare_demo --clip-only), starts a
Celery worker (Redis when CELERY_BROKER_URL is set, else a file-system broker
under var/), encodes the catalogue through it, proposes complements and
queues description drafts of a sample for review, and serves the shop with
gunicorn (shop_demo/gunicorn.conf.py: one worker process per core, torch on one
thread per worker, models loaded before the first request, excess requests
answered 503 with Retry-After). A second run reuses everything already built.
Ctrl-C stops everything this command started.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "shop_demo" / "gunicorn.conf.py"


def step(message: str) -> None:
    print("\n==> %s" % message, flush=True)


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def server_command(port: int, workers: int | None = None) -> list[str]:
    """gunicorn serving the demo on 127.0.0.1:``port`` with the demo's settings (``shop_demo/gunicorn.conf.py``)."""
    command = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--bind", "127.0.0.1:%d" % port]
    if workers:
        command += ["--workers", str(workers)]
    return command + ["shop_demo.wsgi"]


def wait_until_serving(port: int, process: subprocess.Popen, timeout: float = 180.0) -> bool:
    """Wait until 127.0.0.1:``port`` answers HTTP (a worker has loaded the models); False if ``process`` died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
                connection.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if connection.recv(5) == b"HTTP/":
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def banner(port: int) -> str:
    from shop_demo.catalog.people import DEMO_PASSWORD, SHOPPERS, STAFF

    base = "http://127.0.0.1:%d" % port
    shoppers = ", ".join(s.username for s in SHOPPERS[:8]) + " ... (%d shoppers)" % len(SHOPPERS)
    lines = [
        "",
        "    Shop:          %s/" % base,
        "    Demo login:    %s/demo/login/   (one click, any demo person)" % base,
        "    Admin:         %s/admin/" % base,
        "    Review queue:  %s/admin/ragrec_django/descriptiondraft/" % base,
        "",
        '    Demo logins (password "%s" for all):' % DEMO_PASSWORD,
        "      %-9s %s" % ("shoppers", shoppers),
    ]
    lines += ["      %-9s %s" % (member.username, member.role) for member in STAFF]
    lines += ["", "    Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--count", type=int, default=1200, help="Products in the demo catalogue.")
    parser.add_argument("--no-worker", action="store_true", help="Encode in-process instead of through Celery.")
    parser.add_argument("--drafts", type=int, default=50, help="Description drafts generated for review (default 50).")
    parser.add_argument(
        "--clip-minutes",
        type=float,
        default=3.0,
        help="First run without pretrained CLIP weights: minutes spent training the image model (default 3).",
    )
    parser.add_argument(
        "--skip-clip-training",
        action="store_true",
        help="Do not train the image model (a checkpoint trained before is still used; else photo search is off).",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=None,
        help="gunicorn worker processes (default: one per core, at most 4; or $WEB_CONCURRENCY).",
    )
    options = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    started: list[subprocess.Popen] = []
    var_dir = Path(os.environ.get("SHOP_DEMO_VAR_DIR", ROOT / "var"))
    embedded = not os.environ.get("DATABASE_URL")
    # An embedded server that was already running (another shell, a test run) is left running.
    database_was_running = embedded and (var_dir / "postgres" / "postmaster.pid").exists()

    def stop_everything(*_):
        for process in reversed(started):
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        if embedded and database_was_running:
            print("The embedded PostgreSQL was running before the demo started: left running.", flush=True)
        elif embedded:
            from ragrec_django.embedded import stop_embedded_postgres

            if stop_embedded_postgres(var_dir / "postgres"):
                print("Stopped the embedded PostgreSQL.", flush=True)

    # Ctrl-C stops the demo even when started where SIGINT is ignored (a background job of a script); the
    # children then get the default handling too. SIGTERM stops it the same way: the finally block cleans up.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        step(
            "Database: %s"
            % ("embedded PostgreSQL + pgvector in %s" % (var_dir / "postgres") if embedded else "DATABASE_URL")
        )
        manage("migrate", "--no-input", "-v", "1")
        step("Catalogue")
        manage("seed_catalog", "--count", str(options.count))
        step("Demo people and their shopping history")
        manage("seed_people")
        step("Models: text space = all-MiniLM-L6-v2 (bundled weights, offline); image space = CLIP")
        clip = ["--skip-clip-training"] if options.skip_clip_training else ["--clip-minutes", str(options.clip_minutes)]
        manage("prepare_demo", "--clip-only", *clip)
        if options.no_worker:
            step("Encoding the catalogue in-process")
            manage("ragrec_reindex", "--sync", "--stale")
        else:
            broker = os.environ.get("CELERY_BROKER_URL", "filesystem://")
            if broker == "filesystem://":
                for folder in ("processed", "control"):
                    (var_dir / "broker" / folder).mkdir(parents=True, exist_ok=True)
            step("Starting a Celery worker (broker: %s)" % broker.split("@")[-1])
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "shop_demo",
                    "worker",
                    "--loglevel",
                    "WARNING",
                    "--concurrency",
                    "1",
                ],
                cwd=ROOT,
            )
            started.append(worker)
            step("Encoding the catalogue through the worker")
            manage("ragrec_reindex", "--stale", "--wait", "--timeout", "1800")
        step("Complement proposals and description drafts for review")
        manage("prepare_demo", "--drafts", str(options.drafts), *(["--in-process"] if options.no_worker else []))
        step("Serving the shop (gunicorn, %s)" % GUNICORN_CONF.relative_to(ROOT))
        server = subprocess.Popen(server_command(options.port, options.web_workers), cwd=ROOT)
        started.append(server)
        if not wait_until_serving(options.port, server):
            print("\nThe web server did not start (is port %d taken? try --port)." % options.port, file=sys.stderr)
            return server.poll() or 1
        print(banner(options.port), flush=True)
        server.wait()
        return server.returncode or 0
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        return 0
    except subprocess.CalledProcessError as exc:
        print("\nStep failed: %s" % " ".join(exc.cmd), file=sys.stderr)
        return exc.returncode or 1
    finally:
        stop_everything()


if __name__ == "__main__":
    sys.exit(main())
