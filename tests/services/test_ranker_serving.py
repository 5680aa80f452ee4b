"""The learned ranker's serving side: materialised signals equal the live aggregates, stale ones fall back,
every shared signal applies the provenance rules, and an A/B variant serves learned against fusion."""

import logging
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from ragrec_django.exceptions import UnknownServingConfig
from ragrec_django.models import Interaction, Item, RankerItemSignals, RankerSignalSnapshot
from ragrec_django.ranking import learned
from ragrec_django.ranking.rules import RulesError, ServingRules
from ragrec_django.services import history, ranker, serving
from ragrec_django.services.results import Visitor
from ragrec_django.storage import ranking as store
from tests.services.test_ranker import shop, trained  # noqa: F401  (the trained-model fixture, reused)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_models():
    ranker.forget_models()
    ranker.DatabaseSignals._popular.clear()
    ranker._reported.clear()
    yield
    ranker.forget_models()


def factors_of_every_item():
    ids = np.asarray(sorted(Item.objects.values_list("id", flat=True)), dtype=np.int64)
    return learned.ItemFactors(ids, np.random.default_rng(0).normal(size=(len(ids), 4)), 0.1, 1.0)


def assert_same_signals(visitor, at, factors, live, materialised):
    want = ranker.signals_for(visitor, at, factors, source=live)
    got = ranker.signals_for(visitor, at, factors, source=materialised)
    assert got[0].items.tolist() == want[0].items.tolist()
    np.testing.assert_allclose(learned.feature_matrix(*got), learned.feature_matrix(*want), rtol=1e-6, equal_nan=True)
    for item in got[0].items.tolist():
        assert materialised.seed_of(item) == live.seed_of(item)


@pytest.mark.parametrize("days_ago", [0, 20])
def test_materialised_signals_give_the_live_features_of_the_same_instant(catalogue, days_ago):
    shop(catalogue, visitors=30)
    items = list(Item.objects.order_by("id").values_list("id", flat=True))
    now = timezone.now()
    # events that the provenance rules leave out or cap, and events after the instant: none may differ
    Interaction.objects.bulk_create(
        [
            Interaction(
                event="purchase",
                item_id=items[i % 4],
                session_key="bot%d" % i,
                order_id="b%d" % i,
                origin="proxy",
                created_at=now - timedelta(days=30 + i),
            )
            for i in range(12)
        ]
        + [
            Interaction(
                event="purchase",
                item_id=items[5],
                session_key="u%d" % i,
                order_id="x",
                verified=False,
                created_at=now - timedelta(days=40),
            )
            for i in range(6)
        ]
    )
    at = time.time() - days_ago * learned.DAY
    snapshot = ranker.refresh_signals(at=at)
    assert snapshot.items == RankerItemSignals.objects.count() > 0 and snapshot.popular
    factors = factors_of_every_item()
    for visitor in ("s1", "s7", "s12", "nobody-yet"):
        assert_same_signals(
            Visitor(session_key=visitor), at, factors, ranker.DatabaseSignals(), ranker.MaterialisedSignals(snapshot)
        )


def provenance_shop():
    """Item a bought with b in 6 verified orders, with c in 8 orders from one origin, with d in 7 unverified ones."""
    a, b, c, d = (Item.objects.create(key="p%d" % i, title="p%d" % i, category="x") for i in range(4))
    when = timezone.now() - timedelta(days=2)
    rows = []

    def order(name, partner, **extra):
        rows.extend(
            Interaction(event="purchase", item=item, session_key=name, order_id=name, created_at=when, **extra)
            for item in (a, partner)
        )

    for i in range(6):
        order("plain%d" % i, b)
    for i in range(8):
        order("proxied%d" % i, c, origin="one-client")
    for i in range(7):
        order("unverified%d" % i, d, verified=False)
    Interaction.objects.bulk_create(rows)
    return a, b, c, d


