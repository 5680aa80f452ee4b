"""The learned ranker served from the database: the same features as training, fallbacks, training and the gate."""

import logging
import time
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from ragrec_django.models import Interaction, Item, RankerModel
from ragrec_django.ranking import learned
from ragrec_django.services import history, ranker
from ragrec_django.services.results import Visitor
from ragrec_django.storage import ranking as store

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_models():
    ranker.forget_models()
    ranker.DatabaseSignals._popular.clear()
    yield
    ranker.forget_models()


def shop(catalogue, visitors=40, days=100, seed=0):
    """Shoppers re-buying 3 staples every 5 to 12 days, sometimes with one more item; written in bulk."""
    rng = np.random.default_rng(seed)
    items = list(Item.objects.order_by("id").values_list("id", flat=True))
    now = timezone.now()
    rows = []
    for v in range(visitors):
        staples = rng.choice(items, 3, replace=False).tolist()
        day = float(rng.integers(0, 6))
        while day < days:
            basket = set(rng.choice(staples, int(rng.integers(1, 4)), replace=False).tolist())
            if rng.random() < 0.5:
                basket.add(int(rng.choice(items)))
            at = now - timedelta(days=days - day)
            rows += [
                Interaction(
                    event="purchase", item_id=item, session_key="s%d" % v, order_id="o%d-%d" % (v, day), created_at=at
                )
                for item in basket
            ]
            if rng.random() < 0.3:
                rows.append(
                    Interaction(event="view", item_id=int(rng.choice(items)), session_key="s%d" % v, created_at=at)
                )
            day += float(rng.integers(5, 13))
    Interaction.objects.bulk_create(rows)
    return items


def memory_log():
    prices, categories = store.item_catalogue()
    return learned.EventLog.build(
        list(store.event_lines()), prices=prices, categories=categories, stock=store.item_stock_states()
    )


def test_database_signals_give_the_features_of_the_in_memory_log(catalogue):
    shop(catalogue)
    log = memory_log()
    at = time.time() - 20 * learned.DAY  # also checks that later events are not read
    factors = learned.ItemFactors(log.item_ids, np.random.default_rng(0).normal(size=(len(log.item_ids), 4)), 0.1, 1.0)
    for visitor in ("s1", "s7"):
        want = log.candidates_at("s" + visitor, at, factors=factors)  # the log keys sessions as "s<key>"
        got = ranker.signals_for(Visitor(session_key=visitor), at, factors)
        assert got[0].items.tolist() == want[0].items.tolist()
        np.testing.assert_allclose(
            learned.feature_matrix(*got), learned.feature_matrix(*want), rtol=1e-5, equal_nan=True
        )


def test_signals_at_t_never_read_an_event_after_t(catalogue):
    items = shop(catalogue, visitors=10)
    at = time.time() - 30 * learned.DAY
    before = ranker.signals_for(Visitor(session_key="s3"), at, None)
    later = timezone.now() - timedelta(days=10)
    Interaction.objects.bulk_create(
        [
            Interaction(event="purchase", item_id=item, session_key=s, order_id="late-" + s, created_at=later)
            for s in ("s3", "s4", "new")
            for item in items[:5]
        ]
    )
    ranker.DatabaseSignals._popular.clear()
    after = ranker.signals_for(Visitor(session_key="s3"), at, None)
    assert after[0].items.tolist() == before[0].items.tolist()
    np.testing.assert_array_equal(learned.feature_matrix(*after), learned.feature_matrix(*before))


def test_learned_setting_without_a_model_serves_fusion_and_says_so(settings, catalogue, caplog):
    shop(catalogue, visitors=5)
    visitor = Visitor(session_key="s1")
    fusion = [r.item.key for r in history.for_you(visitor, k=5)]
    settings.RAGREC = {**settings.RAGREC, "RANKER": {"for_you": "learned"}}
    with caplog.at_level(logging.WARNING, logger="ragrec_django.ranker"):
        assert [r.item.key for r in history.for_you(visitor, k=5)] == fusion
    assert "no model is active" in caplog.text


