"""Shared fixtures: the real PostgreSQL+pgvector (embedded unless DATABASE_URL is set),
a temporary MEDIA_ROOT, settings for small real encoders, and real Celery workers with
this run's own Redis database (``tests.helpers.workers``)."""

from __future__ import annotations

import os

import pytest

from tests.helpers.workers import redis_broker, start_worker, test_redis_url, worker_env  # noqa: F401

# Nothing a test saves may reach a real broker unless the test asks for one.
os.environ.setdefault("CELERY_BROKER_URL", "memory://")

#: Fixtures that need a PostgreSQL server: pytest-django's database fixtures and the fault tests' own cluster.
DATABASE_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "django_db_setup",
     "private_pg"}
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """Mark the tests that need PostgreSQL ``requires_postgres``: ``-m "not requires_postgres"`` runs the rest."""
    for item in items:
        if item.get_closest_marker("django_db") or DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.requires_postgres)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path_factory):
    settings.MEDIA_ROOT = str(tmp_path_factory.getbasetemp() / "media")


@pytest.fixture(autouse=True)
def _no_auto_encode(settings):
    """Saving items does not queue encoding unless a test turns it back on."""
    settings.RAGREC = {**settings.RAGREC, "AUTO_ENCODE": False}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """OPTIONS for OpenClipEncoder that load a small, randomly initialised CLIP from a checkpoint."""
    from ragrec_django.ml.testing import make_tiny_clip_checkpoint

    return make_tiny_clip_checkpoint(tmp_path_factory.mktemp("tiny_clip"), seed=0)


@pytest.fixture
def ragrec_encoders(settings, tiny_clip):
    """RAGREC with the real bundled MiniLM for "text" and a tiny CLIP for "image" and "clip-text"."""
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {
            "minilm": {"BACKEND": "ragrec_django.ml.text.TransformerTextEncoder", "OPTIONS": {"device": "cpu"}},
            "clip": {"BACKEND": "ragrec_django.ml.clip.OpenClipEncoder", "OPTIONS": {**tiny_clip, "device": "cpu"}},
        },
        "SPACES": {
            "text": {"ENCODER": "minilm", "MODALITY": "text"},
            "image": {"ENCODER": "clip", "MODALITY": "image"},
            "clip-text": {"ENCODER": "clip", "MODALITY": "text"},
        },
    }
    return settings.RAGREC
