"""The merchandiser's per-query rules: a redirect to a page, pins, boosts and hidden items for one query, checked
before they are saved, applied at once without a restart, audited, and offered on the search analytics page."""

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from ragrec_django.exceptions import InvalidSearchRule
from ragrec_django.models import Item, SearchRule
from ragrec_django.services import recommend
from ragrec_django.services import search as search_service
from ragrec_django.services.encoding import sync_host_items
from ragrec_django.services.recommend import Visitor
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_search_caches():
    search_service.forget_caches()


@pytest.fixture
def shop(db, settings):
    """Knitwear and scarves in the item mirror, searched by keyword only (no encoders needed): {slug: Item}."""
    settings.RAGREC = {**settings.RAGREC, "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 0.0, "image": 0.0}}
    knitwear = Category.objects.create(name="Knitwear", slug="knitwear")
    scarves = Category.objects.create(name="Scarves", slug="scarves")
    for slug, title, category, colour in (
        ("grey-sweater", "Grey wool sweater", knitwear, "grey"),
        ("red-sweater", "Red wool sweater", knitwear, "red"),
        ("blue-cardigan", "Blue wool cardigan", knitwear, "blue"),
        ("red-scarf", "Red wool scarf", scarves, "red"),
        ("gift-card", "Gift card", scarves, ""),
    ):
        Product.objects.create(title=title, slug=slug, category=category, price="30.00", stock=2, colour=colour)
    sync_host_items(list(Product.objects.values_list("pk", flat=True)))
    return {p.slug: Item.objects.get(key=str(p.pk)) for p in Product.objects.all()}


def titles(result):
    return [r.item.title for r in result]


def error_of(query="jumper", redirect_url="", rules=None, **kwargs) -> InvalidSearchRule:
    with pytest.raises(InvalidSearchRule) as caught:
        search_service.check_search_rule(query, redirect_url, rules, **kwargs)
    return caught.value


# ---------------------------------------------------------------- checks before saving


@pytest.mark.parametrize(
    "url", ["gift cards page", "javascript:alert(1)", "//evil.example/", "/with space/", "ftp://example.com/x", "mugs/"]
)
def test_a_redirect_to_something_that_is_not_a_url_is_refused(shop, url):
    error = error_of(redirect_url=url)
    assert error.field == "redirect_url" and "path of this site" in str(error)


def test_a_redirect_to_a_path_or_a_web_url_is_kept(shop):
    assert search_service.check_search_rule("  Gift-Cards! ", "/category/gifts/", None) == (
        "gift cards",
        "/category/gifts/",
        {},
    )
    assert search_service.check_search_rule("sale", " https://shop.example/sale?x=1 ", {})[1] == (
        "https://shop.example/sale?x=1"
    )


def test_a_redirect_that_loops_is_refused(shop):
    error = error_of("jumper", "/search/?q=Jumper")
    assert error.field == "redirect_url" and "loop" in str(error) and "'jumper' -> 'jumper'" in str(error)
    search_service.save_search_rule("pullover", "/search/?q=jumper")
    error = error_of("jumper", "/search/?q=pullover")
    assert "'jumper' -> 'pullover' -> 'jumper'" in str(error)
    # A chain that ends on a page is fine; an inactive rule does not count.
    SearchRule.objects.filter(query="pullover").update(is_active=False)
    assert search_service.check_search_rule("jumper", "/search/?q=pullover", None)[1] == "/search/?q=pullover"


def test_pins_boosts_and_hides_must_name_items_and_categories_that_exist(shop):
    missing = max(item.id for item in shop.values()) + 100
    for rules, text in (
        ({"pin": [[missing, 0]]}, "pin: no item with id %d" % missing),
        ({"boost": {str(missing): 0.1}}, "boost: no item with id %d" % missing),
        ({"hide": [missing]}, "hide: no item with id %d" % missing),
        ({"boost_categories": {"Hats": 0.1}}, "boost_categories: no category 'Hats'"),
        ({"min_price": 10}, "may set only pin, boost, boost_categories, hide (got min_price)"),
        ({"pin": [[shop["gift-card"].id, -1]]}, "position -1"),
        ({"pin": [[shop["gift-card"].id, 0]], "hide": [shop["gift-card"].id]}, "also hidden"),
        ({"pin": "first"}, "expected a list of [item_id, position] pairs"),
        (["pin"], "must be a JSON object"),
    ):
        error = error_of(rules=rules)
        assert error.field == "rules" and text in str(error), (rules, str(error))
    error = error_of(rules={})
    assert error.field is None and "redirect URL, or rules" in str(error)
    assert error_of("?!", "/x/").field == "query"


# ---------------------------------------------------------------- applied to searches


def test_a_redirect_comes_with_the_results_as_typed_or_corrected(shop):
    search_service.save_search_rule("Gift Card", "/pages/gift-cards/")
    for typed in ("gift card", "GIFT-card!", "gift crad"):
        result = recommend.search(typed, k=3)
        assert result.redirect == "/pages/gift-cards/", typed
        assert titles(result) == ["Gift card"]
    assert recommend.search("wool", k=3).redirect is None


def test_a_pin_puts_the_item_first_for_that_query_only(shop):
    assert titles(recommend.search("sweater", k=3))[0] != "Gift card"
    search_service.save_search_rule("sweater", rules={"pin": [[shop["gift-card"].id, 0]]})
    result = recommend.search("sweater", k=3)
    assert titles(result)[0] == "Gift card" and "pinned" in result.items[0].reasons
    assert set(titles(result)[1:]) <= {"Grey wool sweater", "Red wool sweater"}
    assert "Gift card" not in titles(recommend.search("scarf", k=3))
    # A price or date sort keeps the pin; a facet choice the pinned item fails drops it.
    assert titles(recommend.search("sweater", k=3, sort="price_asc"))[0] == "Gift card"
    assert "Gift card" not in titles(recommend.search("sweater", k=3, selected={"colour": ["red"]}))


def test_a_category_boost_and_a_hidden_item(shop):
    for category, first in (("Knitwear", "Red wool sweater"), ("Scarves", "Red wool scarf")):
        search_service.save_search_rule("red wool", rules={"boost_categories": {category: 1.0}})
        assert titles(recommend.search("red wool", k=3))[0] == first
    search_service.save_search_rule("red wool", rules={"hide": [shop["red-scarf"].id]})
    assert "Red wool scarf" not in titles(recommend.search("red wool", k=5))
    assert "Red wool scarf" in titles(recommend.search("red", k=5))


def test_the_query_pin_takes_the_position_of_a_configuration_pin(shop, settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "SERVING_CONFIGS": {
            **settings.RAGREC.get("SERVING_CONFIGS", {}),
            "default": {"pin": [[shop["red-scarf"].id, 0]]},
        },
    }
    assert titles(recommend.search("sweater", k=3))[0] == "Red wool scarf"
    search_service.save_search_rule("sweater", rules={"pin": [[shop["gift-card"].id, 0]]})
    assert titles(recommend.search("sweater", k=3))[0] == "Gift card"


def test_a_rule_saved_in_another_process_applies_within_the_cache_time(shop, monkeypatch):
    recommend.search("sweater", k=3)  # the rules are read and cached
    SearchRule.objects.create(query="sweater", redirect_url="/knitwear/")  # as another process would
    monkeypatch.setattr("ragrec_django.storage.search.SYNONYMS_TTL_SECONDS", 0)
    assert recommend.search("sweater", k=3).redirect == "/knitwear/"


# ---------------------------------------------------------------- the admin and the storefront


def test_the_admin_checks_saves_and_audits_a_rule_that_applies_at_once(admin_client, shop):
    add = reverse("admin:ragrec_django_searchrule_add")
    assert 'value="jumper"' in admin_client.get(add, {"query": "jumper"}).content.decode()
    refused = admin_client.post(add, {"query": "jumper", "redirect_url": "a page", "rules": "{}", "is_active": "on"})
    assert refused.status_code == 200 and "path of this site" in refused.content.decode()
    missing = max(item.id for item in shop.values()) + 1
    refused = admin_client.post(
        add, {"query": "jumper", "redirect_url": "", "rules": '{"pin": [[%d, 0]]}' % missing, "is_active": "on"}
    )
    assert "no item with id %d" % missing in refused.content.decode()
    assert not SearchRule.objects.exists()
    saved = admin_client.post(
        add,
        {
            "query": "Jumper",
            "redirect_url": "/knitwear/",
            "rules": '{"pin": [[%d, 0]]}' % shop["gift-card"].id,
            "is_active": "on",
        },
    )
    assert saved.status_code == 302
    rule = SearchRule.objects.get()
    assert (rule.query, rule.redirect_url) == ("jumper", "/knitwear/")
    assert recommend.search("jumper", k=3).redirect == "/knitwear/"
    entry = LogEntry.objects.get(object_id=str(rule.pk))
    assert entry.user.username == "admin" and entry.is_addition()
    change = reverse("admin:ragrec_django_searchrule_change", args=[rule.pk])
    admin_client.post(change, {"query": "jumper", "redirect_url": "/sweaters/", "rules": "{}", "is_active": "on"})
    assert recommend.search("jumper", k=3).redirect == "/sweaters/"
    assert LogEntry.objects.filter(object_id=str(rule.pk)).count() == 2
    admin_client.post(reverse("admin:ragrec_django_searchrule_delete", args=[rule.pk]), {"post": "yes"})
    assert recommend.search("jumper", k=3).redirect is None


def test_the_analytics_page_offers_a_redirect_or_the_rule_for_each_query(admin_client, shop):
    recommend.search("cashmere", k=3, visitor=Visitor(session_key="a"))
    recommend.search("gift card", k=3, visitor=Visitor(session_key="a"))
    page = admin_client.get(reverse("admin:ragrec_django_search_analytics")).content.decode()
    assert reverse("admin:ragrec_django_searchrule_add") + "?query=cashmere" in page
    rule = search_service.save_search_rule("gift card", "/pages/gift-cards/")
    page = admin_client.get(reverse("admin:ragrec_django_search_analytics")).content.decode()
    assert reverse("admin:ragrec_django_searchrule_change", args=[rule.pk]) in page
    assert reverse("admin:ragrec_django_searchrule_add") + "?query=gift+card" not in page


def test_the_demo_search_page_follows_the_redirect(client, shop):
    search_service.save_search_rule("gift card", "/pages/gift-cards/")
    response = client.get(reverse("catalog:search"), {"q": "Gift card"})
    assert response.status_code == 302 and response["Location"] == "/pages/gift-cards/"
    assert client.get(reverse("catalog:search"), {"q": "wool"}).status_code == 200


# ---------------------------------------------------------------- spelling towards the catalogue's terms


def test_a_typo_goes_to_the_category_or_attribute_word_rather_than_a_commoner_word(db, settings):
    """ "cair" is one edit from "chair" and from "pair" (in many more descriptions): the word that names a category
    wins; an English word ("tell") and a catalogue word ("pair") stay as typed."""
    settings.RAGREC = {**settings.RAGREC, "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 0.0, "image": 0.0}}
    chairs = Category.objects.create(name="Chairs", slug="chairs")
    socks = Category.objects.create(name="Socks", slug="socks")
    Product.objects.create(title="Oak dining chair", slug="chair", category=chairs, price="90.00", stock=2)
    for index in range(3):
        Product.objects.create(
            title="Wool socks %d" % index, slug="socks-%d" % index, category=socks, price="9.00", stock=2,
            description="A pair of warm socks.",
        )  # fmt: skip
    sync_host_items(list(Product.objects.values_list("pk", flat=True)))
    assert search_service.spelling_corrector().correct("cair") == "pair"  # the general corrector alone
    result = recommend.search("oak cair", k=3)
    assert result.query == "oak chair" and titles(result) == ["Oak dining chair"]
    assert search_service.corrected_query("a pair to tell", search_service.synonyms()) == "a pair to tell"
