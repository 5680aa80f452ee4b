"""The learned ranker's pure part: candidates, point-in-time features, the LightGBM artefact."""

import numpy as np
import pytest

from ragrec_django.ranking import learned
from ragrec_django.ranking.learned import DAY, EventLog, ItemFactors, VisitorHistory, feature_matrix, gather_candidates

T0 = 1_700_000_000.0


def _lines():
    """Three shoppers over 40 days; item 1 and 2 often together, 3 and 4 together, 5 once."""
    lines = []
    for day, visitor, items in [
        (0, "a", [1, 2]),
        (5, "a", [1, 3]),
        (10, "b", [1, 2, 5]),
        (12, "c", [3, 4]),
        (20, "a", [1, 2]),
        (25, "b", [2, 4]),
        (30, "c", [3, 4, 1]),
        (35, "a", [4]),
        (40, "b", [1, 2, 3]),
    ]:
        for item in items:
            lines.append((visitor, item, "%s-%d" % (visitor, day), T0 + day * DAY, 2, True))
    return lines


def test_repeat_stats_by_orders_since():
    history = VisitorHistory.from_lines(
        T0 + 50 * DAY,
        [
            (1, T0, 0, 1, "", None),
            (2, T0, 0, 1, "", None),
            (1, T0 + DAY, 1, 3, "", None),
            (3, T0 + 2 * DAY, 2, 1, "", None),
        ],
    )
    stats = learned.repeat_stats(history)
    assert stats.items.tolist() == [1, 2, 3]
    # item 1 in orders 1 and 2 ago, item 2 two ago, item 3 in the latest order
    assert stats.score == pytest.approx([0.5 ** (1 / 3) + 0.5 ** (2 / 3), 0.5 ** (2 / 3), 1.0])
    assert stats.orders.tolist() == [2, 1, 1]
    assert stats.orders_since.tolist() == [1, 2, 0]
    assert stats.quantity.tolist() == [4, 1, 1]
    assert [stats.items[i] for i in stats.ranked()] == [1, 3, 2]


def test_gather_candidates_quotas_and_ranks():
    lists = {
        "repeat": [(1, 3.0), (2, 2.0), (3, 1.0)],
        "co_purchase": [(4, 5.0), (2, 4.0)],
        "popular": [(5, 9.0), (1, 8.0)],
    }
    candidates = gather_candidates(lists, limit=10, quotas={"repeat": 2, "co_purchase": 2, "als": 0, "popular": 2})
    assert candidates.items.tolist() == [1, 2, 4, 5]
    assert candidates.ranks["repeat"].tolist()[:2] == [1, 2]
    assert candidates.ranks["co_purchase"][1] == 2  # item 2 is co-purchase's second as well
    assert candidates.ranks["popular"][0] == 2 and np.isnan(candidates.ranks["als"]).all()
    assert candidates.source_of(2) == "co_purchase"


def test_features_for_time_t_never_read_an_event_after_t():
    lines = _lines()
    at = T0 + 26 * DAY
    before = [line for line in lines if line[3] < at]
    after = [("d", 9, "late", at + DAY, 1, True), ("a", 5, "late-a", at + 2 * DAY, 1, True)]
    rng = np.random.default_rng(0)
    factors = ItemFactors(
        np.arange(1, 10),
        rng.normal(size=(9, 4)).astype(np.float32),
        0.1,
        1.0,
        neighbours=np.array([rng.permutation(9)[:3] for _ in range(9)], dtype=np.int32),
        similarities=rng.random((9, 3)).astype(np.float32),
        repeat_rate=rng.random(9).astype(np.float32),
        buyers=rng.integers(1, 9, 9).astype(np.float32),
    )
    full = EventLog.build(lines + after)
    past = EventLog.build(before + [("d", 9, "x", at + 30 * DAY, 1, False)])  # item 9 known to both logs
    for visitor in ("a", "b", "c"):
        got, want = full.candidates_at(visitor, at, factors=factors), past.candidates_at(visitor, at, factors=factors)
        assert got[0].items.tolist() == want[0].items.tolist()
        np.testing.assert_array_equal(feature_matrix(*got), feature_matrix(*want))
        assert feature_matrix(*got).shape == (len(got[0]), len(learned.FEATURES))
        assert not np.isnan(feature_matrix(*got)[:, learned.FEATURES.index("knn_score")]).all()
    # an impression query at T: its shown items featured from the events before T only, with their position
    point = learned.ImpressionPoint("a", at, (4, 5, 9, 1), (0, 1, 3, 4), (1.0, 0.0, 0.0, 3.0))
    got, want = (
        learned.impression_rows(full, point, factors=factors),
        learned.impression_rows(past, point, factors=factors),
    )
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].shape == (4, len(learned.FEATURES) + 1) and got[1].tolist() == [1.0, 0.0, 0.0, 3.0]
    assert got[0][:, -1].tolist() == [0, 1, 3, 4]
    # each shown item keeps the score and rank its sources gave it at T (item 1: a's first repeat)
    candidates = full.candidates_at("a", at, factors=factors)[0]
    repeat_rank = learned.FEATURES.index("repeat_rank")
    assert got[0][3, repeat_rank] == candidates.ranks["repeat"][candidates.items.tolist().index(1)] == 1


