"""Personalised search on the real database: a known visitor's search re-ordered by the learned "for you" model
and the search blend (``services.personal_search``), only among the query's own results; anonymous visitors,
another ranker, a missing model or blend and a broken blend get the plain search exactly."""

import io
import logging
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from ragrec_django.models import Interaction, Item, RankerModel
from ragrec_django.ranking import personal_search as blending
from ragrec_django.services import personal_search, ranker
from ragrec_django.services import search as search_service
from ragrec_django.services.results import Visitor
from tests.services.test_ranker import shop, trained  # noqa: F401  (the trained-model fixture, reused)

pytestmark = pytest.mark.django_db

BUYER = "mug-buyer"


@pytest.fixture(autouse=True)
def fresh_models():
    ranker.forget_models()
    ranker.DatabaseSignals._popular.clear()
    personal_search.forget_blend()
    search_service.forget_caches()
    yield
    ranker.forget_models()
    personal_search.forget_blend()


def a_blend(**weights) -> blending.Blend:
    """A blend over standardised features (mean 0, scale 1) with these weights, 0 for the others: the stand-in
    for one fitted by ``fit_blend`` (tests/ranking/test_personal_search.py fits them)."""
    n = len(blending.FEATURES)
    return blending.Blend(
        features=blending.FEATURES,
        weights=np.asarray([float(weights.get(name, 0.0)) for name in blending.FEATURES]),
        mean=np.zeros(n),
        scale=np.ones(n),
    )


#: Relevance first, then the visitor's repeat purchases and the model's score.
BLEND = {"relevance_log_rank": -1.0, "bought_before": 3.0, "for_you": 0.5}


def learned_search(settings):
    settings.RAGREC = {**settings.RAGREC, "RANKER": {"search": "learned"}}


def buy(item: Item, session: str = BUYER, orders: int = 3):
    """``session`` buys ``item`` in ``orders`` orders over the last weeks."""
    now = timezone.now()
    Interaction.objects.bulk_create(
        [
            Interaction(
                event="purchase",
                item=item,
                session_key=session,
                order_id="%s-%d" % (session, i),
                created_at=now - timedelta(days=7 * (i + 1)),
            )
            for i in range(orders)
        ]
    )


def listed(result) -> list[tuple]:
    return [(r.item.id, r.score, r.reason) for r in result]


def test_a_visitor_who_bought_an_item_gets_it_higher_for_a_matching_query(settings, trained):
    plain = search_service.search("mug", k=20)
    mugs = [r.item for r in plain if r.item.category == "Mugs"]
    last = mugs[-1]  # the matching item plain search ranks lowest
    buy(last)
    learned_search(settings)
    personal_search.store_blend(a_blend(**BLEND))
    result = search_service.search("mug", k=20, visitor=Visitor(session_key=BUYER))
    before = [r.item.id for r in plain].index(last.id)
    after = [r.item.id for r in result].index(last.id)
    assert after < before
    moved = result.items[after]
    assert moved.reason == blending.BOUGHT_REASON and moved.reasons[1] == plain.items[before].reason
    assert moved.components["personal"] > 0 and "relevance" in moved.components
    # the same items, re-ordered: nothing added, nothing dropped
    assert sorted(r.item.id for r in result) == sorted(r.item.id for r in plain)
    # the scores keep the plain search's scale (boosts and diversity read them), falling
    assert [r.score for r in result] == sorted((r.score for r in result), reverse=True)
    assert result.items[0].score == pytest.approx(plain.items[0].score)


def test_personalisation_never_brings_in_an_item_the_query_does_not_match(settings, trained):
    settings.RAGREC = {**settings.RAGREC, "SEARCH_WEIGHTS": {"keyword": 1.0}}  # the keyword matches only
    kettle = Item.objects.get(title="Copper stovetop tea kettle")
    buy(kettle, orders=6)
    plain = search_service.search("mug", k=20)
    learned_search(settings)
    personal_search.store_blend(a_blend(**BLEND))
    result = search_service.search("mug", k=20, visitor=Visitor(session_key=BUYER))
    assert kettle.id not in {r.item.id for r in result}
    assert sorted(r.item.id for r in result) == sorted(r.item.id for r in plain) and len(plain) >= 2


