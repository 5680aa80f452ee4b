"""The learned ranker trained on impressions: shown lists labelled by the clicks, adds to cart and purchases that
followed them (as the experiments report credits them), with the shown position as a feature fixed at 0 when
serving. Impressions and events are written through the services a shop uses."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from ragrec_django.models import Impression, Item, RankerModel
from ragrec_django.ranking import learned
from ragrec_django.services import experiments, history, ranker
from ragrec_django.services.events import EventInput, record_events
from ragrec_django.services.results import Visitor
from tests.services.test_ranker import fresh_models, shop  # noqa: F401 (fresh_models: autouse here too)

pytestmark = pytest.mark.django_db


def show(recommender, keys, session, at):
    """A list shown to ``session`` through the experiments service, moved to ``at``."""
    impression = experiments.record_impression(recommender, "default", keys, Visitor(session_key=session))
    Impression.objects.filter(pk=impression).update(created_at=at)
    return impression


def act(session, at, event, key, impression=None, order=""):
    record_events(
        [
            EventInput(
                event=event, item=key, session_key=session, impression_id=impression, order_id=order, created_at=at
            )
        ]
    )


def test_impression_labels_are_what_the_events_say(catalogue):
    keys = list(Item.objects.order_by("id").values_list("key", flat=True))
    ids = dict(Item.objects.values_list("key", "id"))
    t = timezone.now() - timedelta(days=10)
    minute = timedelta(minutes=1)
    shown = show("for_you", keys[:6], "v1", t)
    show("similar", keys[:3], "v1", t)  # another recommender's list: not a for_you query
    act("v1", t + minute, "click", keys[1], shown)
    act("v1", t + 2 * minute, "add_to_cart", keys[1])  # credited to the click: 2
    act("v1", t + minute, "click", keys[2], shown)
    act("v1", t + 2 * minute, "add_to_cart", keys[2])
    act("v1", t + 3 * minute, "purchase", keys[2], order="o1")  # purchase beats add to cart: 3
    act("v1", t + minute, "click", keys[3], shown)
    act("v1", t + timedelta(days=2), "purchase", keys[3], order="o2")  # outside the 24 h window: a click, 1
    act("v1", t + 2 * minute, "purchase", keys[0], order="o3")  # bought, never clicked: nothing to credit, 0
    act("v2", t + minute, "add_to_cart", keys[4])  # another visitor's: 0
    act("v1", t + 4 * minute, "view", keys[4])  # a view is not a label: 0
    until = (t + timedelta(days=1)).timestamp()
    act("v1", t + timedelta(days=1, minutes=5), "click", keys[5], shown)  # after the window's end: not read, 0

    [point] = ranker.impression_points("for_you", since=(t - minute).timestamp(), until=until)
    assert (point.visitor, point.at) == ("sv1", pytest.approx(t.timestamp()))
    assert point.items == tuple(ids[key] for key in keys[:6]) and point.positions == (0, 1, 2, 3, 4, 5)
    assert point.labels == (0.0, 2.0, 3.0, 1.0, 0.0, 0.0)
    # the click after the end counts once the window reaches it; an impression before ``since`` is not read
    [later] = ranker.impression_points("for_you", since=(t - minute).timestamp(), until=until + 86400)
    assert later.labels[5] == 1.0
    assert ranker.impression_points("for_you", since=(t + minute).timestamp(), until=until) == []


def test_a_shop_with_impressions_trains_a_model_with_the_position_and_serves_it_at_zero(settings, catalogue):
    pytest.importorskip("lightgbm")
    items = shop(catalogue, visitors=60, days=120)
    keys = dict(Item.objects.values_list("id", "key"))
    rng = np.random.default_rng(1)
    now = timezone.now()
    expected: dict[float, int] = {}
    bias = 0.5 ** np.arange(8) / (0.5 ** np.arange(8)).sum()  # the top of a list is clicked most (position bias)
    # for_you lists shown in the label window (60 days before the 20-day hold-out) to visitors of their own (so no
    # purchase of the shop's is credited to their clicks): each clicks one or two shown items, sometimes then adds
    # one to the cart or buys it, the top of a list clicked most
    for v in range(60):
        for days_ago in (30, 50, 70):
            at = now - timedelta(days=days_ago, hours=int(rng.integers(0, 12)))
            shown = [keys[i] for i in rng.choice(items, 8, replace=False).tolist()]
            impression = show("for_you", shown, "w%d" % v, at)
            labels = [0.0] * 8
            for position in rng.choice(8, int(rng.integers(1, 3)), replace=False, p=bias).tolist():
                act("w%d" % v, at + timedelta(minutes=1), "click", shown[position], impression)
                labels[position] = 1.0
                if rng.random() < 0.5:
                    act("w%d" % v, at + timedelta(minutes=3), "add_to_cart", shown[position])
                    labels[position] = 2.0
                if rng.random() < 0.3:
                    act(
                        "w%d" % v,
                        at + timedelta(minutes=5),
                        "purchase",
                        shown[position],
                        order="i%d-%d" % (v, days_ago),
                    )
                    labels[position] = 3.0
            for label in labels:
                expected["%g" % label] = expected.get("%g" % label, 0) + 1

    outcome = ranker.train_ranker(label_days=60, holdout_days=20, min_queries=20, margin=-1.0)
    version = RankerModel.objects.get()
    spaces = version.metadata["spaces"]  # the catalogue's ready spaces: sources and features too
    assert outcome.promoted and version.metadata["features"] == [*learned.feature_names(spaces), learned.POSITION]
    shown_queries = version.metadata["impressions"]
    assert shown_queries["queries"] == shown_queries["queries_with_a_positive"] == 180
    assert shown_queries["labels"] == expected
    assert version.metadata["feature_importance_gain"][learned.POSITION] > 0  # it learnt the position bias

    # serving: the model scores every candidate as if shown first (position 0)
    settings.RAGREC = {**settings.RAGREC, "RANKER": {"for_you": "learned"}}
    visitor = Visitor(session_key="s2")
    result = history.for_you(visitor, k=6)
    assert len(result) == 6 and all("learned" in r.components for r in result)
    model = ranker.active_model("for_you")
    candidates, past, signals = ranker.signals_for(
        visitor, timezone.now().timestamp(), model.factors, vectors=ranker.DatabaseVectors(spaces)
    )
    rows = learned.feature_matrix(candidates, past, signals)
    scores = model.predict(learned.with_position(rows, 0.0))
    produced = learned.feature_names(candidates.spaces)
    np.testing.assert_allclose(model.predict(learned.serving_matrix(rows, model.features, produced)), scores)
    best = {int(candidates.items[i]): scores[i] for i in range(len(candidates))}
    assert result.items[0].components["learned"] == pytest.approx(max(best[r.item.id] for r in result))


def test_a_shop_without_for_you_impressions_trains_as_today(catalogue):
    pytest.importorskip("lightgbm")
    items = shop(catalogue, visitors=60, days=120)
    keys = dict(Item.objects.values_list("id", "key"))
    at = timezone.now() - timedelta(days=40)
    shown = show("similar", [keys[i] for i in items[:5]], "s1", at)  # another recommender's list
    act("s1", at + timedelta(minutes=1), "click", keys[items[0]], shown)
    ranker.train_ranker(label_days=60, holdout_days=20, min_queries=20, margin=-1.0)
    version = RankerModel.objects.get()
    assert version.metadata["features"] == list(learned.feature_names(version.metadata["spaces"]))
    assert version.metadata["impressions"] == {"queries": 0, "queries_with_a_positive": 0, "labels": {}}
