"""Fixtures of the demo shop's tests: an isolated MEDIA_ROOT per test and small catalogues."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    """Every test writes its pictures to its own folder, never to var/media."""
    root = tmp_path / "media"
    settings.MEDIA_ROOT = str(root)
    # Saving products must not queue encoding work in these tests.
    settings.RAGREC = {**getattr(settings, "RAGREC", {}), "AUTO_ENCODE": False}
    return root


@pytest.fixture
def seed():
    """Run seed_catalog and return its output."""

    def run(**options) -> str:
        out = io.StringIO()
        call_command("seed_catalog", stdout=out, **{"count": 60, "seed": 42, **options})
        return out.getvalue()

    return run
