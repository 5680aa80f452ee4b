"""A process that serves requests runs torch on RAGREC["QUERY_THREADS"] threads, set once, and can warm its models."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
import torch
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.test.client import ClientHandler

from ragrec_django import registry, storage
from ragrec_django.ml.devices import limit_cpu_threads
from ragrec_django.services import search, serving


class CountingEncoder:
    """Stands in for an encoder: counts the texts it encodes (``fail=True``: loading it fails)."""

    encoded: list[tuple[str, list[str]]] = []

    def __init__(self, name: str, fail: bool = False):
        self.name, self.fail = name, fail

    def encode_texts(self, texts):
        if self.fail:
            raise OSError("no weights for %s" % self.name)
        self.encoded.append((self.name, list(texts)))
        return [[0.0]] * len(texts)


@pytest.fixture
def fresh_process(monkeypatch):
    """A process that has not served a request yet; torch.set_num_threads recorded instead of applied.

    A heap frozen by the test (``FREEZE_HEAP_AFTER_WARM_UP``) is given back to the collector afterwards.
    """
    calls = []
    monkeypatch.setattr(registry, "_serving_pid", None)
    monkeypatch.setattr(registry, "limit_cpu_threads", lambda threads: calls.append(threads) or threads)
    monkeypatch.setattr(storage, "warm_vector_cache", lambda: calls.append("vectors") or {})
    monkeypatch.setattr(search, "warm_caches", lambda: calls.append("search"))
    yield calls
    gc.unfreeze()


class Cycle:
    """An object in a reference cycle: only the cyclic garbage collector frees it."""

    def __init__(self):
        self.me = self


@pytest.mark.django_db  # request_started also closes old database connections
def test_the_first_request_of_a_process_sets_the_query_threads_once(fresh_process):
    request_started.send(sender=WSGIHandler, environ={})
    request_started.send(sender=WSGIHandler, environ={})
    assert fresh_process == [1]  # the default


@pytest.mark.django_db  # request_started also closes old database connections
def test_the_test_client_is_not_a_serving_process(fresh_process):
    request_started.send(sender=ClientHandler, environ={})
    assert fresh_process == []


@pytest.mark.parametrize("threads", [3, None])
def test_query_threads_setting(fresh_process, settings, threads):
    settings.RAGREC = {**settings.RAGREC, "QUERY_THREADS": threads}
    registry.prepare_serving_process()
    assert fresh_process == [threads]


@pytest.mark.parametrize("threads", [0, -2, 1.5, "2", True])
def test_bad_query_threads_are_a_configuration_error(monkeypatch, settings, threads):
    monkeypatch.setattr(registry, "_serving_pid", None)
    settings.RAGREC = {**settings.RAGREC, "QUERY_THREADS": threads}
    with pytest.raises(ImproperlyConfigured, match="QUERY_THREADS"):
        registry.prepare_serving_process()


def test_limit_cpu_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert limit_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        assert limit_cpu_threads(None) is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_warming_encodes_one_query_with_every_encoder_and_logs_failures(fresh_process, settings, caplog):
    backend = "%s.CountingEncoder" % __name__
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {
            "words": {"BACKEND": backend, "OPTIONS": {"name": "words"}},
            "pictures": {"BACKEND": backend, "OPTIONS": {"name": "pictures"}},
            "broken": {"BACKEND": backend, "OPTIONS": {"name": "broken", "fail": True}},
        },
        "SPACES": {
            "text": {"ENCODER": "words", "MODALITY": "text"},
            "image": {"ENCODER": "pictures", "MODALITY": "image"},
            "clip-text": {"ENCODER": "pictures", "MODALITY": "text"},
            "other": {"ENCODER": "broken", "MODALITY": "text"},
        },
    }
    CountingEncoder.encoded.clear()
    with caplog.at_level(logging.ERROR, logger="ragrec_django.registry"):
        registry.prepare_serving_process(warm=True)
    assert sorted(CountingEncoder.encoded) == [
        ("pictures", [registry.WARM_UP_QUERY]),
        ("words", [registry.WARM_UP_QUERY]),
    ]
    assert "Could not warm up encoder 'broken'" in caplog.text
    assert fresh_process == [1]


def test_a_web_process_is_prepared_then_its_caches_filled_then_its_heap_frozen(fresh_process, settings):
    settings.RAGREC = {**settings.RAGREC, "ENCODERS": {}, "SPACES": {}}
    gc.unfreeze()
    serving.prepare_web_process()
    assert fresh_process == [1, "vectors", "search"]
    assert gc.get_freeze_count() > 0


def test_warming_freezes_the_startup_heap_and_later_garbage_is_still_collected(fresh_process, settings):
    settings.RAGREC = {**settings.RAGREC, "ENCODERS": {}, "SPACES": {}}
    gc.unfreeze()
    tracked_before = len(gc.get_objects())
    startup = Cycle()
    serving.prepare_web_process()
    assert gc.get_freeze_count() > 0
    # a full collection now walks only what was made after the warm-up, not the whole startup heap
    assert len(gc.get_objects()) < tracked_before / 2
    assert not any(obj is startup for obj in gc.get_objects())
    later = weakref.ref(Cycle())
    gc.collect()
    assert later() is None


def test_the_heap_is_left_alone_when_freezing_is_off(fresh_process, settings):
    settings.RAGREC = {**settings.RAGREC, "ENCODERS": {}, "SPACES": {}, "FREEZE_HEAP_AFTER_WARM_UP": False}
    gc.unfreeze()
    serving.prepare_web_process()
    assert gc.get_freeze_count() == 0


def test_a_process_set_up_by_its_first_request_is_not_frozen(fresh_process):
    gc.unfreeze()
    registry.prepare_serving_process(warm=True)
    assert gc.get_freeze_count() == 0 and "vectors" not in fresh_process


def test_a_pre_fork_master_fills_the_vector_cache_on_one_thread_then_closes_its_connections(
    fresh_process, monkeypatch, caplog
):
    """``prepare_master_process``, before a pre-fork server forks its workers: torch on one thread (no thread pool
    for the workers to inherit), the vector cache filled, the connections closed, the heap frozen; a failure to
    warm is logged and the connections are still closed. The search caches and models are left to the workers."""
    monkeypatch.setattr(serving, "limit_cpu_threads", lambda threads: fresh_process.append(("threads", threads)))
    monkeypatch.setattr(storage, "close_all_connections", lambda: fresh_process.append("closed"))
    gc.unfreeze()
    serving.prepare_master_process()
    assert fresh_process == [("threads", 1), "vectors", "closed"]
    assert gc.get_freeze_count() > 0

    def unreachable():
        raise OSError("database not reachable yet")

    fresh_process.clear()
    monkeypatch.setattr(storage, "warm_vector_cache", unreachable)
    with caplog.at_level(logging.ERROR, logger="ragrec_django.services.serving"):
        serving.prepare_master_process()
    assert "Could not warm up the vector cache before forking" in caplog.text
    assert fresh_process == [("threads", 1), "closed"]


def test_a_vector_cache_that_cannot_be_warmed_is_logged_and_the_process_serves(fresh_process, monkeypatch, caplog):
    def unreachable():
        raise OSError("database not reachable yet")

    monkeypatch.setattr(storage, "warm_vector_cache", unreachable)
    with caplog.at_level(logging.ERROR, logger="ragrec_django.services.serving"):
        serving.warm_caches()
    assert "Could not warm up the vector cache" in caplog.text
    assert fresh_process == ["search"]  # the rest is still warmed


@pytest.mark.django_db
def test_warm_search_caches_spare_the_first_search_its_builds():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ragrec_django.models import Item

    Item.objects.create(key="m1", title="Blue ceramic mug", category="mugs")
    search.warm_caches()
    with CaptureQueriesContext(connection) as captured:
        search.corrected_query("ceramc mug", search.synonyms())
        search.prefix_index()
    assert not any("ts_stat" in q["sql"] for q in captured.captured_queries)
