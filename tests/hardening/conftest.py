"""Fixtures of the hardening tests: the services' encoded catalogue, an API client, fresh throttle counters,
and the demo's WSGI application served in-process (as a WSGI server would run it)."""

import pytest
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections

from tests.api.conftest import _fresh_spelling_vocabulary, _fresh_throttle_counters, api  # noqa: F401  (reused)
from tests.services.conftest import catalogue, jpeg  # noqa: F401  (the encoded catalogue fixture, reused)


@pytest.fixture
def wsgi_app():
    """Django's real WSGI handler (middleware, URL routing, error pages), inside the test's transaction.

    A WSGI server closes stale database connections at the start and end of each request; inside a test
    that would close the connection holding the test's transaction, so, as Django's test client does,
    those two signal handlers are disconnected while a request is handled (on every call: Django's test
    client connects them again after each of its own requests).
    """
    handler = WSGIHandler()

    def application(environ, start_response):
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        return handler(environ, start_response)

    try:
        yield application
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)
