"""apply_rules: the whole serving pipeline on hand-made candidates."""

import copy
from decimal import Decimal

import pytest

from ragrec_django.ranking import ServingRules, apply_rules

from .factories import cand, ids


def descending(item_ids, top=1.0, step=0.01, **fields):
    """Candidates for ``item_ids`` with strictly falling scores from ``top``."""
    return [cand(item_id, top - i * step, **fields) for i, item_id in enumerate(item_ids)]


def test_no_rules_sorts_by_score_then_item_id():
    pool = [cand(3, 0.5), cand(1, 0.9), cand(4, 0.5), cand(2, 0.7)]
    assert ids(apply_rules(pool, ServingRules(), k=10)) == [1, 2, 3, 4]


def test_a_repeated_item_keeps_its_best_copy():
    result = apply_rules(
        [cand(1, 0.2, reasons=["low"]), cand(1, 0.9, reasons=["high"]), cand(2, 0.5)], ServingRules(), k=10
    )
    assert ids(result) == [1, 2]
    assert result[0].reasons == ["high"]


@pytest.mark.parametrize(
    "rules, expected",
    [
        ({"categories": ["mugs"]}, [1, 2]),
        ({"exclude_categories": ["mugs"]}, [3, 4, 5]),
        ({"in_stock_only": True}, [1, 3, 5]),
        ({"exclude_ids": [1, 3]}, [2, 4, 5]),
        ({"hide": [2, 5]}, [1, 3, 4]),
        ({"min_price": 10}, [2, 3]),
        ({"max_price": "9.99"}, [1, 4]),
        ({"min_price": "9.99", "max_price": 9.99}, [4]),
    ],
)
def test_filters(rules, expected):
    pool = [
        cand(1, 0.9, category="mugs", price=Decimal("5.00")),
        cand(2, 0.8, category="mugs", price=12.5, in_stock=False),
        cand(3, 0.7, category="plates", price=Decimal("20")),
        cand(4, 0.6, category="plates", price=9.99, in_stock=False),
        cand(5, 0.5, category="bowls"),
    ]
    assert ids(apply_rules(pool, ServingRules.from_dict(rules), k=10)) == expected


def test_item_boost_changes_order_and_is_recorded():
    pool = [cand(1, 0.9), cand(2, 0.8, components={"rrf": 0.8}), cand(3, 0.7)]
    result = apply_rules(pool, ServingRules.from_dict({"boost": {"3": 0.25, "1": -0.2}}), k=10)
    assert ids(result) == [3, 2, 1]
    assert result[0].score == pytest.approx(0.95)
    assert result[0].components == pytest.approx({"boost": 0.25})
    assert result[2].components == pytest.approx({"boost": -0.2})
    assert result[1].components == {"rrf": 0.8}


def test_category_and_item_boosts_add_up():
    pool = [cand(1, 0.9, category="plates"), cand(2, 0.5, category="mugs")]
    rules = ServingRules.from_dict({"boost": {"2": 0.1}, "boost_categories": {"mugs": 0.35}})
    result = apply_rules(pool, rules, k=10)
    assert ids(result) == [2, 1]
    assert result[0].components["boost"] == pytest.approx(0.45)


def test_variants_are_grouped_unless_turned_off():
    pool = [cand(1, 0.9, group_key="mug-red"), cand(2, 0.8, group_key="mug-red"), cand(3, 0.7)]
    assert ids(apply_rules(pool, ServingRules(), k=10)) == [1, 3]
    assert ids(apply_rules(pool, ServingRules(group_variants=False), k=10)) == [1, 2, 3]


def test_near_duplicates_are_suppressed_when_asked():
    pool = [cand(1, 0.9, [1, 0]), cand(2, 0.8, [1, 0.001]), cand(3, 0.7, [0, 1])]
    assert ids(apply_rules(pool, ServingRules(), k=10)) == [1, 2, 3]
    assert ids(apply_rules(pool, ServingRules(near_duplicate_threshold=0.97), k=10)) == [1, 3]


def test_category_cap():
    pool = descending([1, 2, 3, 4], category="mugs") + [cand(5, 0.1, category="plates")]
    assert ids(apply_rules(pool, ServingRules(max_per_category=2), k=10)) == [1, 2, 5]


def test_diversity_runs_mmr():
    pool = [cand(1, 1.0, [1, 0]), cand(2, 0.95, [1, 0.01]), cand(3, 0.8, [0, 1])]
    assert ids(apply_rules(pool, ServingRules(diversity=0.3), k=3)) == [1, 3, 2]
    assert ids(apply_rules(pool, ServingRules(diversity=1.0), k=3)) == [1, 2, 3]


def test_diversity_reorders_the_page_and_keeps_the_rest_for_later_steps():
    pool = [cand(1, 1.0, [1, 0]), cand(2, 0.95, [1, 0.01]), cand(3, 0.8, [0, 1]), cand(4, 0.1, [1, 0.02], is_new=True)]
    result = apply_rules(pool, ServingRules(diversity=0.3, promotion_quota=0.5), k=2)
    assert ids(result) == [1, 4]


@pytest.fixture
def regular_and_new():
    """Ten regular items 1..10 and four new ones 101..104, all new ones ranked below."""
    return descending(range(1, 11)) + descending(range(101, 105), top=0.5, is_new=True)