def test_item_model_at_t_never_reads_an_event_after_t():
    """The kNN neighbours and repeat rates the training queries of time T use come from events before T only."""
    from ragrec_django.ml.ranker import item_neighbours, repeat_rates

    lines = _lines()
    at = T0 + 26 * DAY
    after = [("a", 5, "late-a", at + DAY, 1, True), ("c", 1, "late-c", at + 2 * DAY, 1, True)]
    full, past = EventLog.build(lines + after), EventLog.build(lines)
    for got, want in zip(item_neighbours(full, at, 3), item_neighbours(past, at, 3), strict=True):
        np.testing.assert_array_equal(got, want)
    rates = [repeat_rates(len(log.item_ids), log.visitor_item_counts(at)[1]) for log in (full, past)]
    for got, want in zip(*rates, strict=True):
        np.testing.assert_array_equal(got, want)


def test_item_neighbours_are_shrunk_cosines_and_knn_sums_them():
    from ragrec_django.ml.ranker import item_neighbours, repeat_rates

    log = EventLog.build(_lines())
    neighbours, similarities = item_neighbours(log, T0 + 21 * DAY, 2, shrink=1.0, basket_weight=0.0)
    # orders before day 21: a-0 (1,2), a-5 (1,3), b-10 (1,2,5), c-12 (3,4), a-20 (1,2)
    # item 1 is in 4 orders, item 2 in 3 (all with 1), item 3 in 2 (one with 1), item 5 in 1 (with 1)
    one, two, three = (int(c) for c in log.columns_of([1, 2, 3]))
    assert neighbours[one].tolist() == [two, int(log.columns_of([5])[0])]
    assert similarities[one][0] == pytest.approx(3 / (np.sqrt(4 * 3) + 1))
    assert similarities[one][1] == pytest.approx(1 / (np.sqrt(4 * 1) + 1))
    factors = ItemFactors(log.item_ids, np.zeros((5, 2), dtype=np.float32), 0.1, 1.0, neighbours, similarities)
    knn = factors.knn_scores(np.array([1, 3]), np.array([2.0, 1.0]))
    assert knn[two] == pytest.approx(2 * similarities[one][0] + similarities[three][neighbours[three] == two].sum())
    rate, buyers = repeat_rates(len(log.item_ids), log.visitor_item_counts(T0 + 21 * DAY)[1])
    # item 1: bought by a (3 orders) and b (1 order); item 4: by c once
    assert rate[one] == 0.5 and buyers[one] == 2
    assert rate[int(log.columns_of([4])[0])] == 0.0


def test_item_neighbours_weigh_each_order_by_its_size():
    from ragrec_django.ml.ranker import item_neighbours

    log = EventLog.build(_lines())
    neighbours, similarities = item_neighbours(log, T0 + 21 * DAY, 2, shrink=1.0, basket_weight=1.0)
    # item 1 with item 2: orders a-0 (2 items), b-10 (3 items), a-20 (2 items); with item 3: a-5 (2 items);
    # with item 5: b-10 (3 items). Unweighted, item 5 came second (1 / 3 against 1 / 3.83); weighted, item 3 does
    one, two, three = (int(c) for c in log.columns_of([1, 2, 3]))
    assert neighbours[one].tolist() == [two, three]
    assert similarities[one][0] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / (np.sqrt(4 * 3) + 1))
    assert similarities[one][1] == pytest.approx((1 / 2) / (np.sqrt(4 * 2) + 1))


