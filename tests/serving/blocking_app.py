"""A WSGI application for the concurrency tests, served by gunicorn with the demo's configuration.

``GET /hold/<name>`` writes ``<SERVING_TEST_DIR>/entered-<name>`` and waits until the file
``<SERVING_TEST_DIR>/release`` exists; it runs behind ``ConcurrencyLimit`` sized from the same
environment variables as the demo's ``shop_demo/wsgi.py`` (set by ``shop_demo/gunicorn.conf.py``).
``GET /status`` bypasses the limit and answers its counters as JSON.
"""

import json
import os
import time
from pathlib import Path

from ragrec_django.admission import ConcurrencyLimit

FOLDER = Path(os.environ["SERVING_TEST_DIR"])


def hold(environ, start_response):
    name = environ["PATH_INFO"].rsplit("/", 1)[-1]
    (FOLDER / ("entered-" + name)).touch()
    while not (FOLDER / "release").exists():
        time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [name.encode()]


limit = ConcurrencyLimit(
    hold,
    max_active=int(os.environ["SHOP_DEMO_MAX_ACTIVE"]),
    max_waiting=int(os.environ["SHOP_DEMO_MAX_WAITING"]),
    max_wait=float(os.environ["SHOP_DEMO_MAX_WAIT"]),
)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/status":
        body = json.dumps({"active": limit.active, "waiting": limit.waiting, "refused": limit.refused}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return limit(environ, start_response)
