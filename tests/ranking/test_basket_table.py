"""The "bought together" table of the learned item model (``ml.ranker.basket_table``) and how a basket reads it
(``ranking.learned.basket_partners``), against the formula computed by hand from the orders."""

import itertools
import math

import numpy as np
import pytest

from ragrec_django.ml import ranker as trainer
from ragrec_django.ranking import learned
from ragrec_django.ranking.learned import DAY, EventLog, ItemFactors

T0 = 1_700_000_000.0
ORDERS = [  # (day, visitor, items)
    (0, "a", [1, 2]),
    (5, "a", [1, 3]),
    (10, "b", [1, 2, 5]),
    (12, "c", [3, 4]),
    (20, "a", [1, 2]),
    (25, "b", [2, 4]),
    (30, "c", [3, 4, 1]),
    (35, "a", [4]),
    (40, "b", [1, 2, 3]),
    (41, "c", [6, 2]),
    (60, "d", [1, 6]),  # after the cut below: never read
]


def _log():
    lines = [
        (visitor, item, "%s-%d" % (visitor, day), T0 + day * DAY + i, 1.0, True)
        for day, visitor, items in ORDERS
        for i, item in enumerate(items)
    ]
    lines.append(("a", 5, "", T0 + 2 * DAY, 1.0, False))  # a view: no order
    return EventLog.build(sorted(lines, key=lambda line: line[3]))


def _by_hand(before, half_life_days, shrink, basket_weight=1.0):
    """{(i, j): similarity} from ORDERS, the docstring's formula, unscaled."""
    orders = [(T0 + day * DAY, set(items)) for day, _, items in ORDERS if T0 + day * DAY < before]
    held = {item: sum(item in items for _, items in orders) for _, items in orders for item in items}
    together = {}
    for at, items in orders:
        weight = len(items) ** -basket_weight * (0.5 ** ((before - at) / DAY / half_life_days) if half_life_days else 1)
        for i, j in itertools.permutations(items, 2):
            together[i, j] = together.get((i, j), 0.0) + weight
    return {(i, j): w / (math.sqrt(held[i] * held[j]) + shrink) for (i, j), w in together.items()}


def _table(log, indptr, partners, similarities):
    """{(item, partner): similarity} and each item's partners in the table's order."""
    pairs, order = {}, {}
    for row, item in enumerate(log.item_ids.tolist()):
        cells = range(indptr[row], indptr[row + 1])
        order[item] = [int(log.item_ids[partners[c]]) for c in cells]
        for c in cells:
            pairs[item, int(log.item_ids[partners[c]])] = float(similarities[c])
    return pairs, order


@pytest.mark.parametrize("half_life_days,shrink", [(120.0, 20.0), (10.0, 1.0), (0.0, 5.0)])
def test_the_table_is_the_size_and_age_weighted_cosine_of_the_orders_before_the_cut(half_life_days, shrink):
    log = _log()
    before = T0 + 45 * DAY
    indptr, partners, similarities = trainer.basket_table(log, before, 10, half_life_days=half_life_days, shrink=shrink)
    assert indptr.dtype == np.int64 and partners.dtype == np.int32 and similarities.dtype == np.float16
    want = _by_hand(before, half_life_days, shrink)
    top = max(want.values())
    got, order = _table(log, indptr, partners, similarities)
    assert set(got) == set(want)  # every pair with a shared order, no item its own partner, nothing after the cut
    for pair, value in want.items():
        assert got[pair] == pytest.approx(value / top, rel=1e-3)  # float16, scaled so the largest is 1
    assert max(got.values()) == 1.0
    for item, partners_of in order.items():  # best first, ties by lower id
        keys = [(-want[item, p], p) for p in partners_of]
        assert keys == sorted(keys)
    assert order[6] == [2]  # item 6's only order before the cut


def test_without_decay_the_table_orders_partners_as_the_knn_does():
    log = _log()
    before = T0 + 45 * DAY
    indptr, partners, _ = trainer.basket_table(log, before, 3, half_life_days=0.0, shrink=5.0)
    neighbours, _ = trainer.item_neighbours(log, before, 3, shrink=5.0)
    for row in range(len(log.item_ids)):
        knn = [p for p in neighbours[row].tolist() if p >= 0]
        assert partners[indptr[row] : indptr[row + 1]].tolist() == knn