def test_basket_partners_sum_the_neighbours_of_the_basket_and_name_the_strongest_item():
    from ragrec_django.ml.ranker import item_neighbours

    log = EventLog.build(_lines())
    neighbours, similarities = item_neighbours(log, T0 + 21 * DAY, 3, shrink=1.0)
    factors = ItemFactors(log.item_ids, np.zeros((5, 2), dtype=np.float32), 0.1, 1.0, neighbours, similarities)
    knn = factors.knn_scores(np.array([1, 3]), np.ones(2))
    partners = learned.basket_partners(factors, [3, 1, 3], exclude={5}, limit=10)
    # neither the basket (1, 3) nor the excluded item 5; the summed similarity, best first
    assert [item for item, _, _ in partners] == [2, 4]
    column = {int(item): i for i, item in enumerate(log.item_ids)}
    assert [score for _, score, _ in partners] == pytest.approx([knn[column[2]], knn[column[4]]])
    # item 2: bought with 1 three times, never with 3; item 4: with 3 (c-12), never with 1 before day 21
    assert [seed for _, _, seed in partners] == [1, 3]
    assert learned.basket_partners(factors, [99], exclude=set(), limit=5) == []
    assert learned.basket_partners(ItemFactors(log.item_ids, np.zeros((5, 2)), 0.1, 1.0), [1], set(), 5) == []


def test_co_purchase_counts_each_seed_latest_orders_before_t():
    log = EventLog.build(_lines())
    [(scores, orders)] = log.co_purchases([[1]], T0 + 21 * DAY)
    # orders holding item 1 before day 21: a-0 (1,2), a-5 (1,3), b-10 (1,2,5), a-20 (1,2)
    assert orders == 4 and scores == {1: 4.0, 2: 3.0, 3: 1.0, 5: 1.0}
    limited, _ = log.co_purchase_scores(log.item_ids[:1], T0 + 21 * DAY, per_item=2)
    assert limited[log.columns_of([2])[0]] == 2  # only b-10 and a-20


def test_popularity_windows_and_popular_list():
    log = EventLog.build(_lines())
    popularity, first_seen, _, _ = log.item_signals(np.array([1, 4, 5]), T0 + 31 * DAY)
    # orders in [day 24, day 31): b-25 and c-30; in [day 1, day 31) also a-5, b-10, c-12, a-20
    assert popularity[7].tolist() == [1, 2, 0] and popularity[30].tolist() == [4, 3, 1]
    assert popularity[365].tolist() == [5, 3, 1]
    assert first_seen[0] == T0 and first_seen[2] == T0 + 10 * DAY
    assert log.popular(T0 + 31 * DAY, 3) == [(1, 4.0), (2, 3.0), (3, 3.0)]


def test_label_points_follow_an_earlier_order():
    log = EventLog.build(_lines())
    points = learned.label_points(log, since=T0 + 20 * DAY)
    assert [(p.visitor, (p.at - T0) / DAY) for p in points] == [("a", 20), ("a", 35), ("b", 25), ("b", 40), ("c", 30)]
    assert points[0].items == frozenset({1, 2})
    features, labels, candidates = learned.query_rows(log, points[0])
    assert labels.sum() == len({1, 2} & set(candidates.items.tolist())) > 0


def test_item_factors_solve_the_visitor_vector_like_implicit():
    implicit = pytest.importorskip("implicit")
    from scipy.sparse import csr_matrix

    from ragrec_django.ml.ranker import train_item_factors

    rng = np.random.default_rng(0)
    entries = [(u, i, float(rng.integers(1, 4))) for u in range(30) for i in rng.choice(12, 4, replace=False)]
    factors = train_item_factors(30, list(range(12)), entries, factors=4, iterations=3, alpha=2.0)
    model = implicit.als.AlternatingLeastSquares(factors=4, regularization=0.05, alpha=2.0, random_state=0)
    model.item_factors = factors.factors
    row = csr_matrix(([2.0, 1.0], ([0, 0], [3, 7])), shape=(1, 12))
    expected = model.recalculate_user(0, row)
    got = factors.visitor_vector(np.array([3, 7]), np.array([2.0, 1.0]))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_paired_comparison_counts_per_shopper_differences():
    from ragrec_django.evaluation.learned_ranker import paired

    targets = {"a": {"x"}, "b": {"y"}, "c": {"z"}}
    ours = {"a": ["x"], "b": ["y"], "c": ["q"]}
    theirs = {"a": ["q"], "b": ["y"], "c": ["z"]}
    result = paired(ours, theirs, targets, k=1)
    assert result["recall@1"] == {
        "mean_difference": 0.0,
        "se": pytest.approx(0.57735, abs=1e-5),
        "wins": 1,
        "losses": 1,
    }
    # the visitor's purchases removed first (variant "new"): "x" no longer counts for a
    assert paired(ours, theirs, targets, k=1, exclude={"a": {"x"}})["recall@1"]["wins"] == 0


