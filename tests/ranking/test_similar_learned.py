"""The learned "similar items" ranker's pure part: training queries, point-in-time features, the fusion order."""

import numpy as np
import pytest

from ragrec_django.ranking import item_candidates as stage
from ragrec_django.ranking.learned import DAY, EventLog
from tests.ranking.test_learned import T0, _lines  # the same three shoppers

PRICES = {1: 10.0, 2: 20.0, 3: 5.0, 4: 10.0, 5: 40.0, 9: 1.0}
CATEGORIES = {1: "mugs", 2: "mugs", 3: "tea", 4: "tea", 5: "lamps"}


def _log(lines):
    return EventLog.build(lines, prices=PRICES, categories=CATEGORIES)


def _spaces(anchor):
    """A fixed text space: every other item by distance of ids (content: no time)."""
    others = sorted((abs(item - anchor), item) for item in (1, 2, 3, 4, 5, 9) if item != anchor)
    return {"space:text": [(item, 1.0 - 0.1 * gap) for gap, item in others]}


def test_similar_features_at_t_never_read_an_event_after_t():
    from ragrec_django.ml.ranker import SimilarOptions, similar_neighbours

    lines = _lines()
    at = T0 + 26 * DAY
    before = [line for line in lines if line[3] < at]
    after = [
        ("d", 9, "late", at + DAY, 1, True),
        ("d", 1, "late", at + DAY, 1, True),
        ("a", 5, "x", at + 2 * DAY, 1, True),
    ]
    full, past = _log(lines + after), _log(before + [("d", 9, "x", at + 30 * DAY, 1, False)])  # 9 known to both
    options = SimilarOptions(neighbours=3)
    quotas = stage.similar_quotas(["text"])
    names = stage.feature_names([source for source in quotas if source != "co_view"])

    def rows(log, anchor):
        point = stage.SimilarPoint("a", anchor, at, frozenset({4}))
        factors = similar_neighbours(log, at, options)
        return stage.query_rows(log, point, names, factors=factors, space_lists=_spaces(anchor), quotas=quotas)

    for anchor in (1, 2, 3):
        got, want = rows(full, anchor), rows(past, anchor)
        assert got[2].items.tolist() == want[2].items.tolist()
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[0].shape == (len(got[2]), len(names))
        knn = names.index("knn_score")
        assert not np.isnan(got[0][:, knn]).all()  # the kNN neighbours trained before ``at`` are a source


def test_similar_features_by_hand():
    log = _log(_lines())
    at = T0 + 26 * DAY  # anchor 1's orders before: a-0, a-5, b-10, a-20 (2 with item 2, one with 3, one with 5)
    point = stage.SimilarPoint("a", 1, at, frozenset({2}))
    names = stage.feature_names(["space:text", "co_purchase", "knn"])
    features, labels, candidates = stage.query_rows(
        log, point, names, space_lists=_spaces(1), quotas=stage.similar_quotas(["text"])
    )
    row = {item: i for i, item in enumerate(candidates.items.tolist())}
    column = {name: features[:, j] for j, name in enumerate(names)}
    assert labels[row[2]] == 1 and labels.sum() == 1
    assert column["co_purchase_score"][row[2]] == 3 and column["co_purchase_rank"][row[2]] == 1  # a-0, b-10, a-20
    assert column["co_purchase_share"][row[2]] == pytest.approx(3 / 4)  # anchor in 4 orders in the last 365 days
    assert column["co_purchase_lift"][row[2]] == pytest.approx(3 / (1 + 4))  # item 2 in 4 orders before T
    assert column["same_category"][row[2]] == 1 and column["same_category"][row[3]] == 0
    assert np.isnan(column["same_category"][row[9]])  # no category
    assert column["log_price_ratio"][row[5]] == pytest.approx(np.log(4.0))
    assert column["sources"][row[2]] == 2 and column["best_rank"][row[2]] == 1  # text rank 1 too
    assert np.isnan(column["knn_rank"]).all()  # no item model given
    assert column["age_days"][row[2]] == pytest.approx(26.0)


