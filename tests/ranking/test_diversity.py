"""MMR, per-category caps, near-duplicate suppression and variant grouping."""

import numpy as np
import pytest

from ragrec_django.ranking import cap_per_category, group_variants, mmr, suppress_near_duplicates

from .factories import cand, ids


@pytest.fixture
def near_copy_pool():
    """1 is best; 2 is almost a copy of 1; 3 is less relevant but points elsewhere."""
    return [cand(1, 1.0, [1, 0]), cand(2, 0.95, [0.999, 0.045]), cand(3, 0.8, [0, 1])]


def test_mmr_prefers_a_diverse_second_item_when_lambda_is_low(near_copy_pool):
    assert ids(mmr(near_copy_pool, 3, lambda_=0.3)) == [1, 3, 2]
    assert ids(mmr(near_copy_pool, 2, lambda_=0.5)) == [1, 3]


def test_mmr_with_lambda_one_is_plain_relevance_order(near_copy_pool):
    assert ids(mmr(near_copy_pool, 3, lambda_=1.0)) == [1, 2, 3]


def test_mmr_default_lambda_still_takes_a_much_more_relevant_near_copy(near_copy_pool):
    # relevance after min-max: 1.0, 0.75, 0.0 -> 0.7*0.75 - 0.3*~1 > 0.7*0 - 0.3*0
    assert ids(mmr(near_copy_pool, 2)) == [1, 2]


def test_mmr_treats_candidates_without_vectors_as_dissimilar():
    pool = [cand(1, 1.0, [1, 0]), cand(2, 0.95, [1, 0.01]), cand(3, 0.8)]
    assert ids(mmr(pool, 2, lambda_=0.3)) == [1, 3]


def test_mmr_first_pick_is_the_most_relevant_even_for_pure_diversity(near_copy_pool):
    assert ids(mmr(list(reversed(near_copy_pool)), 1, lambda_=0.0)) == [1]


def test_mmr_breaks_ties_by_item_id():
    pool = [cand(7, 0.5, [1, 0]), cand(3, 0.5, [0, 1]), cand(5, 0.5, [1, 1])]
    assert ids(mmr(pool, 3, lambda_=1.0)) == [3, 5, 7]


def test_mmr_limits_and_edge_cases(near_copy_pool):
    assert len(mmr(near_copy_pool, 10)) == 3
    assert mmr(near_copy_pool, 0) == []
    assert mmr([], 5) == []
    for bad in (-0.1, 1.1):
        with pytest.raises(ValueError, match="lambda_"):
            mmr(near_copy_pool, 2, lambda_=bad)


def test_cap_per_category_keeps_the_first_of_each_category_in_order():
    pool = [
        cand(1, category="mugs"),
        cand(2, category="mugs"),
        cand(3, category="plates"),
        cand(4, category="mugs"),
        cand(5),
        cand(6),
        cand(7, category="plates"),
    ]
    assert ids(cap_per_category(pool, 2)) == [1, 2, 3, 5, 6, 7]
    assert ids(cap_per_category(pool, 1)) == [1, 3, 5, 6]
    with pytest.raises(ValueError):
        cap_per_category(pool, 0)


def test_suppress_near_duplicates_drops_later_copies():
    pool = [cand(1, 0.9, [1, 0, 0]), cand(2, 0.8, [10, 0.1, 0]), cand(3, 0.7, [0, 1, 0]), cand(4, 0.6, [1, 1, 0])]
    # 2 is 1 scaled (cosine ~0.99995); 4 has cosine 0.707 with 1 and 3.
    assert ids(suppress_near_duplicates(pool)) == [1, 3, 4]
    assert ids(suppress_near_duplicates(pool, threshold=0.7)) == [1, 3]
    assert ids(suppress_near_duplicates(pool, threshold=1.0)) == [1, 2, 3, 4]


def test_suppress_near_duplicates_threshold_is_inclusive_and_vectorless_items_stay():
    pool = [cand(1, vector=[1, 0]), cand(2, vector=[2, 0]), cand(3), cand(4)]
    assert ids(suppress_near_duplicates(pool, threshold=1.0)) == [1, 3, 4]
    with pytest.raises(ValueError):
        suppress_near_duplicates(pool, threshold=0)


def test_suppress_near_duplicates_compares_against_kept_items_only():
    # 2 is dropped as a copy of 1; 3 resembles only 2, so it stays.
    angle = np.radians(12)
    pool = [
        cand(1, vector=[1, 0]),
        cand(2, vector=[np.cos(angle), np.sin(angle)]),
        cand(3, vector=[np.cos(2 * angle), np.sin(2 * angle)]),
    ]
    assert ids(suppress_near_duplicates(pool, threshold=0.97)) == [1, 3]


def test_group_variants_keeps_the_best_of_each_group_in_place():
    pool = [
        cand(1, 0.5, group_key="mug"),
        cand(2, 0.4),
        cand(3, 0.9, group_key="mug"),
        cand(4, 0.3, group_key="plate"),
        cand(5, 0.2),
        cand(6, 0.3, group_key="plate"),
    ]
    assert ids(group_variants(pool)) == [2, 3, 4, 5]


def test_group_variants_does_not_group_empty_keys():
    pool = [cand(1, 0.5), cand(2, 0.5)]
    assert ids(group_variants(pool)) == [1, 2]


def test_diversity_functions_leave_candidates_untouched(near_copy_pool):
    before = [(c.item_id, c.score, list(c.reasons), dict(c.components)) for c in near_copy_pool]
    mmr(near_copy_pool, 3)
    suppress_near_duplicates(near_copy_pool)
    assert [(c.item_id, c.score, list(c.reasons), dict(c.components)) for c in near_copy_pool] == before