def test_compose_caps_repeats_at_the_share_of_k():
    candidates = gather_candidates(
        {"repeat": [(1, 1.0), (2, 1.0), (3, 1.0)], "popular": [(4, 1.0), (5, 1.0)]}, limit=10
    )
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])  # repeats best
    chosen = learned.compose(candidates, scores, {1, 2, 3}, k=4, repeat_share=0.5)
    assert [int(candidates.items[p]) for p in chosen] == [1, 2, 4, 5]


@pytest.mark.parametrize("limit", [0, 1, 7, 50, 400])
def test_best_of_is_the_full_ranking_cut_at_the_limit(limit):
    """The partial selection keeps exactly the full sort's best items: ties by lower id, bought items and
    non-positive or non-finite scores left out."""
    rng = np.random.default_rng(limit)
    item_ids = rng.permutation(np.arange(1000, 1300, dtype=np.int64))
    scores = rng.integers(-3, 12, size=len(item_ids)).astype(np.float64)  # many ties
    scores[::37] = np.nan
    bought = set(item_ids[::11].tolist())

    full = sorted((-s, int(i)) for i, s in zip(item_ids, scores) if s > 0 and np.isfinite(s) and int(i) not in bought)
    expected = [(i, -negative) for negative, i in full[:limit]]
    assert learned._best_of(item_ids, scores, bought, limit) == expected


