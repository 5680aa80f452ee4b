"""Query understanding on its own (pure): price phrases, the catalogue's attribute words, synonyms, reasons
and which term gives way when nothing matches."""

from decimal import Decimal

import pytest

from ragrec_django.ranking.query import (
    PriceRange,
    Synonyms,
    Vocabulary,
    expand,
    parse_price,
    singular,
    understand,
    weakest_term,
)

VOCABULARY = Vocabulary.build(
    {
        "category": {"T-shirts": 40, "Mugs": 30, "Clothing > Jumpers": 3},
        "colour": {"blue": 12, "purple": 9, "grey": 3, "navy": 2},
        "material": {"organic cotton": 3, "cotton": 4, "stainless steel": 2},
        "size": {"S": 3, "XL": 2, "EU 42": 1, "small": 2},
    },
    {"colour": {"gray": "grey", "navy": "blue", "cobalt": "blue"}},
)


@pytest.mark.parametrize(
    "text, low, high, currency",
    [
        ("blue t-shirt under 30", None, "30", ""),
        ("mug below £12.50", None, "12.50", "£"),
        ("between 20 and 50 mug", "20", "50", ""),
        ("from 10 to 20 hats", "10", "20", ""),
        ("mug £20-£50", "20", "50", "£"),
        ("lamps over £100", "100", None, "£"),
        ("headphones 40+", "40", None, ""),
        ("hat 25 or less", None, "25", ""),
        ("£30 mug", None, "30", "£"),
        ("a mug for 30 pounds", None, "30", ""),
        ("under £1,200 watch", None, "1200", "£"),
    ],
)
def test_price_phrases(text, low, high, currency):
    price = parse_price(text)
    assert (price.min_price, price.max_price, price.currency) == (
        None if low is None else Decimal(low),
        None if high is None else Decimal(high),
        currency,
    )


@pytest.mark.parametrize("text", ["bottle 500 ml", "sneakers EU 42", "watch 42 mm", "mug 20-50", "2 mugs"])
def test_numbers_that_are_not_prices(text):
    assert parse_price(text) is None


def test_price_descriptions():
    assert PriceRange(max_price=Decimal("30")).describe("£") == "under £30"
    assert PriceRange(min_price=Decimal("20"), max_price=Decimal("50"), currency="$").describe("£") == "$20–$50"
    assert PriceRange(min_price=Decimal("9.50")).describe() == "over 9.50"


def test_singular():
    assert [singular(w) for w in ("mugs", "watches", "berries", "glasses", "dress", "bus", "tshirts")] == [
        "mug",
        "watch",
        "berry",
        "glass",
        "dress",
        "bus",
        "tshirt",
    ]


def test_the_catalogue_vocabulary_is_recognised():
    understood = understand("blue t-shirt under 30", VOCABULARY, currency="£")
    assert [(t.attribute, t.value, t.text) for t in understood.terms] == [
        ("colour", "blue", "blue"),
        ("category", "T-shirts", "t-shirt"),
        ("price", "", "under 30"),
    ]
    assert understood.categories == ("T-shirts",)
    assert understood.boosts == {"colour": ("blue",)}
    assert understood.text == "blue t-shirt"
    assert understood.residual == ""  # every word was a term: the result set is everything the filters pass
    assert understand("warm blue jumper under £40", VOCABULARY).residual == "warm"
    assert understood.explains
    assert understood.labels("T-shirts", {"colour": "blue"}, Decimal("19")) == ["blue", "T-shirts", "under £30"]
    assert understood.labels("T-shirts", {"colour": "red"}, Decimal("19")) == ["T-shirts", "under £30"]


def test_spellings_plurals_phrases_and_sizes():
    terms = lambda q: [(t.attribute, t.value) for t in understand(q, VOCABULARY).terms]  # noqa: E731
    assert terms("gray tshirts size XL") == [("colour", "grey"), ("category", "T-shirts"), ("size", "XL")]
    assert terms("T Shirts in navy") == [("category", "T-shirts"), ("colour", "navy")]  # a value beats an alias
    assert terms("cobalt mugs") == [("colour", "blue"), ("category", "Mugs")]
    assert terms("organic cotton jumper") == [("material", "organic cotton"), ("category", "Clothing > Jumpers")]
    assert terms("steel mug") == [("material", "steel"), ("category", "Mugs")]  # a word of "stainless steel"
    assert terms("xl mug s") == [("category", "Mugs")]  # one- and two-letter sizes need the word "size"
    assert terms("small eu 42") == [("size", "small"), ("size", "EU 42")]
    assert terms("warm jumper") == [("category", "Clothing > Jumpers")]
    assert not understand("coffee mug", VOCABULARY).explains  # only a category: the plain reason stays


def test_soft_attributes_match_items_whose_value_contains_them():
    understood = understand("cotton steel", VOCABULARY)
    assert understood.boost_matches({"material": "organic cotton"}) == 1
    assert understood.boost_matches({"material": "stainless steel"}) == 1
    assert understood.boost_matches({"material": "linen"}) == 0
    assert understand("size s", VOCABULARY).boost_matches({"size": "XS"}) == 0  # sizes match exactly


def test_synonyms_widen_words_and_find_attributes():
    synonyms = Synonyms.build([("jumper", ["sweater", "pullover"], True), ("tee", ["t-shirt"], False)])
    assert synonyms.expansions[("sweater",)] == ("jumper", "pullover")
    assert ("t", "shirt") not in synonyms.expansions  # one way
    groups = expand("warm tee", synonyms)
    assert [(g.text, g.alternatives) for g in groups] == [("warm", ()), ("tee", ("t-shirt",))]
    vocabulary = Vocabulary.build({"category": {"Sweaters": 2, "T-shirts": 3}})
    assert understand("grey pullover", vocabulary, synonyms=synonyms).categories == ("Sweaters",)
    assert understand("tee", vocabulary, synonyms=synonyms).categories == ("T-shirts",)
    assert {"jumper", "sweater", "pullover", "tee", "t", "shirt"} <= synonyms.words()


def test_dropping_a_term_keeps_the_others_in_place():
    understood = understand("red mug under 5", Vocabulary.build({"category": {"Mugs": 3}, "colour": {"red": 2}}))
    price = understood.terms[-1]
    smaller = understood.without(price)
    assert smaller.query == "red mug" and smaller.price is None
    assert [smaller.query[t.start : t.end] for t in smaller.terms] == ["red", "mug"]
    first = understood.without(understood.terms[0])
    assert first.query == "mug under 5" and first.price.max_price == Decimal("5")
    assert [first.query[t.start : t.end] for t in first.terms] == ["mug", "under 5"]


def test_the_weakest_term_is_the_price_then_the_rarest_category():
    understood = understand("mug t-shirt under 5", VOCABULARY)
    mug, tshirt, price = understood.terms
    assert weakest_term(understood.terms, {0: 30, 1: 40, 2: 1}) is price
    assert weakest_term([mug, tshirt], {0: 30, 1: 40}) is mug
    assert weakest_term([mug, tshirt], {0: 40, 1: 40}) is tshirt  # a tie: the last typed
    assert weakest_term(understand("blue", VOCABULARY).terms, {0: 1}) is None  # soft terms never filter
