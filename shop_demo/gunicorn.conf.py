"""gunicorn settings of the demo shop and of the production example (docs/production.md).

    gunicorn -c shop_demo/gunicorn.conf.py shop_demo.wsgi [--bind 127.0.0.1:8000]

Sized to the machine: one ``gthread`` worker process per core this process may use (``WEB_CONCURRENCY``
overrides; at most 4 by default, which also bounds the database connections: one persistent connection
per thread that has served a request), of the class ``ragrec_django.balanced_worker.BalancedThreadWorker``:
a worker with more requests in flight than another leaves new connections to it, and one holding more
kept-alive connections than its share closes one after its answer, so the client reconnects to a quieter
worker. In each worker:

* torch runs on ``RAGREC["QUERY_THREADS"]`` threads (default 1), set right after the fork, and
  every space's encoder is loaded and run once, the search caches filled and the heap frozen out of the
  garbage collector before the first request (``services.serving.prepare_web_process``): concurrent
  searches then run side by side on the cores instead of fighting over all of them, and no visitor waits
  for a model to load, a cache to fill or a full garbage collection;
* at most ``SHOP_DEMO_MAX_ACTIVE`` requests (default 1) run at once, ``SHOP_DEMO_MAX_WAITING``
  more wait in line up to ``SHOP_DEMO_MAX_WAIT`` seconds (default 5), and the rest get an
  immediate 503 with ``Retry-After`` (``ragrec_django.admission.ConcurrencyLimit``, applied by
  ``shop_demo/wsgi.py``); the worker has 2 threads more than that, so a request over the limit is
  refused at once rather than queued unseen inside gunicorn. 16 waiting lets one worker hold every
  request of 16 clients while the connections are being shared out.
  One request at a time per process: two threads of one process take turns on its one interpreter lock
  (a thread back from the database waits for the other to let go), which made answers slower, in the tail
  most, than waiting in line for the worker, and fewer per second (docs/benchmarks.md, "Serving under
  concurrency"). A shop whose requests mostly wait on the network (a remote LLM streaming answers) raises it.

The master loads the application and fills the vector cache before it forks the workers (``preload_app``,
``when_ready``: ``services.serving.prepare_master_process``), so the workers share one copy of it instead of
holding one each (1.8 GB per worker at 1M items); ``SHOP_DEMO_PRELOAD=0`` loads the application in each worker
instead. With the application preloaded, a HUP restarts the workers on the code the master loaded: deploy new
code by restarting gunicorn (or with USR2 and QUIT of the old master).

Ctrl-C (SIGINT) stops the workers at once; SIGTERM lets requests in progress finish for up to
``graceful_timeout`` seconds.
"""

import os

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

bind = ["127.0.0.1:8000"]  # loopback unless told otherwise (--bind); gunicorn's own default follows $PORT on 0.0.0.0
worker_class = "ragrec_django.balanced_worker.BalancedThreadWorker"  # gthread, sharing requests out evenly
workers = int(os.environ.get("WEB_CONCURRENCY", min(CORES, 4)))
max_active = int(os.environ.setdefault("SHOP_DEMO_MAX_ACTIVE", "1"))
max_waiting = int(os.environ.setdefault("SHOP_DEMO_MAX_WAITING", "16"))
os.environ.setdefault("SHOP_DEMO_MAX_WAIT", "5")
threads = max_active + max_waiting + 2
keepalive = 5
control_socket_disable = True  # no gunicornc socket shared by every gunicorn of the user ($HOME/.gunicorn)
timeout = 120  # a worker silent this long is restarted (loading the models on a busy machine included)
graceful_timeout = 10
# Django keeps one connection per thread open for this long (the demo settings read it; 0 reconnects every request).
os.environ.setdefault("SHOP_DEMO_CONN_MAX_AGE", "60")


preload_app = os.environ.get("SHOP_DEMO_PRELOAD", "1") == "1"


def when_ready(server):
    """In the master, once the application is loaded and before the workers fork: the vector cache, filled once."""
    from django.apps import apps

    if server.cfg.preload_app and apps.ready:
        from ragrec_django.services.serving import prepare_master_process

        prepare_master_process()


def post_worker_init(worker):
    """In each worker, after the fork and once Django is loaded: torch threads, then the models, warm."""
    from django.apps import apps

    if apps.ready:
        from ragrec_django.services.serving import prepare_web_process

        prepare_web_process()