def test_serving_fixes_the_position_at_zero_and_refuses_other_feature_lists():
    rows = np.ones((3, len(learned.FEATURES)), dtype=np.float32)
    assert learned.serving_matrix(rows, learned.FEATURES) is rows
    served = learned.serving_matrix(rows, [*learned.FEATURES, learned.POSITION])
    assert served.shape == (3, len(learned.FEATURES) + 1) and served[:, -1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        learned.serving_matrix(rows, [*learned.FEATURES, "something_else"])
    assert learned.impression_grade(True, True, True) == 3 > learned.impression_grade(True, True, False) == 2
    assert learned.impression_grade(True, False, False) == 1 > learned.impression_grade(False, False, False) == 0


def _views_and_vectors():
    """``_lines`` with views (a session of "a" before T, co-views by "b" and "c"), categories and a text space."""
    views = [
        ("b", 6, "", T0 + 22 * DAY, 1, False),
        ("b", 7, "", T0 + 22 * DAY + 600, 1, False),
        ("c", 6, "", T0 + 23 * DAY, 1, False),
        ("c", 7, "", T0 + 23 * DAY + 60, 1, False),
        ("a", 3, "", T0 + 24 * DAY, 1, False),  # an earlier session of "a"
        ("a", 6, "", T0 + 25 * DAY, 1, False),  # "a"'s latest session: 6 twice, then 8
        ("a", 6, "", T0 + 25 * DAY + 300, 1, False),
        ("a", 8, "", T0 + 25 * DAY + 900, 1, False),
        ("c", 8, "", T0 + 25 * DAY, 1, True),  # a new item: first ordered a day before T
    ]
    categories = {1: "mugs", 2: "mugs", 3: "lamps", 4: "lamps", 5: "mugs", 6: "lamps", 7: "lamps", 8: "mugs"}
    rng = np.random.default_rng(1)
    vectors = learned.ItemVectors.from_vectors({"text": {item: rng.normal(size=6) for item in range(1, 10)}})
    return sorted(_lines() + views, key=lambda line: line[3]), categories, vectors


def test_seventh_round_sources_and_features_never_read_an_event_after_t(monkeypatch):
    """Co-views, the text space, trending, category popularity, new items and the session features at T read only
    the events before T (the first test's question, for this round's sources)."""
    monkeypatch.setattr(learned, "NEW_ITEM_DAYS", 3)  # the log starts 26 days before T: every item is newer than 30
    lines, categories, vectors = _views_and_vectors()
    at = T0 + 26 * DAY
    after = [
        ("a", 7, "", at + 60, 1, False),  # a view in the same session, after T
        ("b", 8, "", at + 120, 1, False),
        ("c", 9, "late-c", at + DAY, 1, True),
        ("d", 6, "late-d", at + 2 * DAY, 1, True),
    ]
    full = EventLog.build(lines + after, categories=categories)
    past = EventLog.build(
        [line for line in lines if line[3] < at] + [("d", 9, "", at + 30 * DAY, 1, False)], categories=categories
    )
    names = learned.feature_names(["text"])
    for visitor in ("a", "b", "c"):
        got = full.candidates_at(visitor, at, vectors=vectors)
        want = past.candidates_at(visitor, at, vectors=vectors)
        assert got[0].items.tolist() == want[0].items.tolist()
        assert got[0].sources == learned.source_order(["text"])
        np.testing.assert_array_equal(feature_matrix(*got), feature_matrix(*want))
        assert feature_matrix(*got).shape == (len(got[0]), len(names))
    candidates, history, signals = full.candidates_at("a", at, vectors=vectors)
    rows = feature_matrix(candidates, history, signals)
    where = {int(item): i for i, item in enumerate(candidates.items)}
    # co-views of 6: 7, which b and c viewed within a day of it, and 8, which a did
    assert full.co_views([6], at) == {7: 2.0, 8: 1.0}
    # a's seeds, latest first: 8, 6, 3; 6 was viewed within a day of 8 and of 3, 7 with 6 by b and c
    assert learned.view_seeds(history) == [8, 6, 3]
    assert candidates.scores["co_view"][[where[6], where[7], where[8]]].tolist() == [2, 2, 1]
    assert candidates.ranks["co_view"][[where[6], where[7], where[8]]].tolist() == [1, 2, 3]
    assert not np.isnan(candidates.ranks["space:text"]).all() and not np.isnan(candidates.ranks["trending"]).all()
    # a bought mugs in 5 lines and lamps in 1: 5 and 8 (mugs, an order each) before 4 (a lamp, two orders)
    assert candidates.scores["category"][[where[5], where[8], where[4]]] == pytest.approx([5 / 6, 5 / 6, 2 / 6])
    assert [item for item, _ in full.new_items(at, 10)] == [8]  # first ordered a day before T
    assert candidates.ranks["new"][where[8]] == 1
    cosine = rows[:, names.index("space_text_cosine")]
    profile = learned.visitor_profile(history, *vectors.vectors("text", history.items))
    assert cosine[where[8]] == pytest.approx(float(vectors.vectors("text", [8])[0][0] @ profile), abs=1e-6)
    # the latest session: 6 viewed twice and 8 once (the view of 3 a day earlier is another session)
    assert rows[where[6], names.index("session_item_events")] == 2
    assert rows[where[8], names.index("session_item_events")] == 1
    assert rows[where[4], names.index("session_category_events")] == 2  # 6 twice, in lamps
    assert rows[0, names.index("session_events")] == 3


def test_trending_keeps_each_visitors_strongest_event_decayed():
    at = T0 + 10 * DAY
    lines = [
        ("a", 1, "o1", at - 72 * 3600, 1, True),  # one half-life ago, a purchase: 5 * 0.5
        ("a", 1, "", at - 3600 * 0.0 - 1, 1, False),  # a view now: 1, weaker than the purchase
        ("b", 1, "", at - 144 * 3600, 1, False),  # a view two half-lives ago: 0.25
        ("b", 2, "", at - 25 * DAY, 1, False),  # older than eight half-lives: not read
        ("c", 2, "", at + 1, 1, False),  # after T
    ]
    log = EventLog.build(sorted(lines, key=lambda line: line[3]))
    hour = np.floor(at / 3600) * 3600
    (item, score), *rest = log.trending(at, 10)
    half = 0.5 ** ((hour - at) / (72 * 3600))  # the list is as of the start of T's hour
    assert item == 1 and score == pytest.approx((2.5 + 0.25) * half) and not rest


def test_gather_takes_each_space_quota_after_basket_and_older_models_serve():
    lists = {
        "repeat": [(1, 3.0)],
        "basket": [(2, 1.0)],
        "space:text": [(3, 0.9), (4, 0.8), (5, 0.7)],
        "new": [(6, 4.0)],
    }
    candidates = gather_candidates(lists, limit=10, quotas={"repeat": 1, "basket": 1, "space": 2, "new": 1})
    assert candidates.items.tolist() == [1, 2, 3, 4, 6]
    assert candidates.sources.index("space:text") == candidates.sources.index("basket") + 1
    assert candidates.spaces == ("text",) and candidates.source_of(2) == "space:text"
    with pytest.raises(KeyError):
        gather_candidates({"nowhere": [(1, 1.0)]})
    # a model trained before this round (no co-view ... session features) takes its own columns; one trained
    # with a space that is not ready now gets NaN for that space's features
    names = learned.feature_names(["text"])
    rows = np.arange(2 * len(names), dtype=np.float32).reshape(2, len(names))
    older = [name for name in learned.FEATURES[: learned.FEATURES.index("co_view_score")]]
    assert learned.serving_matrix(rows, older, names).tolist() == rows[:, : len(older)].tolist()
    served = learned.serving_matrix(rows[:, : len(learned.FEATURES)], [*names, learned.POSITION])
    assert np.isnan(served[:, len(learned.FEATURES) : -1]).all() and served[:, -1].tolist() == [0, 0]
    with pytest.raises(ValueError):
        learned.serving_matrix(rows, [*names, "something_else"], names)
