"""Fixtures for the ML layer tests: real MiniLM weights, a tiny CLIP, and tricky image files.

These tests need torch, PIL and numpy only - no Django, no database.
"""

from __future__ import annotations

import pytest

from ragrec_django.ml.testing import make_tiny_clip_checkpoint
from ragrec_django.ml.text import TransformerTextEncoder

from .samples import build_samples


@pytest.fixture(autouse=True)
def _media_root():
    """Overrides the root conftest's Django-settings fixture: nothing here touches Django."""


@pytest.fixture(autouse=True)
def _no_auto_encode():
    """Overrides the root conftest's Django-settings fixture: nothing here touches Django."""


@pytest.fixture(scope="session")
def tiny_clip_options(tmp_path_factory):
    return make_tiny_clip_checkpoint(tmp_path_factory.mktemp("ml_tiny_clip"), seed=0)


@pytest.fixture(scope="session")
def minilm():
    return TransformerTextEncoder(device="cpu")


@pytest.fixture(scope="session")
def samples():
    """Image files and non-images covering the decoder's edge cases, as bytes."""
    return build_samples()
