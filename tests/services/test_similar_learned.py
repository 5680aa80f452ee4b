"""The learned "similar items" ranker on the real database: training and the gate, serving through the API with
reasons, the fallback to fusion, and serving's features equal training's (point in time)."""

import logging
import time
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from ragrec_django.ml.ranker import SimilarOptions, similar_neighbours
from ragrec_django.models import Interaction, Item, RankerModel
from ragrec_django.ranking import item_candidates as stage
from ragrec_django.ranking import learned
from ragrec_django.services import item_candidates, ranker, recommend
from ragrec_django.storage import ranking as store
from tests.api.conftest import api  # noqa: F401  (the API client fixture)

pytestmark = pytest.mark.django_db

OPTIONS = SimilarOptions(max_queries=3000, neighbours=10, min_queries=20, anchors_per_order=3)


@pytest.fixture(autouse=True)
def fresh_models():
    ranker.forget_models()
    ranker.DatabaseSignals._popular.clear()
    item_candidates._warned.clear()
    yield
    ranker.forget_models()


def orders(days=120, per_day=4, seed=0):
    """Orders of two items that go together (item i with the item 7 places on, across categories) plus one at
    random, by 30 shoppers over ``days`` days; written in bulk."""
    rng = np.random.default_rng(seed)
    items = list(Item.objects.order_by("id").values_list("id", flat=True))
    now = timezone.now()
    rows = []
    for n in range(days * per_day):
        first = int(rng.integers(len(items)))
        basket = {items[first], items[(first + 7) % len(items)], int(rng.choice(items))}
        at = now - timedelta(days=days - n / per_day)
        rows += [
            Interaction(event="purchase", item_id=item, session_key="s%d" % (n % 30), order_id="o%d" % n, created_at=at)
            for item in basket
        ]
    Interaction.objects.bulk_create(rows)
    return items


def test_serving_features_from_the_database_are_training_features_and_read_nothing_after_t(catalogue):
    items = orders()
    at = time.time() - 30 * learned.DAY
    prices, categories = store.item_catalogue()
    log = learned.EventLog.build(list(store.event_lines()), prices=prices, categories=categories)
    factors = similar_neighbours(log, at, OPTIONS)
    spaces = ["text", "image"]
    names = stage.feature_names([s for s in stage.similar_quotas(spaces) if s != "co_view"])
    lists = item_candidates.space_lists_from_database(spaces)

    def served(anchor):
        return item_candidates.similar_rows(
            anchor, at=at, names=names, factors=factors, source=ranker.DatabaseSignals()
        )

    first = {}
    for anchor in items[:3]:
        point = stage.SimilarPoint("s1", anchor, at, frozenset())
        want = stage.query_rows(
            log, point, names, factors=factors, space_lists=lists(anchor), quotas=stage.similar_quotas(spaces)
        )
        got = first[anchor] = served(anchor)
        assert got[0].items.tolist() == want[2].items.tolist() and len(got[0]) > 10
        np.testing.assert_allclose(got[1], want[0], rtol=1e-5, equal_nan=True)
        assert not np.isnan(got[1][:, names.index("co_purchase_score")]).all()
    # orders after ``at`` of the same items change no candidate and no feature at ``at``
    later = timezone.now() - timedelta(days=5)
    Interaction.objects.bulk_create(
        [
            Interaction(event="purchase", item_id=item, session_key="late", order_id="late", created_at=later)
            for item in items[:6]
        ]
    )
    for anchor, (candidates, features) in first.items():
        again = served(anchor)
        assert again[0].items.tolist() == candidates.items.tolist()
        np.testing.assert_array_equal(again[1], features)


@pytest.fixture
def trained(catalogue):
    pytest.importorskip("lightgbm")
    orders()
    return item_candidates.train_similar_ranker(
        label_days=60, holdout_days=20, min_queries=20, margin=0.05, options=OPTIONS
    )


