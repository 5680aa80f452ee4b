"""Search as a shopper expects it, on a small catalogue built here (real MiniLM text space): query
understanding (price phrases, categories, colours, materials), reasons that name what matched, the answer
when nothing matches, facets, sorting, merchandiser synonyms, search analytics and another language."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ragrec_django.models import Item, SearchLog, SearchSynonym
from ragrec_django.services import encoding, recommend
from ragrec_django.services import search as search_service
from ragrec_django.services.events import EventInput, record_events
from ragrec_django.services.recommend import Visitor
from ragrec_django.storage import search as search_storage
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db

# (category, title, colour, material, price, description)
PRODUCTS = [
    (
        "T-shirts",
        "Meadow Purple Cotton T-Shirt",
        "purple",
        "cotton",
        "18.00",
        "A soft purple crew-neck t-shirt, warm enough to layer.",
    ),
    ("T-shirts", "Harbour Blue Cotton T-Shirt", "blue", "cotton", "22.00", "A blue crew-neck t-shirt in cotton."),
    ("T-shirts", "Nordic Blue Linen T-Shirt", "blue", "linen", "35.00", "A blue linen t-shirt for summer."),
    (
        "T-shirts",
        "Urban Red Organic Cotton T-Shirt",
        "red",
        "organic cotton",
        "25.00",
        "A red t-shirt in organic cotton.",
    ),
    ("Hats", "Alpine Blue Wool Felt Hat", "blue", "wool felt", "45.00", "A warm blue wool felt hat with a wide brim."),
    ("Hats", "Summit Purple Wool Felt Hat", "purple", "wool felt", "39.00", "A warm purple wool felt hat."),
    ("Mugs", "Cedar Red Stoneware Mug", "red", "stoneware", "12.00", "A red stoneware mug for coffee."),
    ("Mugs", "Fjord Blue Porcelain Mug", "blue", "porcelain", "14.00", "A blue porcelain mug for tea."),
    ("Mugs", "Ember Red Enamel Mug", "red", "enamel", "9.50", "A red enamel camping mug."),
    (
        "Lamps",
        "Lumen Blue Ceramic Table Lamp",
        "blue",
        "ceramic",
        "60.00",
        "A blue ceramic lamp with a soft, warm light.",
    ),
]


@pytest.fixture(autouse=True)
def _fresh_search_caches():
    """Synonyms and popular searches are read from this test's database, not kept from an earlier test."""
    search_service.forget_caches()


@pytest.fixture
def shop(db, ragrec_encoders, settings):
    """The catalogue above, encoded into the "text" space only (the image spaces play no part here)."""
    settings.RAGREC = {
        **settings.RAGREC,
        "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 1.0, "image": 0.0},
        "SEARCH_CURRENCY": "£",
    }
    products = {}
    for index, (category_name, title, colour, material, price, description) in enumerate(PRODUCTS):
        category, _ = Category.objects.get_or_create(name=category_name, slug=category_name.lower())
        products[title] = Product.objects.create(
            title=title,
            slug="p%d" % index,
            category=category,
            price=Decimal(price),
            stock=5,
            colour=colour,
            material=material,
            size="M",
            description=description,
        )
    encoding.encode_items("text", [p.pk for p in products.values()])
    return products


def titles(result):
    return [r.item.title for r in result]


def test_price_phrase_and_category_are_filters_and_the_reason_names_what_matched(shop):
    result = recommend.search("blue t-shirt under 30", k=5)
    assert result.items and {r.item.category for r in result} == {"T-shirts"}
    assert all(r.item.price <= 30 for r in result)
    assert titles(result)[0] == "Harbour Blue Cotton T-Shirt"
    assert result.items[0].reason == "blue, T-shirts, under £30"
    assert "attributes" in result.items[0].components
    # The other T-shirts under 30 still come, after it, saying what they match.
    assert [r.reason for r in result.items[1:]] == ["T-shirts, under £30"] * (len(result) - 1)
    assert {(t["attribute"], t["use"]) for t in result.understood} == {
        ("colour", "boost"),
        ("category", "filter"),
        ("price", "filter"),
    }


