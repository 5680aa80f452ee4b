"""Stock as a learned-ranker feature: serving reads each candidate's ``in_stock`` from the catalogue, the in-memory
log given the same catalogue states builds the same column, the training log (past queries, no stock history) gives
NaN, trained artefacts record the feature, and an artefact trained before the feature still loads and serves."""

import time

import numpy as np
import pytest

from ragrec_django.ml.ranker import LearnedRanker, RankingData, train
from ragrec_django.models import Item, RankerModel
from ragrec_django.ranking import learned
from ragrec_django.services import history, ranker
from ragrec_django.services.results import Visitor
from ragrec_django.storage import ranking as store
from tests.services.test_ranker import fresh_models, memory_log, shop, trained  # noqa: F401 (fixtures reused)

pytestmark = pytest.mark.django_db

STOCK = learned.FEATURES.index("in_stock")


def test_served_features_hold_each_candidates_stock_and_the_log_builds_the_same_column(catalogue):
    shop(catalogue)
    at = time.time() - 20 * learned.DAY
    first = ranker.signals_for(Visitor(session_key="s1"), at, None)[0]
    out = [int(item) for item in first.items[::3]]  # every third candidate out of stock
    assert 0 < Item.objects.filter(id__in=out).update(in_stock=False) < len(first)
    candidates, past, signals = ranker.signals_for(Visitor(session_key="s1"), at, None)
    column = learned.feature_matrix(candidates, past, signals)[:, STOCK]
    assert column.tolist() == [0.0 if int(item) in out else 1.0 for item in candidates.items]
    # the materialised signals read the stock live as well
    now = float(int(time.time()))
    snapshot = ranker.refresh_signals(at=now)
    served = ranker.signals_for(Visitor(session_key="s1"), now, None, source=ranker.MaterialisedSignals(snapshot))
    assert learned.feature_matrix(*served)[:, STOCK].tolist() == [
        0.0 if int(item) in out else 1.0 for item in served[0].items
    ]
    # training's code (the in-memory log) given the catalogue's states: the same column, the same rows
    want = memory_log().candidates_at("ss1", at)  # the log keys sessions as "s<key>"
    assert want[0].items.tolist() == candidates.items.tolist()
    np.testing.assert_array_equal(learned.feature_matrix(*want)[:, STOCK], column)
    # the training log: there is no stock history, so a past query's stock is unknown (NaN), never today's
    log, _, _ = ranker.training_log()
    rows = learned.feature_matrix(*log.candidates_at("ss1", at))
    assert rows.shape[1] == len(learned.FEATURES) and np.isnan(rows[:, STOCK]).all()


def test_a_trained_artefact_records_the_stock_feature(trained):
    version = RankerModel.objects.get()
    assert "in_stock" in version.metadata["features"]
    features = ranker.active_model("for_you").features
    assert features[: len(learned.FEATURES)] == list(learned.FEATURES)  # then the vector spaces' features


def _older_version(factors) -> tuple[LearnedRanker, list[str]]:
    """A LightGBM model trained on the feature list of before the stock feature (every feature but ``in_stock``)."""
    older = [name for name in learned.FEATURES if name != "in_stock"]
    rng = np.random.default_rng(0)

    def part():
        x = rng.normal(size=(20, len(older))).astype(np.float32)
        y = (x[:, older.index("repeat_score")] > 0.5).astype(np.float64)
        y[0] = 1.0
        return x, y

    data = [RankingData.stack([part() for _ in range(n)], len(older)) for n in (40, 10)]
    model = train(*data, older, params={"min_data_in_leaf": 5}, max_rounds=20)
    model.factors = factors
    return model, older


def test_an_artefact_trained_before_the_stock_feature_still_loads_and_serves(settings, trained):
    model, older = _older_version(ranker.active_model("for_you").factors)
    version = store.store_ranker(
        "for_you",
        model_text=model.model_text,
        factors=model.factors_bytes(),
        metadata=model.metadata_document(),
        content_hash=model.content_hash,
    )
    store.promote_ranker(version)
    ranker.forget_models()
    loaded = ranker.active_model("for_you")
    assert loaded.content_hash == version.content_hash and loaded.features == older
    settings.RAGREC = {**settings.RAGREC, "RANKER": "learned"}
    Item.objects.filter(id__in=list(Item.objects.values_list("id", flat=True)[:5])).update(in_stock=False)
    result = history.for_you(Visitor(session_key="s2"), k=6)
    assert len(result) == 6 and result.fallback is None
    assert all("learned" in r.components for r in result)  # the model ranked them: fusion did not take over
    # its scores are those of its own columns of today's rows, in its order
    candidates, past, signals = ranker.signals_for(Visitor(session_key="s2"), time.time(), loaded.factors)
    rows = learned.feature_matrix(candidates, past, signals)
    mine = learned.serving_matrix(rows, loaded.features, learned.feature_names(candidates.spaces))
    assert mine.shape == (len(candidates), len(older))
    np.testing.assert_array_equal(mine, rows[:, [learned.FEATURES.index(name) for name in older]])
