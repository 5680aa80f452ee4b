"""ServingRules.from_dict: strict validation of merchandiser/settings JSON."""

import dataclasses
from decimal import Decimal

import pytest

from ragrec_django.ranking import MAX_K_LIMIT, RulesError, ServingRules, filters_as_dict


def test_a_full_rule_set_parses_to_typed_values():
    rules = ServingRules.from_dict(
        {
            "categories": ["mugs", "plates"],
            "exclude_categories": ["gift cards"],
            "min_price": "4.50",
            "max_price": 30,
            "in_stock_only": True,
            "exclude_ids": [9],
            "pin": [[42, 0], [7, 3]],
            "boost": {"12": 0.2, "13": -0.1},
            "boost_categories": {"mugs": 0.05},
            "hide": [99],
            "promotion_quota": 0.2,
            "diversity": 0.7,
            "max_per_category": 3,
            "near_duplicate_threshold": 0.97,
            "group_variants": False,
            "max_k": 24,
        }
    )
    assert rules.min_price == Decimal("4.50") and rules.max_price == Decimal("30")
    assert rules.exclude_ids == {9} and rules.hide == {99}
    assert rules.pin == [(42, 0), (7, 3)]
    assert rules.boost == {12: 0.2, 13: -0.1}
    assert (rules.promotion_quota, rules.diversity, rules.max_per_category, rules.max_k) == (0.2, 0.7, 3, 24)
    assert rules.group_variants is False


def test_empty_dict_gives_the_defaults():
    assert ServingRules.from_dict({}) == ServingRules()
    defaults = ServingRules()
    assert (defaults.group_variants, defaults.max_k, defaults.diversity) == (True, 100, None)
    assert defaults.promotion_quota == 0.0


def test_every_field_is_accepted_by_from_dict():
    defaults = ServingRules()
    as_dict = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(ServingRules)}
    assert ServingRules.from_dict(as_dict) == defaults


def test_optional_fields_accept_null():
    keys = ["min_price", "max_price", "diversity", "max_per_category", "near_duplicate_threshold"]
    assert ServingRules.from_dict(dict.fromkeys(keys)) == ServingRules()


def test_float_prices_become_exact_decimals():
    assert ServingRules.from_dict({"max_price": 9.99}).max_price == Decimal("9.99")


