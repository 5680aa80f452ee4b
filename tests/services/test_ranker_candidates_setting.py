"""``RAGREC["RANKER_CANDIDATES"]``: how many candidates the learned rankers' stages gather, in serving ("for you",
similar items) and in training (the options both training jobs pass on)."""

from __future__ import annotations

import time

import pytest

from ragrec_django.ml import ranker as trainer
from ragrec_django.ranking import item_candidates as stage
from ragrec_django.ranking import learned
from ragrec_django.services import item_candidates, ranker
from ragrec_django.services.results import Visitor
from ragrec_django.storage import ranking as store
from tests.services.test_ranker import fresh_models, shop, trained  # noqa: F401 (fresh_models: autouse here too)
from tests.services.test_similar_learned import OPTIONS, orders

pytestmark = pytest.mark.django_db


def with_candidates(settings, count: int) -> None:
    settings.RAGREC = {**settings.RAGREC, "RANKER_CANDIDATES": count}


def test_for_you_serves_at_most_the_setting_and_its_first_ones(settings, trained):  # noqa: F811
    model = ranker.active_model("for_you")
    at = time.time()
    full = ranker.signals_for(Visitor(session_key="s2"), at, model.factors)[0].items.tolist()
    assert len(full) > 5
    with_candidates(settings, 5)
    few = ranker.signals_for(Visitor(session_key="s2"), at, model.factors)[0].items.tolist()
    assert len(few) == 5 and set(few) <= set(full)
    assert ranker.learned_for_you(Visitor(session_key="s2"), k=8, config="default") is not None


def test_similar_items_serve_at_most_the_setting(settings, catalogue):
    items = orders()
    at = time.time() - 30 * learned.DAY
    prices, categories = store.item_catalogue()
    log = learned.EventLog.build(list(store.event_lines()), prices=prices, categories=categories)
    factors = trainer.similar_neighbours(log, at, OPTIONS)
    names = stage.feature_names([s for s in stage.similar_quotas(["text", "image"]) if s != "co_view"])

    def served():
        return item_candidates.similar_rows(items[0], at=at, names=names, factors=factors)[0]

    assert len(served()) > 7
    with_candidates(settings, 7)
    candidates = served()
    assert len(candidates) <= 7 and len(candidates.items) == len(candidates)


class Recorded(Exception):
    """Raised by the stand-in trainer once it has the options a training job built."""


def test_both_training_jobs_take_the_setting(settings, monkeypatch, catalogue):
    orders()
    with_candidates(settings, 33)
    seen = {}

    def recording(name):
        def fit(log, **kwargs):
            seen[name] = kwargs["options"]
            raise Recorded

        return fit

    monkeypatch.setattr(trainer, "fit", recording("for_you"))
    monkeypatch.setattr(trainer, "fit_similar", recording("similar"))
    for job in (ranker.train_ranker, item_candidates.train_similar_ranker):
        with pytest.raises(Recorded):
            job()
    assert seen["for_you"].candidates == 33 and seen["similar"].candidates == 33
