"""The LightGBM ranker: trained on a synthetic shop, gated against fusion, saved and loaded by content hash."""

import numpy as np
import pytest

pytest.importorskip("lightgbm")

from ragrec_django.ml import ranker as ranker_module  # noqa: E402
from ragrec_django.ml.ranker import FitOptions, LearnedRanker, NotEnoughData, RankerUnavailable, fit  # noqa: E402
from ragrec_django.ranking.learned import DAY, EventLog  # noqa: E402

T0 = 1_700_000_000.0


def synthetic_lines(visitors=80, days=120, seed=0):
    """Each shopper has 4 staple items they re-buy weekly-ish, plus a random extra now and then."""
    rng = np.random.default_rng(seed)
    lines = []
    for v in range(visitors):
        staples = rng.choice(40, 4, replace=False) + 1
        day = float(rng.integers(0, 7))
        while day < days:
            basket = set(rng.choice(staples, rng.integers(2, 5), replace=False).tolist())
            if rng.random() < 0.5:
                basket.add(int(rng.integers(41, 60)))
            for item in basket:
                lines.append(("v%d" % v, int(item), "o%d-%d" % (v, day), T0 + day * DAY, 1, True))
            day += float(rng.integers(5, 10))
    return lines


@pytest.fixture(scope="module")
def fitted():
    log = EventLog.build(synthetic_lines())
    options = FitOptions(label_days=60, holdout_days=20, min_queries=20, params={"min_data_in_leaf": 5}, factors=False)
    return fit(log, end=T0 + 121 * DAY, options=options)


def test_fit_trains_with_early_stopping_and_describes_the_model(fitted):
    meta = fitted.ranker.metadata
    assert meta["best_iteration"] >= 1 and meta["validation"]["ndcg@10"] > 0
    assert meta["training"]["queries"] > 20 and meta["candidate_recall"]["total"] > 0.5
    assert set(meta["feature_importance_gain"]) == set(fitted.ranker.features)
    assert meta["data_window"]["holdout_start"] == T0 + 101 * DAY


def test_gate_compares_with_fusion_on_the_holdout(fitted):
    gate = fitted.gate
    assert gate["queries"] > 20
    assert 0 < gate["baseline_ndcg@10"] <= 1 and gate["learned_ndcg@10"] >= gate["baseline_ndcg@10"] - 0.05


def test_artefact_round_trip_keeps_hash_and_scores(fitted, tmp_path):
    ranker = fitted.ranker
    folder = ranker.save(tmp_path / "model")
    loaded = LearnedRanker.load(folder)
    assert loaded.content_hash == ranker.content_hash
    rows = np.random.default_rng(1).random((5, len(ranker.features))).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(rows), ranker.predict(rows))
    (folder / "model.txt").write_text(ranker.model_text.replace("Tree=0", "Tree=0\n", 1))
    with pytest.raises(RankerUnavailable, match="hash"):
        LearnedRanker.load(folder)


def test_too_few_orders_say_so():
    log = EventLog.build(synthetic_lines(visitors=2, days=30))
    with pytest.raises(NotEnoughData, match="needs at least 50"):
        fit(log, end=T0 + 31 * DAY)


def test_factors_travel_with_the_artefact(tmp_path):
    pytest.importorskip("implicit")
    log = EventLog.build(synthetic_lines(visitors=30, days=60))
    factors = ranker_module._factors(log, T0 + 61 * DAY, FitOptions())
    ranker = LearnedRanker(model_text="tree", features=["a"], params={}, factors=factors)
    loaded = LearnedRanker.from_parts("tree", ranker.metadata_document(), ranker.factors_bytes())
    np.testing.assert_array_equal(loaded.factors.factors, factors.factors)
    for name in ranker_module.ITEM_MODEL_ARRAYS:
        np.testing.assert_array_equal(getattr(loaded.factors, name), getattr(factors, name))
    assert loaded.content_hash == ranker.content_hash


def test_training_queries_use_an_item_model_trained_before_their_time(monkeypatch):
    """Each training query sees the item model (ALS, kNN, repeat rates) of the period it falls in, trained on
    the events before that period only."""
    from ragrec_django.ranking import learned

    monkeypatch.setattr(ranker_module, "_has_implicit", lambda: True)
    monkeypatch.setattr(ranker_module, "_factors", lambda log, before, options: ("item model", before))
    seen = []
    real_query_rows = learned.query_rows

    def query_rows(log, point, *, factors=None, limit=200, vectors=None):
        seen.append((point.at, factors[1]))
        return real_query_rows(log, point, factors=None, limit=limit, vectors=vectors)

    monkeypatch.setattr(learned, "query_rows", query_rows)
    monkeypatch.setattr(ranker_module, "train", lambda *args, **kwargs: LearnedRanker("tree", ["a"], {}))
    # no basket table: the stand-in item model above is not one that can hold it
    options = FitOptions(label_days=60, item_model_days=20, min_queries=20, basket_neighbours=0)
    fit(EventLog.build(synthetic_lines()), end=T0 + 121 * DAY, options=options)
    label_start = T0 + 61 * DAY
    assert {before for _, before in seen} == {label_start, label_start + 20 * DAY, label_start + 40 * DAY}
    assert all(before <= at < before + 20 * DAY for at, before in seen)
