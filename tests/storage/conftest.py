"""Fixtures of the storage tests: the services' encoded catalogue (keyword search reads its item mirror)."""

import pytest

from tests.services.conftest import catalogue  # noqa: F401  (the encoded catalogue fixture, reused)


@pytest.fixture(autouse=True)
def _fresh_planner_estimates():
    """Each test starts without the process's planner estimates and category centroids of earlier tests (kept a
    minute by design: a test that analyses its own tiny tables must not see another's figures)."""
    from ragrec_django.storage import ann, centroids

    ann._share_estimates.clear()
    centroids.forget()