@pytest.mark.parametrize(
    "quota, positions",
    [(0.1, [5]), (0.2, [2, 7]), (0.3, [1, 5, 8]), (0.25, [1, 5, 8]), (0.4, [1, 3, 6, 8])],
)
def test_quota_reserves_evenly_spread_slots(regular_and_new, quota, positions):
    result = apply_rules(regular_and_new, ServingRules(promotion_quota=quota), k=10)
    assert [i for i, c in enumerate(result) if c.is_new] == positions
    assert [c.item_id for c in result if c.is_new] == list(range(101, 101 + len(positions)))
    assert all(c.reasons == ["new"] for c in result if c.is_new)
    assert [c.item_id for c in result if not c.is_new] == list(range(1, 11 - len(positions)))


def test_quota_never_exceeds_the_available_promotions(regular_and_new):
    result = apply_rules(regular_and_new, ServingRules(promotion_quota=1.0), k=10)
    assert len(result) == 10
    assert sum(c.is_new for c in result) == 4


def test_quota_of_zero_changes_nothing(regular_and_new):
    assert ids(apply_rules(regular_and_new, ServingRules(), k=10)) == list(range(1, 11))


def test_promotions_already_ranking_high_count_towards_the_quota():
    pool = [cand(1, 0.9, is_promoted=True)] + descending(range(2, 10), top=0.8) + [cand(50, 0.1, is_promoted=True)]
    result = apply_rules(pool, ServingRules(promotion_quota=0.2), k=10)
    # Two promoted slots are due (positions 2 and 7); item 1 already covers the first.
    assert ids(result) == [1, 2, 3, 4, 5, 6, 7, 50, 8, 9]
    assert result[0].reasons == []
    assert result[7].reasons == ["promoted"]


def test_quota_counts_only_the_slots_that_will_be_filled():
    pool = descending([1, 2, 3]) + [cand(9, 0.1, is_new=True, is_promoted=True)]
    result = apply_rules(pool, ServingRules(promotion_quota=0.25), k=10)
    assert ids(result) == [1, 2, 9, 3]
    assert result[2].reasons == ["new", "promoted"]


def test_pins_land_at_their_positions(regular_and_new):
    rules = ServingRules.from_dict({"pin": [[8, 0], [103, 4]]})
    result = apply_rules(regular_and_new, rules, k=6)
    assert ids(result) == [8, 1, 2, 3, 103, 4]
    assert result[0].reasons == ["pinned"]
    assert result[4].reasons == ["pinned"]  # new, but placed by its pin, not by the quota


def test_pinned_item_missing_from_candidates_comes_from_pinned_candidates():
    rules = ServingRules(pin=[(77, 1)])
    pool = descending([1, 2, 3], reasons=["similar to Red mug"])
    result = apply_rules(pool, rules, k=3, pinned_candidates={77: cand(77, 0.0)})
    assert ids(result) == [1, 77, 2]
    assert result[1].reasons == ["pinned"]
    assert ids(apply_rules(pool, rules, k=3)) == [1, 2, 3]


def test_pinned_items_still_obey_the_filters():
    rules = ServingRules(pin=[(77, 0), (1, 1)], in_stock_only=True, exclude_ids={1})
    pool = descending([1, 2, 3])
    result = apply_rules(pool, rules, k=3, pinned_candidates={77: cand(77, in_stock=False)})
    assert ids(result) == [2, 3]


def test_pins_skip_variant_and_category_steps():
    pool = [cand(1, 0.9, group_key="mug", category="mugs"), cand(2, 0.8, group_key="mug", category="mugs")]
    rules = ServingRules(pin=[(2, 1)], max_per_category=1)
    assert ids(apply_rules(pool, rules, k=5)) == [1, 2]


def test_pins_beyond_the_page_are_ignored_and_beyond_a_short_list_go_last():
    pool = descending([1, 2, 3])
    assert ids(apply_rules(pool, ServingRules(pin=[(3, 5)]), k=4)) == [1, 2, 3]
    assert ids(apply_rules(pool, ServingRules(pin=[(1, 6)]), k=3)) == [1, 2, 3]
    assert ids(apply_rules(pool, ServingRules(pin=[(1, 3)]), k=10)) == [2, 3, 1]


def test_pins_and_quota_together(regular_and_new):
    rules = ServingRules(pin=[(9, 0), (10, 9)], promotion_quota=0.25)
    result = apply_rules(regular_and_new, rules, k=10)
    assert (result[0].item_id, result[9].item_id) == (9, 10)
    # 8 free slots, 2 due at free positions 2 and 6, i.e. page positions 3 and 7 after the pin at 0.
    assert [i for i, c in enumerate(result) if c.is_new] == [3, 7]
    assert len(set(ids(result))) == 10


def test_k_is_capped_by_max_k():
    pool = descending(range(1, 21))
    assert len(apply_rules(pool, ServingRules(max_k=5), k=500)) == 5
    assert len(apply_rules(pool, ServingRules(), k=7)) == 7
    assert apply_rules(pool, ServingRules(pin=[(3, 0)]), k=0) == []
    with pytest.raises(ValueError):
        apply_rules(pool, ServingRules(), k=-1)


def test_reasons_and_components_survive_the_pipeline():
    pool = [cand(1, 0.9, reasons=["bought with Red mug"], components={"rrf": 0.03, "copurchase": 4})]
    result = apply_rules(pool, ServingRules(boost={1: 0.1}), k=1)
    assert result[0].reasons == ["bought with Red mug"]
    assert result[0].components == pytest.approx({"rrf": 0.03, "copurchase": 4, "boost": 0.1})


def test_inputs_are_never_modified(regular_and_new):
    pinned = {500: cand(500)}
    before = copy.deepcopy((regular_and_new, pinned))
    rules = ServingRules(pin=[(5, 0), (500, 1)], boost={2: 1.0}, promotion_quota=0.3, diversity=0.5)
    apply_rules(regular_and_new, rules, k=10, pinned_candidates=pinned)
    assert (regular_and_new, pinned) == before
