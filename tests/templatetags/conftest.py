"""Fixtures of the template tag and demo page tests: the services' encoded catalogue."""

import pytest

from ragrec_django.storage import keyword
from tests.services.conftest import catalogue, jpeg  # noqa: F401  (the encoded catalogue fixture, reused)


@pytest.fixture(autouse=True)
def _fresh_spelling_vocabulary():
    """Typo correction reads this test's catalogue, not one cached (for 30 s) from an earlier test."""
    keyword._cache.clear()
