"""parse_budget_and_filters."""

import pytest

from ragrec_django.generation.prompt import parse_budget_and_filters


@pytest.mark.parametrize(
    "request_text, expected",
    [
        ("a warm jacket for hiking under 100", {"max_price": 100, "query": "warm jacket for hiking"}),
        ("red dress below £50", {"max_price": 50, "colours": ["red"], "query": "dress"}),
        ("boots less than 30 euros", {"max_price": 30, "query": "boots"}),
        ("desk lamp <= 80", {"max_price": 80, "query": "desk lamp"}),
        ("tent up to $249.99", {"max_price": 249.99, "query": "tent"}),
        ("headphones £50 or less", {"max_price": 50, "query": "headphones"}),
        ("budget 75 for a backpack", {"max_price": 75, "query": "backpack"}),
        ("a mug over 20", {"min_price": 20, "query": "mug"}),
        ("shoes in black and white at least €40", {"min_price": 40, "colours": ["black", "white"], "query": "shoes"}),
        (
            "I'm looking for a gray or navy sofa between £200 and £1,500 please",
            {"min_price": 200, "max_price": 1500, "colours": ["grey", "blue"], "query": "sofa"},
        ),
        (
            "a cushion in teal colour over 10 under 40",
            {"max_price": 40, "min_price": 10, "colours": ["turquoise"], "query": "cushion"},
        ),
    ],
)
def test_budget_and_filters(request_text, expected):
    assert parse_budget_and_filters(request_text) == expected


@pytest.mark.parametrize(
    "request_text",
    ["kitchen scales under 100 grams", "a jacket from patagonia", "over-ear headphones", "speaker over 50 watts"],
)
def test_numbers_that_are_not_prices_stay_in_the_query(request_text):
    assert parse_budget_and_filters(request_text) == {"query": request_text.removeprefix("a ")}


def test_hidden_characters_do_not_hide_a_budget():
    assert parse_budget_and_filters("jacket un\u200bder 1\u200d00") == {"max_price": 100, "query": "jacket"}