@pytest.mark.parametrize(
    "data, message",
    [
        (["not", "a", "dict"], "must be a JSON object"),
        ({"categorys": ["mugs"]}, r"unknown key\(s\) \['categorys'\]; valid keys are"),
        ({"categories": "mugs"}, "categories: expected a list of non-empty strings"),
        ({"categories": [1]}, "categories: expected a list of non-empty strings"),
        ({"exclude_categories": [""]}, "exclude_categories: expected a list of non-empty strings"),
        ({"categories": ["mugs"], "exclude_categories": ["mugs"]}, "both name"),
        ({"min_price": -1}, "min_price: must be >= 0"),
        ({"max_price": "-0.01"}, "max_price: must be >= 0"),
        ({"min_price": "cheap"}, "min_price: expected a price"),
        ({"min_price": True}, "min_price: expected a price"),
        ({"min_price": [1]}, "min_price: expected a price"),
        ({"max_price": "NaN"}, "max_price: expected a finite price"),
        ({"max_price": float("inf")}, "max_price: expected a finite price"),
        ({"min_price": 20, "max_price": "10"}, r"min_price \(20\) is greater than max_price \(10\)"),
        ({"in_stock_only": "yes"}, "in_stock_only: expected true or false"),
        ({"in_stock_only": 1}, "in_stock_only: expected true or false"),
        ({"exclude_ids": 5}, "exclude_ids: expected a list of item ids"),
        ({"exclude_ids": [1.5]}, "exclude_ids: expected an integer"),
        ({"exclude_ids": ["7"]}, "exclude_ids: expected an integer"),
        ({"hide": [True]}, "hide: expected an integer"),
        ({"pin": {"42": 0}}, r"pin: expected a list of \[item_id, position\] pairs"),
        ({"pin": [[42]]}, r"pin: expected a list of \[item_id, position\] pairs"),
        ({"pin": [[42, "0"]]}, "pin: expected an integer"),
        ({"pin": [[42, -1]]}, r"pin: position -1 of item 42 is outside 0..99"),
        ({"pin": [[42, 100]]}, r"pin: position 100 of item 42 is outside 0..99"),
        ({"pin": [[42, 5]], "max_k": 5}, r"pin: position 5 of item 42 is outside 0..4"),
        ({"pin": [[42, 0], [42, 1]]}, "pinned twice"),
        ({"pin": [[42, 0], [43, 0]]}, "pinned twice"),
        ({"pin": [[42, 0]], "hide": [42]}, "item 42 is also hidden"),
        ({"boost": [[12, 0.1]]}, "boost: expected an object"),
        ({"boost": {"twelve": 0.1}}, "boost: expected an integer"),
        ({"boost": {"12": "0.1"}}, "boost: expected a finite number"),
        ({"boost": {"12": float("nan")}}, "boost: expected a finite number"),
        ({"boost_categories": {"": 0.1}}, "boost_categories: expected non-empty category names"),
        ({"boost_categories": {"mugs": True}}, "boost_categories: expected a finite number"),
        ({"promotion_quota": 1.5}, "promotion_quota: must be between 0 and 1"),
        ({"promotion_quota": -0.1}, "promotion_quota: must be between 0 and 1"),
        ({"promotion_quota": "0.2"}, "promotion_quota: expected a finite number"),
        ({"diversity": 1.2}, "diversity: must be between 0 and 1"),
        ({"diversity": "high"}, "diversity: expected a finite number"),
        ({"max_per_category": 0}, "max_per_category: must be >= 1"),
        ({"max_per_category": 2.5}, "max_per_category: expected an integer"),
        ({"near_duplicate_threshold": 0}, r"near_duplicate_threshold: must be in \(0, 1\]"),
        ({"near_duplicate_threshold": 1.01}, r"near_duplicate_threshold: must be in \(0, 1\]"),
        ({"group_variants": "false"}, "group_variants: expected true or false"),
        ({"max_k": 0}, f"max_k: must be between 1 and {MAX_K_LIMIT}"),
        ({"max_k": MAX_K_LIMIT + 1}, f"max_k: must be between 1 and {MAX_K_LIMIT}"),
        ({"max_k": 10.0}, "max_k: expected an integer"),
        ({"max_k": True}, "max_k: expected an integer"),
    ],
)
def test_invalid_rules_raise_a_named_error(data, message):
    with pytest.raises(RulesError, match=message):
        ServingRules.from_dict(data)


def test_rules_error_is_a_value_error():
    assert issubclass(RulesError, ValueError)


def test_rules_built_in_code_are_validated_too():
    with pytest.raises(RulesError, match="min_price"):
        ServingRules(min_price=Decimal("-1"))
    with pytest.raises(RulesError, match="max_k"):
        dataclasses.replace(ServingRules(), max_k=0)


def test_pinning_an_excluded_item_is_allowed():
    """exclude_ids is per request (e.g. the item being viewed), so it may meet a pin at serving time."""
    rules = dataclasses.replace(ServingRules(pin=[(42, 0)]), exclude_ids={42})
    assert rules.exclude_ids == {42}


def test_filters_as_dict_holds_only_the_filters():
    rules = ServingRules.from_dict(
        {
            "categories": ["mugs"],
            "min_price": 5,
            "in_stock_only": True,
            "exclude_ids": [1],
            "hide": [2],
            "boost": {"3": 1.0},
            "pin": [[4, 0]],
            "diversity": 0.5,
        }
    )
    assert filters_as_dict(rules) == {
        "categories": ["mugs"],
        "exclude_categories": [],
        "min_price": Decimal(5),
        "max_price": None,
        "in_stock_only": True,
        "exclude_ids": {1},
        "hide": {2},
    }


def test_filters_as_dict_returns_copies():
    rules = ServingRules(hide={2})
    filters_as_dict(rules)["hide"].add(3)
    assert rules.hide == {2}