def test_a_query_without_attributes_keeps_the_plain_reason(shop):
    result = recommend.search("coffee mug", k=3)
    assert {r.item.category for r in result} == {"Mugs"}  # "mug" names a category
    assert result.items[0].reason == "matches 'coffee mug'"


@pytest.mark.parametrize(
    "query, keyword",
    [
        ("mugs", False),  # every word is the category filter: each mug matches, the spaces rank them
        ("mugs under 13", False),  # a price phrase filters too
        ("red mugs", True),  # a colour is a boost: it must match as a word
        ("coffee mugs", True),  # a word no term took
    ],
)
def test_the_keyword_retriever_runs_only_when_words_are_left_to_match(shop, query, keyword):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        result = recommend.search(query, k=5)
    assert result.items and {r.item.category for r in result} == {"Mugs"}
    assert any("_tsquery(" in q["sql"] for q in captured.captured_queries) == keyword
    assert ("keyword" in result.items[0].components) == keyword


def test_a_category_only_search_still_shows_items_without_a_vector(shop):
    """Not encoded yet: no space ranks it, so it comes after the ranked items (the keyword retriever is skipped)."""
    category = Category.objects.get(name="Mugs")
    grey = Product.objects.create(
        title="Granite Grey Mug", slug="grey", category=category, price=Decimal("11"), stock=3, colour="grey"
    )
    encoding.sync_host_items([grey.pk])
    result = recommend.search("mugs", k=10)
    assert titles(result)[-1] == "Granite Grey Mug" and len(result) == 4


