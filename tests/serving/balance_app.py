"""A WSGI application for the tests of ``ragrec_django.balanced_worker``, served by gunicorn with 2 workers.

Each worker writes ``<SERVING_TEST_DIR>/ready-<pid>`` once it has loaded this module.
``GET /hold/<name>`` writes ``entered-<name>`` (holding the worker's pid) and waits until ``release-<name>``
exists; ``GET /pid[?hold=<seconds>]`` answers the worker's pid (after that long); ``GET /load`` answers every worker's requests in flight and
open connections as the workers share them (``BalancedThreadWorker.table``), with the answering pid.
"""

import json
import os
import time
from pathlib import Path

from ragrec_django.balanced_worker import BalancedThreadWorker

FOLDER = Path(os.environ["SERVING_TEST_DIR"])
(FOLDER / ("ready-%d" % os.getpid())).touch()


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/hold/"):
        name = path.rsplit("/", 1)[-1]
        (FOLDER / ("pid-" + name)).write_text(str(os.getpid()))
        (FOLDER / ("pid-" + name)).rename(FOLDER / ("entered-" + name))
        while not (FOLDER / ("release-" + name)).exists():
            time.sleep(0.01)
        body = str(os.getpid()).encode()
    elif path == "/load":
        table = BalancedThreadWorker.table.snapshot()
        body = json.dumps(
            {"me": os.getpid(), "workers": {str(pid): list(load) for pid, load in table.items()}}
        ).encode()
    else:  # /pid, held ?hold= seconds
        time.sleep(float(environ.get("QUERY_STRING", "").partition("hold=")[2] or 0))
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