def test_too_few_orders_keep_the_current_ranking(catalogue):
    from ragrec_django.ml.ranker import NotEnoughData

    shop(catalogue, visitors=3, days=20)
    with pytest.raises(NotEnoughData, match="needs at least"):
        ranker.train_ranker(label_days=10, holdout_days=5)
    assert not RankerModel.objects.exists()


@pytest.fixture
def trained(catalogue):
    pytest.importorskip("lightgbm")
    shop(catalogue, visitors=60, days=120)
    return ranker.train_ranker(label_days=60, holdout_days=20, min_queries=20, margin=-1.0)


def test_training_stores_a_version_and_the_gate_promotes_it(trained):
    version = RankerModel.objects.get()
    assert trained.promoted and version.status == RankerModel.Status.ACTIVE and "Promoted" in trained.message
    gate = version.metadata["gate"]
    assert gate["against"] == "fusion" and gate["queries"] >= 20 and 0 < gate["baseline_ndcg@10"] <= 1
    assert version.metadata["content_hash"] == version.content_hash and version.metadata["best_iteration"] >= 1


def test_the_gate_keeps_fusion_when_the_model_does_not_win_by_the_margin(trained):
    outcome = ranker.train_ranker(label_days=60, holdout_days=20, min_queries=20, margin=1.0)
    assert not outcome.promoted and "does not beat" in outcome.message
    assert RankerModel.objects.filter(status="active").count() == 1 and RankerModel.objects.count() == 2
    assert store.rollback_ranker("for_you") is None and not RankerModel.objects.filter(status="active").exists()


def test_learned_for_you_ranks_with_reasons_and_contributing_features(settings, trained):
    settings.RAGREC = {**settings.RAGREC, "RANKER": "learned"}
    result = history.for_you(Visitor(session_key="s2"), k=6)
    assert len(result) == 6 and result.fallback is None
    assert all("learned" in r.components and r.reason for r in result)
    assert any(name.startswith("feature:") for name in result.items[0].components)
    bought = set(Interaction.objects.filter(session_key="s2", event="purchase").values_list("item__key", flat=True))
    assert sum(r.item.key in bought for r in result) <= 3  # repeats take at most half the list
    assert {r.reason for r in result if r.item.key in bought} <= {"you buy this often", "you bought this before"}


def test_learned_bought_together_serves_the_item_model_neighbours_of_the_basket(settings, trained, caplog):
    model = ranker.active_model("for_you")
    basket = list(Item.objects.order_by("id").values_list("key", flat=True)[:2])
    ids = list(Item.objects.filter(key__in=basket).order_by("id").values_list("id", flat=True))
    counts = history.bought_together_for_basket(basket, k=5)
    assert all("co_purchases" in r.components for r in counts)
    settings.RAGREC = {**settings.RAGREC, "RANKER": {"bought_together": "learned"}}
    result = history.bought_together_for_basket(basket, k=5)
    want = learned.basket_partners(model.factors, ids, set(ids), 5)
    assert [r.item.id for r in result] == [item for item, _, _ in want] and len(result) == 5
    assert all("item_knn" in r.components and r.reason.startswith("bought with ") for r in result)
    assert not {r.item.key for r in result} & set(basket)
    RankerModel.objects.update(status="candidate")  # no active model: the counts serve, and it is said
    ranker.forget_models()
    with caplog.at_level(logging.WARNING, logger="ragrec_django.ranker"):
        assert [r.item.id for r in history.bought_together_for_basket(basket, k=5)] == [r.item.id for r in counts]
    assert "no model with neighbours" in caplog.text


