"""Admission control for a threaded WSGI server: bounded work in flight, a bounded queue, 503 beyond.

Query encoding runs in the web process, on its CPU. A threaded server (gunicorn ``gthread``)
left alone runs as many requests at once as it has threads: past the machine's capacity every
one of them slows down together, until clients time out while the server keeps working on
requests nobody waits for. ``ConcurrencyLimit`` wraps the WSGI application of one process:

* at most ``max_active`` requests run the application at once;
* up to ``max_waiting`` more wait in line for a slot (first come, first served), each at most
  ``max_wait`` seconds;
* anything beyond is answered at once with ``503 Service Unavailable`` and ``Retry-After``
  (JSON ``{"detail": ...}``, or a short HTML page for browsers), without touching Django.

Give the server more threads than ``max_active + max_waiting``, so that a request over the limit
always finds a thread to be refused on, quickly, instead of queueing unseen in the server::

    # wsgi.py
    application = ConcurrencyLimit(get_wsgi_application(), max_active=2, max_waiting=12, max_wait=5)
    # gunicorn -k gthread --threads 16 -w <cores> ...

See docs/production.md ("Serving under load") for the sizing.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque


class ConcurrencyLimit:
    """WSGI middleware: ``max_active`` requests run, ``max_waiting`` wait up to ``max_wait`` s, the rest get 503."""

    def __init__(self, application, *, max_active: int, max_waiting: int, max_wait: float = 5.0, retry_after: int = 1):
        if max_active < 1 or max_waiting < 0 or max_wait < 0 or retry_after < 1:
            raise ValueError(
                "ConcurrencyLimit needs max_active >= 1, max_waiting >= 0, max_wait >= 0, retry_after >= 1."
            )
        self.application = application
        self.max_active, self.max_waiting = max_active, max_waiting
        self.max_wait, self.retry_after = max_wait, retry_after
        self._changed = threading.Condition()
        self._line: deque = deque()
        self.active = self.refused = 0

    @property
    def waiting(self) -> int:
        return len(self._line)

    def __call__(self, environ, start_response):
        if not self._admit():
            return self._busy(environ, start_response)
        try:
            response = self.application(environ, start_response)
        except BaseException:
            self._release()
            raise
        return _ClosingResponse(response, self._release)

    def _admit(self) -> bool:
        """Take a slot, after the requests already waiting; False when the request must be refused."""
        with self._changed:
            if self.active < self.max_active and not self._line:
                self.active += 1
                return True
            if len(self._line) >= self.max_waiting:
                self.refused += 1
                return False
            ticket = object()
            self._line.append(ticket)
            deadline = time.monotonic() + self.max_wait
            while self._line[0] is not ticket or self.active >= self.max_active:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._line.remove(ticket)
                    self.refused += 1
                    self._changed.notify_all()  # the next in line may be first now
                    return False
                self._changed.wait(remaining)
            self._line.popleft()
            self.active += 1
            self._changed.notify_all()  # the next in line may take another free slot
            return True

    def _release(self) -> None:
        with self._changed:
            self.active -= 1
            self._changed.notify_all()

    def _busy(self, environ, start_response):
        message = "The server is busy: please retry in %d s." % self.retry_after
        if "text/html" in environ.get("HTTP_ACCEPT", ""):
            body = ("<!doctype html><title>Busy</title><h1>The shop is busy</h1><p>%s</p>" % message).encode()
            content_type = "text/html; charset=utf-8"
        else:
            body, content_type = json.dumps({"detail": message}).encode(), "application/json"
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("Retry-After", str(self.retry_after)),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


class _ClosingResponse:
    """The application's response iterable; closing it also gives the slot back (once)."""

    def __init__(self, response, on_close):
        self._response, self._on_close = response, on_close

    def __iter__(self):
        return iter(self._response)

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        try:
            close = getattr(self._response, "close", None)
            if close is not None:
                close()
        finally:
            if on_close is not None:
                on_close()