def test_partners_are_cut_per_item_and_in_all():
    log = _log()
    before = T0 + 45 * DAY
    full, _, _ = trainer.basket_table(log, before, 10)
    counts = np.diff(full)
    indptr, _, _ = trainer.basket_table(log, before, 2)
    assert np.diff(indptr).tolist() == np.minimum(counts, 2).tolist()
    for budget in (1, 7, 12):
        indptr, partners, similarities = trainer.basket_table(log, before, 10, max_pairs=budget)
        kept = np.diff(indptr)
        limit = kept.max()
        # the longest per-item cut that fits the budget: one more would not
        assert kept.sum() <= budget and len(partners) == len(similarities) == kept.sum()
        assert kept.tolist() == np.minimum(counts, limit).tolist()
        assert np.minimum(counts, limit + 1).sum() > budget
    empty = trainer.basket_table(log, T0, 10)  # no order before the cut
    assert empty[0].tolist() == [0] * (len(log.item_ids) + 1) and len(empty[1]) == 0


def _factors_with_table(log, before):
    factors = ItemFactors(log.item_ids, np.zeros((len(log.item_ids), 2), dtype=np.float32), 0.1, 1.0)
    factors.neighbours, factors.similarities = trainer.item_neighbours(log, before, 2, shrink=5.0)
    factors.basket_indptr, factors.basket_neighbours, factors.basket_similarities = trainer.basket_table(
        log, before, 10
    )
    return factors


def test_a_basket_sums_its_items_rows_of_the_table_and_names_the_strongest_item():
    log = _log()
    before = T0 + 45 * DAY
    factors = _factors_with_table(log, before)
    got, _ = _table(log, factors.basket_indptr, factors.basket_neighbours, factors.basket_similarities)
    partners = learned.basket_partners(factors, [3, 1, 3, 99], exclude={5}, limit=10)
    scores = {}
    for (item, partner), value in got.items():
        if item in (1, 3) and partner not in (1, 3, 5):
            scores[partner] = scores.get(partner, 0.0) + value
    want = sorted(scores, key=lambda p: (-scores[p], p))
    assert [item for item, _, _ in partners] == want
    assert [score for _, score, _ in partners] == pytest.approx([scores[p] for p in want])
    for item, _, seed in partners:  # the basket item most similar to it (ties by lower id)
        assert seed == min((1, 3), key=lambda s: (-got.get((s, item), -1.0), s))
    assert learned.basket_partners(factors, [99], exclude=set(), limit=5) == []


def test_without_a_table_the_knn_neighbours_serve_as_before():
    log = _log()
    before = T0 + 45 * DAY
    factors = _factors_with_table(log, before)
    old = ItemFactors(log.item_ids, factors.factors, 0.1, 1.0, factors.neighbours, factors.similarities)
    knn = old.knn_scores(np.array([1, 3]), np.ones(2))
    partners = learned.basket_partners(old, [3, 1], exclude=set(), limit=10)
    column = {int(item): i for i, item in enumerate(log.item_ids)}
    assert [score for _, score, _ in partners] == pytest.approx([knn[column[item]] for item, _, _ in partners])
    assert {item for item, _, _ in partners} == {int(log.item_ids[c]) for c in np.flatnonzero(knn > 0)} - {1, 3}
    assert learned.basket_partners(ItemFactors(log.item_ids, factors.factors, 0.1, 1.0), [1], set(), 5) == []