def test_anonymous_visitors_and_the_fusion_ranker_get_the_plain_search_exactly(settings, trained):
    buy(Item.objects.get(title="Green enamel camping mug"))
    plain = listed(search_service.search("mug", k=10))
    known = listed(search_service.search("mug", k=10, visitor=Visitor(session_key=BUYER)))
    assert known == plain  # RANKER "fusion" (the default): the visitor changes nothing
    learned_search(settings)
    personal_search.store_blend(a_blend(**BLEND))
    assert listed(search_service.search("mug", k=10)) == plain
    assert listed(search_service.search("mug", k=10, visitor=Visitor())) == plain
    # a session with no history
    assert listed(search_service.search("mug", k=10, visitor=Visitor(session_key="new-here"))) == plain
    # a price or date sort is the order the shopper asked for
    by_price = listed(search_service.search("mug", k=10, sort="price_asc"))
    assert listed(search_service.search("mug", k=10, sort="price_asc", visitor=Visitor(session_key=BUYER))) == by_price


def test_no_for_you_model_serves_the_plain_search_and_says_so(settings, catalogue, caplog):
    shop(catalogue, visitors=5)
    buy(Item.objects.get(title="Green enamel camping mug"))
    plain = listed(search_service.search("mug", k=10))
    learned_search(settings)
    personal_search.store_blend(a_blend(**BLEND))
    with caplog.at_level(logging.WARNING, logger="ragrec_django.ranker"):
        assert listed(search_service.search("mug", k=10, visitor=Visitor(session_key=BUYER))) == plain
    assert "no for_you model is active" in caplog.text


def test_no_blend_or_a_broken_one_serves_the_plain_search_and_says_so(settings, trained, caplog):
    buy(Item.objects.get(title="Green enamel camping mug"))
    plain = listed(search_service.search("mug", k=10))
    learned_search(settings)
    visitor = Visitor(session_key=BUYER)
    with caplog.at_level(logging.WARNING, logger="ragrec_django.ranker"):
        assert listed(search_service.search("mug", k=10, visitor=visitor)) == plain
        assert "no search blend is active" in caplog.text
        version = personal_search.store_blend(a_blend(**BLEND))
        RankerModel.objects.filter(pk=version.pk).update(model_text="{not a blend")
        personal_search.forget_blend()
        assert listed(search_service.search("mug", k=10, visitor=visitor)) == plain
    assert "Personalised search failed" in caplog.text
    # rolled back to no version: plain search again, and the for_you model is untouched
    assert ranker.rollback_version("search") is None
    assert ranker.active_model("for_you") is not None


def test_the_api_serves_a_personalised_search(settings, trained):
    plain = search_service.search("mug", k=20)
    last = [r.item for r in plain if r.item.category == "Mugs"][-1]
    buy(last)
    learned_search(settings)
    personal_search.store_blend(a_blend(**BLEND))
    response = APIClient().get(reverse("ragrec_api:search"), {"q": "mug", "k": 20, "session": BUYER})
    assert response.status_code == 200, response.json()
    results = response.json()["results"]
    ids = [r["id"] for r in results]
    assert ids.index(last.key) < [r.item.key for r in plain].index(last.key)
    assert results[ids.index(last.key)]["reason"] == blending.BOUGHT_REASON


def test_a_blend_is_fitted_on_the_orders_the_model_did_not_learn_from_and_serves(settings, trained):
    model = ranker.active_model("for_you")
    version = personal_search.train_blend(min_queries=10)
    assert version.recommender == "search" and version.status == RankerModel.Status.ACTIVE
    assert version.metadata["since"] == model.metadata["data_window"]["holdout_start"]
    assert version.metadata["for_you_model"] == model.content_hash and version.metadata["queries"] >= 10
    blend = personal_search.active_blend()
    assert blend.features == blending.FEATURES and np.isfinite(blend.weights).all()
    assert ranker.active_model("for_you").content_hash == model.content_hash  # the for_you model is untouched
    plain = search_service.search("mug", k=20)
    learned_search(settings)
    result = search_service.search("mug", k=20, visitor=Visitor(session_key="s2"))
    assert sorted(r.item.id for r in result) == sorted(r.item.id for r in plain)
    assert all("personal" in r.components for r in result)
    # the command fits another version and activates it; too few searches store nothing
    call_command("ragrec_train_search_blend", "--min-queries", "10", stdout=io.StringIO(), stderr=io.StringIO())
    assert RankerModel.objects.filter(recommender="search").count() == 2
    with pytest.raises(CommandError, match="the blend needs at least 1000000"):
        call_command("ragrec_train_search_blend", "--min-queries", "1000000", stderr=io.StringIO())
    assert RankerModel.objects.filter(recommender="search").count() == 2


def test_no_for_you_model_fits_no_blend(catalogue):
    shop(catalogue, visitors=5)
    with pytest.raises(personal_search.NotEnoughQueries, match="No for_you model is active"):
        personal_search.train_blend()
    with pytest.raises(CommandError, match="No for_you model is active"):
        call_command("ragrec_train_search_blend", stderr=io.StringIO())
    assert not RankerModel.objects.exists()