def test_learned_bought_together_is_the_basket_table_of_the_database_orders(settings, trained):
    """What a basket is served is the formula of ``ml.ranker.basket_table`` computed here from the stored orders:
    each order weighs 1 / its items * 0.5 ** (age / 120 days), over sqrt(orders holding i * orders holding j) + 20,
    scaled so the largest pair is 1 and stored as float16, summed over the basket's items."""
    import math

    from ragrec_django.ml.ranker import FitOptions

    options = FitOptions()
    model = ranker.active_model("for_you")
    assert model.factors.basket_indptr is not None and len(model.factors.basket_neighbours)
    end = max(t.timestamp() for t in Interaction.objects.values_list("created_at", flat=True)) + 1.0
    orders = {}
    for session, order, item, at in Interaction.objects.filter(event="purchase").values_list(
        "session_key", "order_id", "item_id", "created_at"
    ):
        held = orders.setdefault((session, order), [at.timestamp(), set()])
        held[0] = min(held[0], at.timestamp())
        held[1].add(item)
    count, together = {}, {}
    for at, items in orders.values():
        weight = 0.5 ** ((end - at) / learned.DAY / options.basket_half_life_days) / len(items)
        for i in items:
            count[i] = count.get(i, 0) + 1
            for j in items - {i}:
                together[i, j] = together.get((i, j), 0.0) + weight
    similarity = {
        (i, j): w / (math.sqrt(count[i] * count[j]) + options.basket_shrink) for (i, j), w in together.items()
    }
    assert max(count.values()) < options.basket_neighbours  # a small catalogue: every pair is kept
    top = max(similarity.values())
    stored = {pair: float(np.float16(value / top)) for pair, value in similarity.items()}

    settings.RAGREC = {**settings.RAGREC, "RANKER": {"bought_together": "learned"}}
    items = list(Item.objects.order_by("id"))
    for basket in (items[:2], items[3:6]):
        ids = {item.id for item in basket}
        scores = {}
        for (i, j), value in stored.items():
            if i in ids and j not in ids:
                scores[j] = scores.get(j, 0.0) + value
        want = sorted(scores, key=lambda j: (-scores[j], j))[:5]
        result = history.bought_together_for_basket([item.key for item in basket], k=5)
        assert [r.item.id for r in result] == want
        assert [r.components["item_knn"] for r in result] == pytest.approx([scores[j] for j in want], rel=1e-6)
        titles = {item.id: item.title for item in basket}
        for r in result:
            strongest = min(ids, key=lambda i: (-stored.get((i, r.item.id), -1.0), i))
            assert r.reason == "bought with %s" % titles[strongest]


def test_a_broken_model_falls_back_to_fusion_and_logs(settings, trained, caplog):
    RankerModel.objects.update(model_text="not a model")
    visitor = Visitor(session_key="s2")
    fusion = [r.item.key for r in history.for_you(visitor, k=5)]
    settings.RAGREC = {**settings.RAGREC, "RANKER": "learned"}
    with caplog.at_level(logging.ERROR, logger="ragrec_django.ranker"):
        assert [r.item.key for r in history.for_you(visitor, k=5)] == fusion
    assert "serving fusion" in caplog.text


def test_command_says_when_there_are_too_few_orders_and_the_task_does_not_fail(catalogue):
    from django.core.management import CommandError, call_command

    from ragrec_django.tasks import train_ranker_task

    shop(catalogue, visitors=3, days=20)
    with pytest.raises(CommandError, match="The current ranking stays"):
        call_command("ragrec_train_ranker", "--holdout-days", "5")
    result = train_ranker_task.apply(kwargs={"holdout_days": 5}).get()
    assert result["trained"] is False and "needs at least" in result["message"]


def test_command_lists_promotes_and_rolls_back_versions(trained, capsys):
    from django.core.management import call_command

    call_command(
        "ragrec_train_ranker", "--label-days", "60", "--holdout-days", "20", "--min-orders", "20", "--no-promote"
    )
    call_command("ragrec_train_ranker", "--list")
    listing = capsys.readouterr().out
    assert "#2   candidate" in listing and "#1   active" in listing
    call_command("ragrec_train_ranker", "--promote", "2")
    assert RankerModel.objects.get(status="active").number == 2
    call_command("ragrec_train_ranker", "--rollback")
    assert RankerModel.objects.get(status="active").number == 1


def test_admin_lists_versions_with_their_metrics_and_rolls_back(trained, admin_client):
    from django.urls import reverse

    version = RankerModel.objects.get()
    url = reverse("admin:ragrec_django_rankermodel_changelist")
    page = admin_client.get(url)
    assert page.status_code == 200 and version.content_hash[:12] in page.content.decode()
    assert "(fusion)" in page.content.decode()
    response = admin_client.post(url, {"action": "roll_back", "_selected_action": [version.pk]}, follow=True)
    assert "fusion serves" in response.content.decode()
    assert not RankerModel.objects.filter(status="active").exists()
