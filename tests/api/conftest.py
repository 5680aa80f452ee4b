"""Fixtures of the REST API tests: the services' encoded catalogue, an API client, fresh throttle counters."""

import pytest
from django.core.cache import caches
from rest_framework.test import APIClient

from ragrec_django.conf import ragrec_settings
from ragrec_django.storage import keyword
from tests.services.conftest import catalogue, jpeg  # noqa: F401  (the encoded catalogue fixture, reused)


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    """No test is throttled by the requests of the tests before it."""
    caches[ragrec_settings.API_THROTTLE_CACHE].clear()
    yield
    caches[ragrec_settings.API_THROTTLE_CACHE].clear()


@pytest.fixture(autouse=True)
def _fresh_spelling_vocabulary():
    """Typo correction reads this test's catalogue, not one cached (for 30 s) from an earlier test."""
    keyword._cache.clear()


@pytest.fixture
def api():
    return APIClient()