def test_training_queries_are_items_of_an_order_known_before_it():
    log = _log(_lines())
    points = stage.similar_points(log, since=T0 + 11 * DAY, until=T0 + 41 * DAY, per_basket=5)
    by_order = {(p.at, p.anchor): p.targets for p in points}
    # c-12 (3, 4): 3 was ordered before (a-5), 4 was not; a-35 has one item; b-40 every item known
    assert by_order[(T0 + 12 * DAY, 3)] == {4} and (T0 + 12 * DAY, 4) not in by_order
    assert not any(at == T0 + 35 * DAY for at, _ in by_order)
    assert by_order[(T0 + 40 * DAY, 2)] == {1, 3}
    assert {p.visitor for p in points if p.at == T0 + 40 * DAY} == {"b"}
    sampled = stage.similar_points(log, since=T0, until=T0 + 41 * DAY, per_basket=1, limit=3)
    assert len(sampled) == 3 and len({(p.at) for p in sampled}) == 3


def test_fusion_order_is_the_spaces_weighted_cosine_and_a_source_alone_its_rank():
    lists = {
        "space:text": [(1, 0.9), (2, 0.5)],
        "space:image": [(2, 0.8), (3, 0.4)],
        "co_purchase": [(4, 3.0), (3, 1.0)],
    }
    candidates = stage.gather(lists, stage.similar_quotas(["text", "image"]))
    fused = stage.fusion_scores(candidates, {"text": 1.0, "image": 1.0})
    # text scaled: 1 -> 1, 2 -> 0; image: 2 -> 1, 3 -> 0; 4 in no space
    assert stage.ordered(candidates, fused) == [1, 2, 3, 4]
    assert stage.ordered(candidates, stage.fusion_scores(candidates, {"text": 1.0, "image": 2.0})) == [2, 1, 3, 4]
    assert stage.ordered(candidates, stage.source_scores(candidates, "co_purchase"))[:2] == [4, 3]
    names = ["space_text_rank", "space_video_rank", "co_purchase_score"]
    matrix = stage.feature_matrix({"space_text_rank": np.ones(4), "co_purchase_score": np.arange(4)}, names, 4)
    assert np.isnan(matrix[:, 1]).all() and matrix[:, 2].tolist() == [0, 1, 2, 3]  # an unknown space: missing


def test_fit_similar_learns_co_purchases_the_text_space_misses_and_the_gate_measures_it():
    pytest.importorskip("lightgbm")
    from ragrec_django.ml.ranker import SimilarOptions, fit_similar

    rng = np.random.default_rng(0)
    pairs = [(i, i + 20) for i in range(1, 21)]  # i goes with i + 20; the text space ranks them last
    lines = []
    for n in range(1500):
        day = n * 0.1
        a, b = pairs[int(rng.integers(len(pairs)))]
        basket = {a, b, int(rng.integers(1, 41))}
        lines += [("v%d" % (n % 60), item, "o%d" % n, T0 + day * DAY, 1, True) for item in basket]
    log = EventLog.build(lines)

    def spaces(anchor):
        return {"space:text": [(item, 1.0 - abs(item - anchor) / 40) for item in range(1, 41) if item != anchor][:30]}

    fitted = fit_similar(
        log,
        end=T0 + 151 * DAY,
        space_lists=spaces,
        spaces=["text"],
        space_weights={"text": 1.0},
        options=SimilarOptions(label_days=100, holdout_days=30, max_queries=2000, neighbours=10, min_queries=20),
    )
    gate = fitted.gate
    assert gate["queries"] >= 100 and gate["learned_ndcg@10"] > gate["baseline_ndcg@10"] + 0.2
    assert fitted.ranker.features == stage.feature_names(["space:text", "co_purchase", "knn"])
    assert fitted.ranker.factors.neighbours.shape == (40, 10) and fitted.ranker.metadata["best_iteration"] >= 1