def test_the_keyword_retriever_runs_when_the_filter_holds_more_than_the_words_name(shop, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:  # a facet of three categories: "mugs" names one
        result = search_service.search("mugs", k=10, selected={"category": ["Mugs", "Lamps", "Hats"]})
    assert any("_tsquery(" in q["sql"] for q in captured.captured_queries)
    assert [r.item.category for r in result][:3] == ["Mugs"] * 3
    SearchSynonym.objects.create(term="tumbler", synonyms="mug", two_way=False)
    search_service.forget_caches()
    with CaptureQueriesContext(connection) as captured:  # a synonym of the category asks for less than it holds
        search_service.search("tumbler", k=5)
    assert any("_tsquery(" in q["sql"] for q in captured.captured_queries)


def test_warm_blue_jumper_puts_a_blue_item_first(shop):
    # No jumper in the shop: the colour asked for beats a purple T-shirt that is "warm enough to layer".
    result = recommend.search("warm blue jumper", k=5)
    first = Product.objects.get(pk=int(result.items[0].item.key))
    assert first.colour == "blue", titles(result)
    assert result.items[0].reason == "blue"
    assert titles(result)[0] != "Meadow Purple Cotton T-Shirt"


def test_material_boost_and_colour_spellings(shop):
    assert titles(recommend.search("linen t-shirt", k=1)) == ["Nordic Blue Linen T-Shirt"]
    assert titles(recommend.search("cotton tshirt in purple", k=1)) == ["Meadow Purple Cotton T-Shirt"]
    # "organic cotton" is one material; "cotton" also finds it.
    result = recommend.search("organic cotton t-shirts", k=1)
    assert (
        titles(result) == ["Urban Red Organic Cotton T-Shirt"] and result.items[0].reason == "organic cotton, T-shirts"
    )


def test_nothing_matching_drops_the_weakest_term_and_says_so(shop):
    result = recommend.search("red mug under 5", k=5)
    assert result.notice == "No results for 'red mug under 5'; showing 'red mug'"
    assert result.items and {r.item.category for r in result} == {"Mugs"}
    assert titles(result)[0] in ("Cedar Red Stoneware Mug", "Ember Red Enamel Mug")
    # A price goes before a category, even one that fewer items have.
    result = recommend.search("lamp under 20", k=5)
    assert result.notice == "No results for 'lamp under 20'; showing 'lamp'"
    assert titles(result) == ["Lumen Blue Ceramic Table Lamp"]
    assert recommend.search("blue mug", k=3).notice is None


def test_facets_count_the_result_set_and_choices_filter(shop):
    result = recommend.search("mug", k=10, facets=["category", "colour", "material", "price"])
    facets = {f.name: {v.value: v.count for v in f.values} for f in result.facets}
    assert facets["category"] == {"Mugs": 3}
    assert facets["colour"] == {"red": 2, "blue": 1}
    assert facets["price"] == {"-10": 1, "10-25": 2}
    assert [v.label for v in result.facets[-1].values] == ["under £10", "£10–£25"]  # bands in price order

    red = recommend.search("mug", k=10, selected={"colour": ["red"]}, facets=["colour"])
    assert set(titles(red)) == {"Cedar Red Stoneware Mug", "Ember Red Enamel Mug"}
    assert [(v.value, v.count, v.selected) for v in red.facets[0].values] == [("red", 2, True)]
    cheap = recommend.search("mug", k=10, selected={"price": ["-10"]})
    assert titles(cheap) == ["Ember Red Enamel Mug"]
    with pytest.raises(recommend.BadQuery, match="Unknown facet"):
        recommend.search("mug", selected={"shape": ["round"]})
    with pytest.raises(recommend.BadQuery, match="price"):
        recommend.search("mug", selected={"price": ["cheap"]})


def test_sort_by_price_and_newest(shop):
    ascending = recommend.search("t-shirt", k=10, sort="price_asc")
    prices = [r.item.price for r in ascending]
    assert prices == sorted(prices) and len(prices) == 4
    descending = recommend.search("t-shirt", k=10, sort="price_desc")
    assert [r.item.price for r in descending] == sorted(prices, reverse=True)
    Item.objects.filter(title="Nordic Blue Linen T-Shirt").update(created_at=timezone.now() + timedelta(days=1))
    assert titles(recommend.search("t-shirt", k=1, sort="newest")) == ["Nordic Blue Linen T-Shirt"]
    with pytest.raises(recommend.BadQuery, match="sort"):
        recommend.search("t-shirt", sort="cheapest")


def test_merchandiser_synonyms_apply_at_once_one_way_or_two_way(shop, settings):
    category = Category.objects.create(name="Sweaters", slug="sweaters")
    sweater = Product.objects.create(
        title="Glacier Grey Sweater",
        slug="sweater",
        category=category,
        price="50.00",
        stock=3,
        colour="grey",
        material="wool",
        description="A grey knitted pullover.",
    )
    encoding.encode_items("text", [sweater.pk])
    settings.RAGREC = {**settings.RAGREC, "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 0.0, "image": 0.0}}
    assert "Glacier Grey Sweater" not in titles(recommend.search("jumper", k=5))

    rule = SearchSynonym.objects.create(term="jumper", synonyms="sweater", two_way=False)
    search_storage.forget_synonyms()
    result = recommend.search("grey jumper", k=5)
    assert titles(result) == ["Glacier Grey Sweater"]  # the synonym names a category: a filter
    assert result.items[0].reason == "grey, Sweaters"
    assert recommend.search("jumper", k=5).query == "jumper"  # a synonym's word is never "corrected"

    SearchSynonym.objects.create(term="pullover", synonyms="tee", two_way=False)
    search_storage.forget_synonyms()
    assert "Glacier Grey Sweater" not in titles(recommend.search("tee", k=5))  # one way only
    rule.two_way = True
    rule.save()
    SearchSynonym.objects.create(term="mug", synonyms="cup, beaker", two_way=True)
    search_storage.forget_synonyms()
    assert {r.item.category for r in recommend.search("beaker", k=5)} == {"Mugs"}


def test_searches_for_a_visitor_are_logged_and_reported(shop):
    visitor = Visitor(session_key="s1")
    first = recommend.search("blue mug", k=3, visitor=visitor)
    record_events([EventInput(event="click", item=first.items[0].item.key, session_key="s1", source="search")])
    recommend.search("blue mug", k=3, visitor=Visitor(session_key="s2"))
    recommend.search("xylophone under 1", k=3, visitor=visitor)
    recommend.search("mug", k=3)  # no visitor (e.g. the assistant): not logged
    rows = list(SearchLog.objects.order_by("id"))
    assert [(r.query, r.normalised, r.result_count > 0, r.session_key) for r in rows] == [
        ("blue mug", "blue mug", True, "s1"),
        ("blue mug", "blue mug", True, "s2"),
        ("xylophone under 1", "xylophone", True, "s1"),
    ]
    assert rows[0].item_keys == [r.item.key for r in first]
    assert rows[2].shown_query == "xylophone"
    # Clicks count for the visitor's last search before them that showed the item.
    record_events([EventInput(event="click", item=first.items[0].item.key, session_key="s2", source="search")])

    today = timezone.localdate()
    report = search_service.report(today, today, min_searches=1)
    top = {row.query: row for row in report.top}
    assert top["blue mug"].searches == 2 and top["blue mug"].clicked == 2 and top["blue mug"].ctr == 1.0
    assert [(row.query, row.clicked) for row in report.low_ctr] == [("xylophone", 0), ("blue mug", 2)]
    # No product has the word: only the semantic retriever answered, a "zero result" query for the merchandiser.
    assert [(row.query, row.zero_results) for row in report.zero] == [("xylophone", 1)]
    assert report.daily == [(today, 3, 1)]


def test_search_language_selects_the_text_search_configuration(db, settings, ragrec_encoders):
    settings.RAGREC = {
        **settings.RAGREC,
        "SEARCH_LANGUAGE": "german",
        "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 0.0, "image": 0.0},
    }
    category = Category.objects.create(name="Tassen", slug="tassen")
    for slug, title in (
        ("rot", "Rote Kaffeetasse aus Steingut"),
        ("blau", "Blaue Tasse aus Porzellan"),
        ("lampe", "Gelbe Lampe"),
    ):
        Product.objects.create(title=title, slug=slug, category=category, price="10.00", stock=1)
    from ragrec_django.services.encoding import sync_host_items

    sync_host_items(list(Product.objects.values_list("pk", flat=True)))
    # German stemming: "Tassen" (plural) finds "Tasse"; a German stop word ("aus") is no obstacle.
    assert titles(recommend.search("Tassen aus Porzellan", k=5)) == ["Blaue Tasse aus Porzellan"]
    settings.RAGREC = {**settings.RAGREC, "SEARCH_LANGUAGE": "simple"}
    sync_host_items(list(Product.objects.values_list("pk", flat=True)))
    assert titles(recommend.search("lampe", k=5)) == ["Gelbe Lampe"]


def test_autocomplete_suggests_past_searches_completions_categories_and_products(shop):
    for session in ("a", "b"):
        recommend.search("blue linen t-shirt", k=3, visitor=Visitor(session_key=session))
    recommend.search("blue lamp", k=3, visitor=Visitor(session_key="c"))
    found = [(s.text, s.kind) for s in search_service.suggest("blue l")]
    assert found[:2] == [("blue linen t-shirt", "query"), ("blue lamp", "query")]  # most searched first
    assert ("Nordic Blue Linen T-Shirt", "product") in found
    # A typo in a finished word is corrected, and the last word completed even with a typo in it.
    found = [(s.text, s.kind) for s in search_service.suggest("bleu stonw")]
    assert ("blue stoneware", "completion") in found
    assert ("Cedar Red Stoneware Mug", "product") not in found  # not blue
    assert [(s.text, s.kind) for s in search_service.suggest("hat")][:2] == [
        ("Hats", "category"),
        ("Alpine Blue Wool Felt Hat", "product"),
    ]
    assert search_service.suggest("") == [] and search_service.suggest("!!") == []
    assert len(search_service.suggest("blue", k=3)) == 3


def test_autocomplete_puts_the_visitors_recent_categories_first(shop):
    lamp = "Lumen Blue Ceramic Table Lamp"
    products = [s.text for s in search_service.suggest("blue", k=8) if s.kind == "product"]
    assert products[0] != lamp  # the longest title comes last
    record_events([EventInput(event="view", item=str(shop[lamp].pk), session_key="v")])
    products = [s for s in search_service.suggest("blue", k=8, visitor=Visitor(session_key="v")) if s.kind == "product"]
    assert products[0].text == lamp and products[0].category == "Lamps" and products[0].url
