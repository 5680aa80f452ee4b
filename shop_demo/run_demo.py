"""Run the whole demo on one machine: database, migrations, catalogue, encoding worker, web server.

    python -m shop_demo.run_demo [--port 8000] [--count 1200] [--no-worker]

Starts the embedded PostgreSQL (unless DATABASE_URL is set), migrates, seeds
the catalogue, starts a Celery worker (Redis when CELERY_BROKER_URL is set,
else a file-system broker under var/), encodes the catalogue through it, and
serves the shop. A second run reuses everything already built. Ctrl-C stops
everything this command started.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def step(message: str) -> None:
    print("\n==> %s" % message, flush=True)


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--count", type=int, default=1200, help="Products in the demo catalogue.")
    parser.add_argument("--no-worker", action="store_true", help="Encode in-process instead of through Celery.")
    options = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    started: list[subprocess.Popen] = []
    var_dir = Path(os.environ.get("SHOP_DEMO_VAR_DIR", ROOT / "var"))
    embedded = not os.environ.get("DATABASE_URL")

    def stop_everything(*_):
        for process in reversed(started):
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if embedded:
            from ragrec_django.embedded import stop_embedded_postgres

            if stop_embedded_postgres(var_dir / "postgres"):
                print("Stopped the embedded PostgreSQL.", flush=True)

    try:
        step("Database: %s" % ("embedded PostgreSQL + pgvector in %s" % (var_dir / "postgres") if embedded else "DATABASE_URL"))
        manage("migrate", "--no-input", "-v", "1")
        step("Catalogue")
        manage("seed_catalog", "--count", str(options.count))
        step("Models: text space = all-MiniLM-L6-v2 (bundled weights, offline)")
        if not os.environ.get("RAGREC_CLIP_PRETRAINED"):
            print(
                "No CLIP weights are configured (RAGREC_CLIP_PRETRAINED unset; pretrained CLIP cannot be downloaded "
                "offline), so image and photo search are off rather than serving noise.",
                flush=True,
            )
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
                [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "--loglevel", "WARNING", "--concurrency", "1"],
                cwd=ROOT,
            )
            started.append(worker)
            step("Encoding the catalogue through the worker")
            manage("ragrec_reindex", "--stale", "--wait", "--timeout", "1800")
        step("Serving the shop")
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "127.0.0.1:%d" % options.port, "--noreload"], cwd=ROOT
        )
        started.append(server)
        time.sleep(1)
        print("\n    Shop:  http://127.0.0.1:%d/\n    Admin: http://127.0.0.1:%d/admin/\n    Ctrl-C stops everything.\n" % (options.port, options.port), flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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
