"""Per-query merchandiser rules, the pure part: how a query is matched, redirect loops, and a query's pins,
boosts and hidden items merged into the serving configuration's rules."""

import pytest

from ragrec_django.ranking.query import merchandised, normalised_query, redirect_loop, searched_query
from ragrec_django.ranking.rules import ServingRules


def test_queries_match_whatever_their_case_punctuation_and_spaces():
    assert normalised_query("  Gift-Card!  ") == normalised_query("gift card") == "gift card"
    assert normalised_query("?!") == ""


def test_the_query_a_url_searches_for():
    assert searched_query("/search/?q=Blue+Mugs&sort=price_asc") == "blue mugs"
    assert searched_query("https://shop.example/search?q=jumper") == "jumper"
    assert searched_query("/category/mugs/") is None
    assert searched_query("/search/?q=") is None


def test_redirect_loops_are_found_however_long():
    assert redirect_loop("a", "/search/?q=a", {}) == ["a", "a"]
    assert redirect_loop("a", "/search/?q=b", {"b": "/search/?q=c", "c": "/search/?q=A"}) == ["a", "b", "c", "a"]
    assert redirect_loop("a", "/search/?q=b", {"b": "/search/?q=c", "c": "/search/?q=b"}) == ["a", "b", "c", "b"]
    assert redirect_loop("a", "/search/?q=b", {"b": "/pages/b/"}) is None
    assert redirect_loop("a", "/search/?q=b", {}) is None


def test_a_query_pin_takes_its_position_and_its_item_from_the_configuration():
    config = ServingRules(pin=[(1, 0), (2, 3), (3, 5)], boost={7: 0.5}, boost_categories={"Hats": 0.1}, hide={9})
    query = ServingRules(pin=[(2, 0), (4, 5)], boost={7: 0.25, 8: 1.0}, boost_categories={"Hats": 0.2}, hide={6})
    merged = merchandised(config, query)
    assert sorted(merged.pin) == [(2, 0), (4, 5)]  # item 2 and positions 0 and 5 are the query's
    assert merged.boost == {7: 0.75, 8: 1.0}
    assert merged.boost_categories == pytest.approx({"Hats": 0.3})
    assert merged.hide == {6, 9}
    assert merged.max_k == config.max_k


def test_an_item_hidden_by_one_side_is_not_pinned_by_the_other():
    merged = merchandised(ServingRules(pin=[(1, 0)], hide={2}), ServingRules(pin=[(2, 1)], hide={1}))
    assert merged.pin == [] and merged.hide == {1, 2}


def test_a_query_pin_beyond_the_configuration_page_is_dropped():
    assert merchandised(ServingRules(max_k=5), ServingRules(pin=[(1, 7), (2, 1)])).pin == [(2, 1)]