def test_the_table_travels_in_the_artefact_at_six_bytes_a_pair(tmp_path):
    log = _log()
    factors = _factors_with_table(log, T0 + 45 * DAY)
    model = trainer.LearnedRanker(model_text="tree", features=["a"], params={}, factors=factors)
    loaded = trainer.LearnedRanker.load(model.save(tmp_path / "m"))
    for name in ("basket_indptr", "basket_neighbours", "basket_similarities"):
        np.testing.assert_array_equal(getattr(loaded.factors, name), getattr(factors, name))
        assert getattr(loaded.factors, name).dtype == getattr(factors, name).dtype
    assert loaded.content_hash == model.content_hash
    pairs = len(factors.basket_neighbours)
    without = trainer.LearnedRanker(
        model_text="tree",
        features=["a"],
        params={},
        factors=ItemFactors(log.item_ids, factors.factors, 0.1, 1.0, factors.neighbours, factors.similarities),
    )
    grown = len(model.factors_bytes()) - len(without.factors_bytes())
    assert 6 * pairs <= grown <= 6 * pairs + 8 * (len(log.item_ids) + 1) + 1000  # npz headers
    assert trainer.LearnedRanker.load(without.save(tmp_path / "old")).factors.basket_indptr is None


def test_for_you_scores_the_table_partners_of_the_visitors_recent_orders():
    """ "For you"'s basket source: every item's table similarity to the visitor's bought items, each weighted by
    ``score_recent`` (0.5 ** orders before their latest, summed); ``basket_last`` from their last order alone."""
    log = _log()
    before = T0 + 45 * DAY
    factors = _factors_with_table(log, before)
    got, _ = _table(log, factors.basket_indptr, factors.basket_neighbours, factors.basket_similarities)
    # "a" ordered {1, 2} (day 0), {1, 3} (5), {1, 2} (20), {4} (35): orders before the latest 3, 2, 1, 0
    weights = {1: 0.5**3 + 0.5**2 + 0.5, 2: 0.5**3 + 0.5, 3: 0.5**2, 4: 1.0}
    want = {}
    for (item, partner), value in got.items():
        if item in weights:
            want[partner] = want.get(partner, 0.0) + weights[item] * value
    candidates, history, signals = log.candidates_at("a", before, factors=factors)
    # the source's list: partners not bought, best first (ties by lower id)
    basket = [int(item) for i, item in enumerate(candidates.items) if not np.isnan(candidates.ranks["basket"][i])]
    expected = sorted((p for p in want if p not in weights and want[p] > 0), key=lambda p: (-want[p], p))
    assert expected and sorted(basket) == sorted(expected)
    for item in expected:
        i = list(candidates.items).index(item)
        assert candidates.ranks["basket"][i] == expected.index(item) + 1
        assert candidates.scores["basket"][i] == pytest.approx(want[item])
    rows = learned.feature_matrix(candidates, history, signals)
    score = rows[:, learned.FEATURES.index("basket_score")]
    last = rows[:, learned.FEATURES.index("basket_last")]
    for i, item in enumerate(candidates.items.tolist()):
        assert score[i] == pytest.approx(want.get(item, 0.0), rel=1e-5)
        assert last[i] == pytest.approx(got.get((4, item), 0.0), rel=1e-3)
    # without a table (an older artefact): no basket source, the features missing
    old = ItemFactors(log.item_ids, factors.factors, 0.1, 1.0, factors.neighbours, factors.similarities)
    assert old.basket_scores(np.array([1]), np.ones(1)) is None
    candidates, history, signals = log.candidates_at("a", before, factors=old)
    assert np.isnan(candidates.ranks["basket"]).all()
    assert np.isnan(
        learned.feature_matrix(candidates, history, signals)[:, learned.FEATURES.index("basket_score")]
    ).all()


def test_an_older_model_without_the_basket_features_still_scores():
    """A model trained before the basket features names a subset of ``FEATURES``: serving gives it those columns,
    in its order (with the position at 0 when it has one)."""
    rows = np.arange(3 * len(learned.FEATURES), dtype=np.float32).reshape(3, len(learned.FEATURES))
    older = [name for name in learned.FEATURES if not name.startswith("basket_")]
    served = learned.serving_matrix(rows, older)
    assert served.tolist() == rows[:, [learned.FEATURES.index(name) for name in older]].tolist()
    served = learned.serving_matrix(rows, [*older, learned.POSITION])
    assert served.shape == (3, len(older) + 1) and served[:, -1].tolist() == [0, 0, 0]
    assert served[:, :-1].tolist() == rows[:, [learned.FEATURES.index(name) for name in older]].tolist()
