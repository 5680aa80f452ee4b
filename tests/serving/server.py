"""The demo's web server as ``./dev demo`` starts it (gunicorn, shop_demo/gunicorn.conf.py), on the test database."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from shop_demo import run_demo


class DemoServer:
    """gunicorn serving ``shop_demo.wsgi`` on a free loopback port, against the test database ``database``."""

    def __init__(self, tmp_path: Path, database: dict, **environ: str):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_", "SHOP_DEMO_", "RAGREC_"))}
        env.update(
            DJANGO_SETTINGS_MODULE="shop_demo.settings",
            RAGREC_CLIP_CHECKPOINT="off",
            DATABASE_URL="postgres://%s@/%s?host=%s" % (database["USER"], database["NAME"], database["HOST"]),
            SHOP_DEMO_VAR_DIR=str(tmp_path / "var"),
            SHOP_DEMO_MEDIA_ROOT=str(tmp_path / "media"),
        )
        env.update(environ)
        self.log_path = tmp_path / "gunicorn.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                run_demo.server_command(self.port), cwd=run_demo.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_until_serving(self, limit: float = 300) -> None:
        """Poll until a worker answers; the limit is a safety net for a stuck server, not a timing assertion."""
        deadline = time.monotonic() + limit
        while not run_demo.wait_until_serving(self.port, self.process, timeout=1):
            assert self.process.poll() is None, "gunicorn exited:\n" + self.log()
            assert time.monotonic() < deadline, "gunicorn did not serve:\n" + self.log()

    def get(self, path: str, **headers: str) -> tuple[int, dict, bytes]:
        """(status, headers with lower-case names, body) of one GET; keyword headers use _ for -."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def stop(self, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` (SIGINT: what Ctrl-C sends) and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("gunicorn did not stop on signal %d:\n%s" % (sig, self.log())) from None

    def log(self) -> str:
        return self.log_path.read_text()[-4000:]