@pytest.mark.parametrize("kind", ["live", "materialised"])
def test_every_shared_signal_counts_verified_purchases_and_caps_an_origin(settings, kind):
    settings.RAGREC = {**settings.RAGREC, "POPULARITY_MAX_PER_SOURCE": 3}
    a, b, c, d = provenance_shop()
    at = time.time()
    source = ranker.DatabaseSignals() if kind == "live" else ranker.MaterialisedSignals(ranker.refresh_signals(at=at))
    ((scores, orders),) = source.co_purchases([[a.id]], at)
    # a's orders: 6 plain + 3 of the 8 proxied (the cap) + none of the unverified ones
    assert scores == {a.id: 9.0, b.id: 6.0, c.id: 3.0} and orders == 9.0
    assert source.seed_of(b.id) == a.id and source.seed_of(d.id) is None
    popular = dict(source.popular(at, 10))
    assert popular == {a.id: 9.0, b.id: 6.0, c.id: 3.0}
    popularity, first_seen, _, category = source.item_signals(np.asarray([a.id, c.id, d.id]), at)
    assert popularity[7].tolist() == [9.0, 3.0, 0.0] and np.isnan(first_seen[2]) and category.tolist() == ["x"] * 3


def test_training_reads_verified_events_only():
    a, b, c, d = provenance_shop()
    read = list(store.event_lines())
    assert read and d.id not in {item for _, item, *_ in read}
    assert not any(visitor.startswith("sunverified") for visitor, *_ in read)


def test_missing_stale_or_mismatched_signals_fall_back_to_the_live_aggregates_and_say_so(settings, catalogue, caplog):
    shop(catalogue, visitors=5)
    now = time.time()
    with caplog.at_level(logging.WARNING, logger="ragrec_django.ranker"):
        assert isinstance(ranker.signal_source(now), ranker.DatabaseSignals)
        assert "none materialised yet" in caplog.text
        ranker.refresh_signals(at=now - 3 * 3600)
        assert isinstance(ranker.signal_source(now), ranker.MaterialisedSignals)
        settings.RAGREC = {**settings.RAGREC, "RANKER_SIGNALS_MAX_AGE_HOURS": 2}
        assert isinstance(ranker.signal_source(now), ranker.DatabaseSignals)
        assert "stale: materialised 3.0 hours ago" in caplog.text
        settings.RAGREC = {**settings.RAGREC, "RANKER_SIGNALS_MAX_AGE_HOURS": 24, "POPULARITY_MAX_PER_SOURCE": 9}
        assert isinstance(ranker.signal_source(now), ranker.DatabaseSignals)
        assert "parameters" in caplog.text
        # a time before the snapshot cannot be answered from it
        settings.RAGREC = {**settings.RAGREC, "POPULARITY_MAX_PER_SOURCE": 5}
        assert isinstance(ranker.signal_source(now - 4 * 3600), ranker.DatabaseSignals)


def test_learned_for_you_serves_the_same_list_from_materialised_signals(settings, trained):  # noqa: F811
    settings.RAGREC = {**settings.RAGREC, "RANKER": "learned"}
    RankerSignalSnapshot.objects.all().delete()
    ranker.forget_models()  # the process's cached snapshot too
    visitor = Visitor(session_key="s2")
    live = history.for_you(visitor, k=8)
    ranker.refresh_signals()
    materialised = history.for_you(visitor, k=8)
    assert [r.item.key for r in materialised] == [r.item.key for r in live]
    assert [r.reason for r in materialised] == [r.reason for r in live]