def test_training_stores_a_similar_version_promoted_only_when_it_beats_fusion(trained):
    version = RankerModel.objects.get(recommender="similar")
    gate = version.metadata["gate"]
    assert gate["against"] == "fusion" and gate["queries"] >= 20
    # the items bought together are 7 places apart: the vector spaces do not know it, the model does
    assert gate["learned_ndcg@10"] >= gate["baseline_ndcg@10"] + 0.05
    assert trained.promoted and version.status == RankerModel.Status.ACTIVE
    assert version.metadata["features"] == stage.feature_names(["space:text", "space:image", "co_purchase", "knn"])
    assert not RankerModel.objects.filter(recommender="for_you").exists()  # its own versions
    kept = item_candidates.train_similar_ranker(
        label_days=60, holdout_days=20, min_queries=20, margin=1.0, options=OPTIONS
    )
    assert not kept.promoted and "does not beat" in kept.message
    assert RankerModel.objects.get(recommender="similar", status="active").pk == version.pk


def test_learned_similar_through_the_api_ranks_what_is_bought_together_with_reasons(settings, trained, api):
    settings.RAGREC = {**settings.RAGREC, "RANKER": {"similar": "learned"}}
    items = list(Item.objects.order_by("id"))
    anchor, partner = items[0], items[7]
    response = api.get(reverse("ragrec_api:similar", args=[anchor.key]), {"k": 5})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 5 and all(r["reason"] for r in results)
    assert "learned" in results[0]["components"]
    assert partner.key in [r["id"] for r in results][:2]
    served = recommend.similar_items(anchor.key, k=5)
    first = {r.item.key: r.reason for r in served}
    assert first[partner.key] == "bought with %s" % anchor.title
    assert {r.reason for r in served} <= {"bought with %s" % anchor.title, "similar to %s" % anchor.title}


def test_without_a_model_or_with_a_broken_one_similar_serves_fusion_and_logs(settings, catalogue, caplog, api):
    key = Item.objects.order_by("id").first().key
    fusion = [r.item.key for r in recommend.similar_items(key, k=4)]
    settings.RAGREC = {**settings.RAGREC, "RANKER": {"similar": "learned"}}
    with caplog.at_level(logging.WARNING, logger="ragrec_django.ranker"):
        assert [r.item.key for r in recommend.similar_items(key, k=4)] == fusion
    assert "RANKER similar is 'learned' but no model is active" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ragrec_django.ranker"):
        recommend.similar_items(key, k=4)
    assert "no model is active" not in caplog.text  # said once per process
    RankerModel.objects.create(
        recommender="similar", number=1, status="active", content_hash="x", model_text="not a model", metadata={}
    )
    ranker.forget_models()
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="ragrec_django.ranker"):
        response = api.get(reverse("ragrec_api:similar", args=[key]), {"k": 4})
    assert response.status_code == 200 and len(response.json()["results"]) == 4
    assert response.json()["results"][0]["reason"].startswith("similar to")
    assert "Learned ranking of similar failed: serving fusion" in caplog.text


def test_command_and_task_train_list_and_roll_back_the_similar_ranker(catalogue, capsys):
    pytest.importorskip("lightgbm")
    from django.core.management import CommandError, call_command

    from ragrec_django.tasks import train_ranker_task

    with pytest.raises(CommandError, match="The current ranking stays"):
        call_command("ragrec_train_ranker", "--recommender", "similar", "--holdout-days", "5")
    result = train_ranker_task.apply(kwargs={"recommender": "similar", "holdout_days": 5}).get()
    assert result["trained"] is False and "no events" in result["message"]
    orders(days=60)
    call_command(
        "ragrec_train_ranker", "--recommender", "similar", "--label-days", "40", "--holdout-days", "15",
        "--min-orders", "20", "--force",
    )  # fmt: skip
    assert RankerModel.objects.get(recommender="similar").status == "active"
    call_command("ragrec_train_ranker", "--recommender", "similar", "--list")
    assert "#1   active" in capsys.readouterr().out
    call_command("ragrec_train_ranker", "--recommender", "similar", "--rollback")
    assert "No earlier version: similar serves fusion" in capsys.readouterr().out
    assert not RankerModel.objects.filter(status="active").exists()
