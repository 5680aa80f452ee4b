"""Fixtures for the generator tests: a scripted OpenAI-compatible HTTP server and tiny causal LMs.

Nothing here touches Django or a database.
"""

from __future__ import annotations

import pytest

from .fakeserver import FakeChatServer


@pytest.fixture(autouse=True)
def _media_root():
    """Overrides the root conftest's Django-settings fixture: nothing here touches Django."""


@pytest.fixture(autouse=True)
def _no_auto_encode():
    """Overrides the root conftest's Django-settings fixture: nothing here touches Django."""


@pytest.fixture
def chat_server():
    server = FakeChatServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    """A tiny random GPT-2 with a chat template (shared, read-only)."""
    from ragrec_django.ml.generators.testing import make_tiny_causal_lm

    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm") / "tiny-chat-lm", seed=0)


@pytest.fixture(scope="session")
def tiny_plain_lm_dir(tmp_path_factory):
    """A tiny random GPT-2 whose tokenizer has no chat template."""
    from ragrec_django.ml.generators.testing import make_tiny_causal_lm

    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny_plain_lm") / "tiny-plain-lm", seed=1, chat_template=None)
