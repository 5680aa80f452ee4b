"""The one serving path of the API and the template tags: the variant served, the call, the impression recorded."""

import logging
from types import SimpleNamespace

import pytest
from django.db import connection

from ragrec_django.exceptions import ItemNotFound, UnknownServingConfig
from ragrec_django.models import Impression
from ragrec_django.services import experiments, serving
from ragrec_django.services.results import Recommendation, RecommendationList, Visitor

pytestmark = pytest.mark.django_db

EXPERIMENTS = {
    "ranking-test": {
        "RECOMMENDERS": ["trending"],
        "VARIANTS": {"control": {"CONFIG": "default", "WEIGHT": 50}, "narrow": {"CONFIG": "narrow", "WEIGHT": 50}},
    }
}


@pytest.fixture
def experiment(settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "SERVING_CONFIGS": {"default": {}, "narrow": {"max_k": 2}},
        "EXPERIMENTS": EXPERIMENTS,
    }


def listing(recommender: str, config: str, *keys: str) -> RecommendationList:
    items = [Recommendation(SimpleNamespace(key=key), 1.0, "because", ["because"], {}) for key in keys]
    return RecommendationList(recommender=recommender, config=config, items=items)


def trending(config: str) -> RecommendationList:
    return listing("trending", config, "a", "b")


def test_an_explicit_config_is_served_outside_any_experiment(experiment):
    served = serving.serve("trending", Visitor(session_key="s1"), "narrow", trending)
    assert served.result.config == "narrow"
    assert (served.assignment.experiment, served.assignment.variant) == ("", "")
    assert (served.recommender, served.visitor) == ("trending", Visitor(session_key="s1"))


def test_without_config_each_visitor_is_served_their_variant(experiment):
    chosen = experiments.configured_experiments()[0]
    for n in range(20):
        visitor = Visitor(session_key="visitor-%d" % n)
        variant = chosen.variant_for("session:visitor-%d" % n)
        served = serving.serve("trending", visitor, None, trending)
        assert (served.result.config, served.assignment.variant) == (variant.config, variant.name)
        assert served.assignment.experiment == "ranking-test"


def test_check_config_refuses_an_unknown_config_before_the_call():
    calls = []
    with pytest.raises(UnknownServingConfig, match="'nope'"):
        serving.serve("trending", Visitor(), "nope", calls.append, check_config=True)
    assert calls == []
    assert serving.serve("trending", Visitor(), "nope", lambda config: config).result == "nope"  # not checked


def test_serve_raises_the_services_errors():
    def missing(config):
        raise ItemNotFound("No item with id '9'.")

    with pytest.raises(ItemNotFound):
        serving.serve("similar", Visitor(), None, missing)


def test_serve_for_page_serves_an_empty_list_of_the_assigned_config_and_logs(experiment, caplog):
    logger = logging.getLogger("test.serving")
    visitor = Visitor(session_key="visitor-1")
    variant = experiments.configured_experiments()[0].variant_for("session:visitor-1")

    def missing(config):
        raise ItemNotFound("No item with id '9'.")

    with caplog.at_level(logging.WARNING, logger="test.serving"):
        served = serving.serve_for_page("trending", visitor, None, missing, logger=logger)
    assert served.result.items == [] and served.result.config == variant.config
    assert [(r.name, r.levelname) for r in caplog.records] == [("test.serving", "WARNING")]
    assert "no trending recommendations shown: No item with id '9'." in caplog.text


def test_serve_for_page_rolls_a_database_error_back_to_its_own_savepoint(caplog):
    def failing_sql(config):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    with caplog.at_level(logging.ERROR, logger="test.serving"):
        served = serving.serve_for_page(
            "trending", Visitor(), "default", failing_sql, logger=logging.getLogger("test.serving")
        )
    assert (
        served.result.items == []
        and "trending recommendations failed" in caplog.text
        and "no_such_table" in caplog.text
    )
    assert Impression.objects.count() == 0  # the connection still works: the request's transaction was not broken


def test_record_impression_stores_the_list_with_its_variant(experiment):
    visitor = Visitor(session_key="visitor-3")
    variant = experiments.configured_experiments()[0].variant_for("session:visitor-3")
    served = serving.serve("trending", visitor, None, trending)
    impression_id = serving.record_impression(served, channel=Impression.Channel.API)
    row = Impression.objects.get(pk=impression_id)
    assert (row.recommender, row.config, row.experiment, row.variant) == (
        "trending",
        variant.config,
        "ranking-test",
        variant.name,
    )
    assert (row.item_keys, row.session_key, row.channel) == (["a", "b"], "visitor-3", "api")


def test_record_impression_of_an_answer_uses_the_recommender_asked_for_and_its_products():
    answer = SimpleNamespace(products=listing("search", "default", "c").items, answer="Try c.")
    served = serving.serve("assistant", Visitor(user_id=None, session_key="s"), "default", lambda config: answer)
    row = Impression.objects.get(pk=serving.record_impression(served, channel=Impression.Channel.API))
    assert (row.recommender, row.config, row.item_keys) == ("assistant", "default", ["c"])


def test_a_list_made_elsewhere_is_recorded_in_no_experiment(experiment):
    served = serving.Served.outside_experiments(listing("trending", "narrow", "a"), Visitor(session_key="visitor-3"))
    row = Impression.objects.get(pk=serving.record_impression(served, channel=Impression.Channel.TEMPLATE))
    assert (row.config, row.experiment, row.variant, row.channel) == ("narrow", "", "", "template")


def test_empty_lists_and_lists_of_something_else_record_nothing(caplog):
    visitor = Visitor(session_key="s")
    assert (
        serving.record_impression(
            serving.Served.outside_experiments(listing("trending", "default"), visitor), channel=Impression.Channel.API
        )
        is None
    )
    odd = RecommendationList(recommender="trending", config="default", items=["not a recommendation"])
    with caplog.at_level(logging.ERROR):
        assert serving.record_impression(serving.Served.outside_experiments(odd, visitor), channel="template") is None
    assert "cannot record an impression of 'RecommendationList'" in caplog.text
    assert not Impression.objects.exists()