def test_served_for_you_ranks_as_training_computes_at_the_same_instant(trained):  # noqa: F811
    """The served path (the visitor's lines and titles in one statement, materialised signals, float32 ALS scores
    of every item on the request's thread) gives the candidates, features and list that training's in-memory
    log computes with the same model for the same visitor and instant."""
    model = ranker.active_model("for_you")
    assert model is not None and model.factors is not None and model.factors.neighbours is not None
    at = float(int(time.time()))  # a whole second: the snapshot's stored instant is exactly ``at``
    snapshot = ranker.refresh_signals(at=at)
    prices, categories = store.item_catalogue()
    log = learned.EventLog.build(
        list(store.event_lines()), prices=prices, categories=categories, stock=store.item_stock_states()
    )
    learned_ids = set()
    vectors = ranker.training_vectors()  # the catalogue's spaces: sources and features of the model
    assert model.metadata["spaces"] == vectors.spaces
    for key in ("s2", "s5", "s11", "s23"):
        # the log's "s<key>"
        candidates, past, signals = log.candidates_at("s" + key, at, factors=model.factors, vectors=vectors)
        features = learned.feature_matrix(candidates, past, signals)
        served = ranker.signals_for(
            Visitor(session_key=key),
            at,
            model.factors,
            source=ranker.MaterialisedSignals(snapshot),
            vectors=ranker.DatabaseVectors(vectors.spaces),
        )
        assert served[0].items.tolist() == candidates.items.tolist()
        np.testing.assert_allclose(learned.feature_matrix(*served), features, rtol=1e-6, equal_nan=True)
        scores = model.predict(features)
        want = learned.compose(candidates, scores, set(past.items[past.purchases].tolist()), 8)
        result = ranker.learned_for_you(Visitor(session_key=key), k=8, config="default", at=at)
        assert [r.item.id for r in result] == [int(candidates.items[p]) for p in want]
        np.testing.assert_allclose([r.components["learned"] for r in result], scores[want], rtol=1e-9)
        learned_ids.update(r.item.id for r in result)
    assert len(learned_ids) > 8  # four different lists, not one shared fallback


def test_signals_are_refreshed_by_the_command_the_task_and_training(trained, capsys):  # noqa: F811
    from ragrec_django.tasks import refresh_ranker_signals_task

    assert RankerSignalSnapshot.objects.count() == 1  # training materialised them
    first = RankerSignalSnapshot.objects.get()
    call_command("ragrec_train_ranker", "--signals")
    assert "Materialised ranker signals as of" in capsys.readouterr().out
    result = refresh_ranker_signals_task.apply().get()
    assert result["items"] == RankerItemSignals.objects.count() > 0
    assert RankerSignalSnapshot.objects.count() == 1 and RankerSignalSnapshot.objects.get().as_of > first.as_of


def test_an_experiment_serves_learned_against_fusion(settings, trained):  # noqa: F811
    settings.RAGREC = {
        **settings.RAGREC,
        "RANKER": "fusion",
        "SERVING_CONFIGS": {"default": {}, "learned": {"ranker": "learned"}},
        "EXPERIMENTS": {
            "ranking": {
                "RECOMMENDERS": ["for_you"],
                "VARIANTS": {
                    "fusion": {"CONFIG": "default", "WEIGHT": 1},
                    "learned": {"CONFIG": "learned", "WEIGHT": 1},
                },
            }
        },
    }
    seen = {}
    for number in range(40):
        visitor = Visitor(session_key="s%d" % number)
        served = serving.serve(
            "for_you", visitor, None, lambda config, v=visitor: history.for_you(v, k=5, config=config)
        )
        if len(served.result):
            learned_list = all("learned" in r.components for r in served.result)
            seen.setdefault(served.assignment.variant, set()).add(learned_list)
    assert seen == {"fusion": {False}, "learned": {True}}


def test_the_ranker_rule_is_checked():
    assert ServingRules.from_dict({"ranker": "learned"}).ranker == "learned"
    assert ServingRules.from_dict({}).ranker is None
    with pytest.raises(RulesError, match='ranker: expected "fusion" or "learned"'):
        ServingRules.from_dict({"ranker": "neural"})


def test_an_unknown_configuration_keeps_the_setting_for_the_ranker(settings):
    settings.RAGREC = {**settings.RAGREC, "RANKER": {"for_you": "learned"}}
    assert ranker.ranker_for("for_you", "no-such-config") == "learned"
    with pytest.raises(UnknownServingConfig):
        history.for_you(Visitor(session_key="s1"), k=3, config="no-such-config")
