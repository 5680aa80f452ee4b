"""Full text per item language (``SEARCH_LANGUAGES``) and CJK words in autocomplete, query understanding and
synonyms, end to end on the real database: a catalogue of German and English products each stemmed with its own
language's configuration, a Chinese catalogue whose categories, colours and synonyms are understood inside runs of
characters and whose prefixes are completed, and the system check of the new setting (ragrec.E019)."""

from decimal import Decimal

import pytest

from ragrec_django.checks import check_text_search_configurations, check_validated_settings
from ragrec_django.models import Item, SearchSynonym
from ragrec_django.services import encoding, recommend
from ragrec_django.services import search as search_service
from ragrec_django.storage.keyword import keyword_search
from shop_demo.catalog.adapters import ProductAdapter
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db

# (slug, language, category, title, inflected forms of a word of the title that must find it)
GERMAN = [
    ("glaeser", "de", "Gläser", "Sechs Gläser aus Kristall", ["Glas", "Gläsern"]),
    ("schuhe", "de-AT", "Schuhe", "Schuhe aus Leder", ["Schuh", "Schuhen"]),
    ("stuehle", "de", "Möbel", "Zwei Stühle aus Eiche", ["Stuhl", "Stuhls"]),
    ("kerze", "DE", "Deko", "Eine Kerze aus Bienenwachs", ["Kerzen"]),
    ("tasse", "de", "Geschirr", "Große Tasse mit Henkel", ["Tassen"]),
]
ENGLISH = [
    ("batteries", "en", "Electronics", "Rechargeable batteries", ["battery"]),
    ("cups", "en-GB", "Kitchen", "Stackable enamel cups", ["cup"]),
    ("lamp", "en_us", "Lighting", "Desk lamp with a clamp", ["lamps"]),
    ("running", "EN", "Sport", "Running vest", ["run", "runs"]),
]
# (slug, category, title, colour, material, description)
CHINESE = [
    ("mug", "杯子", "蓝色陶瓷咖啡杯", "蓝色", "陶瓷", "一个蓝色的陶瓷杯子，适合喝咖啡和茶。"),
    ("wallet", "钱包", "黑色真皮钱包", "黑色", "真皮", "男士黑色真皮钱包，有多个卡位。"),
    ("scarf", "围巾", "红色羊毛围巾", "红色", "羊毛", "柔软保暖的红色羊毛围巾，适合冬天。"),
    ("kettle", "厨房电器", "不锈钢电热水壶", "银色", "不锈钢", "一点七升大容量，水开自动断电。"),
    ("tshirt", "服装", "纯棉白色T恤", "白色", "纯棉", "透气舒适的纯棉短袖T恤。"),
]
LANGUAGES = {"de": "german", "en": "english"}


@pytest.fixture(autouse=True)
def _fresh_search_caches():
    search_service.forget_caches()


@pytest.fixture
def languages(monkeypatch):
    """The products' languages as the shop's adapter reports them (``get_language``), by slug."""
    by_slug: dict[str, str] = {}
    monkeypatch.setattr(ProductAdapter, "get_language", lambda self, item: by_slug.get(item.slug, ""))
    return by_slug


def configure(settings, **ragrec):
    settings.RAGREC = {**settings.RAGREC, "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 0.0, "image": 0.0}, **ragrec}


def add(slug, category_name, title, *, colour="", material="", description=""):
    category, _ = Category.objects.get_or_create(name=category_name, defaults={"slug": slug + "-c"})
    return Product.objects.create(
        title=title,
        slug=slug,
        category=category,
        price=Decimal("20.00"),
        stock=5,
        colour=colour,
        material=material,
        description=description,
    ).pk


def add_european(languages, rows):
    ids = []
    for slug, language, category, title, _ in rows:
        languages[slug] = language
        ids.append(add(slug, category, title))
    encoding.sync_host_items(ids)


def add_chinese(languages=None, language="zh"):
    ids = []
    for slug, category, title, colour, material, description in CHINESE:
        if languages is not None:
            languages[slug] = language
        ids.append(add(slug, category, title, colour=colour, material=material, description=description))
    encoding.sync_host_items(ids)


def titles(query, k=5):
    return [r.item.title for r in recommend.search(query, k=k)]


# ---------------------------------------------------------------- a configuration per item language


def test_each_item_is_stemmed_with_its_own_language(settings, languages):
    """German products stemmed with "german" and English ones with "english" in one catalogue: every inflected form
    finds its product, whatever the language, with one query (each configuration's tsquery, OR-ed)."""
    configure(settings, SEARCH_LANGUAGE="simple", SEARCH_LANGUAGES=LANGUAGES)
    add_european(languages, GERMAN + ENGLISH)
    for _, _, _, title, forms in GERMAN + ENGLISH:
        for form in forms:
            assert titles(form) == [title], form
    vectors = dict(Item.objects.values_list("title", "search_vector"))
    assert "'glas':2A" in vectors["Sechs Gläser aus Kristall"]  # German stem, German stop word "aus" dropped
    assert "'batteri':2A" in vectors["Rechargeable batteries"]  # English stem
    assert "'stackabl':1A" in vectors["Stackable enamel cups"]


def test_one_configuration_for_every_item_misses_the_other_languages_forms(settings, languages):
    """What SEARCH_LANGUAGES fixes: with one SEARCH_LANGUAGE, the other language's inflected forms find nothing,
    except those the spelling corrector takes to a word of the catalogue (one letter away: "Gläsern" -> "gläser")."""
    for language, missed, expected in (
        ("english", GERMAN, {"Glas", "Stuhl", "Stuhls"}),
        ("german", ENGLISH, {"battery", "cup", "run", "runs"}),
    ):
        configure(settings, SEARCH_LANGUAGE=language, SEARCH_LANGUAGES={})
        Product.objects.all().delete()
        Item.objects.all().delete()
        add_european(languages, GERMAN + ENGLISH)
        misses = {form for _, _, _, title, forms in missed for form in forms if titles(form) != [title]}
        assert misses >= expected, (language, misses)


def test_each_language_matches_the_whole_query_in_its_own_words(settings, languages):
    """A query is matched by each language's tsquery as a whole: "aus" is a German stop word (dropped from the
    German products' vectors) but an English word, so "Gläser aus Kristall" finds the German product through the
    German tsquery alone; a query of words that are stop words in every configuration finds nothing, without an
    error."""
    configure(settings, SEARCH_LANGUAGE="english", SEARCH_LANGUAGES={"de": "german"})
    add_european(languages, GERMAN + ENGLISH)
    assert titles("Gläser aus Kristall") == ["Sechs Gläser aus Kristall"]
    assert titles("Tassen mit Henkel") == ["Große Tasse mit Henkel"]
    assert keyword_search("in", 5) == ([], "in")  # a stop word in English and in German
    assert titles("in the") == []


def test_english_understanding_when_english_is_one_of_the_languages(settings, languages):
    """Query understanding's English helpers (here plural folding: "accessories" names the category "Accessory",
    three letters away, which the spelling corrector would not change) are on when English is a configured
    language, not only when it is SEARCH_LANGUAGE."""
    languages.update({"strap": "en", "glaeser": "de"})
    encoding.sync_host_items([add("strap", "Accessory", "Watch strap"), add("glaeser", "Gläser", "Sechs Gläser")])
    for search_languages, expected in (({"de": "german"}, []), (LANGUAGES, [("category", "Accessory", "filter")])):
        configure(settings, SEARCH_LANGUAGE="simple", SEARCH_LANGUAGES=search_languages)
        understood = recommend.search("accessories").understood
        assert [(t["attribute"], t["value"], t["use"]) for t in understood] == expected, search_languages


def test_items_of_no_configured_language_use_the_defaults(settings, languages):
    configure(settings, SEARCH_LANGUAGE="english", SEARCH_LANGUAGES={"de": "german"})
    languages.update({"unknown": "fr", "none": ""})
    encoding.sync_host_items([add("unknown", "Kitchen", "Enamel cups"), add("none", "Lighting", "Desk lamps")])
    assert titles("cup") == ["Enamel cups"]  # "fr" is not configured: SEARCH_LANGUAGE stems it
    assert titles("lamp") == ["Desk lamps"]
    assert Item.objects.get(title="Enamel cups").metadata["language"] == "fr"  # kept on the mirror
    assert "language" not in Item.objects.get(title="Desk lamps").metadata


def test_a_language_with_a_tokeniser_beside_european_languages(settings, languages):
    """Chinese products tokenised (bigrams) and German ones stemmed, with no SEARCH_TOKENISER: each language's
    configuration and tokeniser, for the index and for the queries."""
    configure(
        settings,
        SEARCH_LANGUAGE="english",
        SEARCH_TOKENISER="none",
        SEARCH_LANGUAGES={"de": "german", "zh": {"CONFIG": "simple", "TOKENISER": "bigram"}},
    )
    add_european(languages, GERMAN)
    add_chinese(languages)
    for query, expected in (("咖啡杯", "蓝色陶瓷咖啡杯"), ("羊毛围巾", "红色羊毛围巾"), ("电热水壶", "不锈钢电热水壶")):
        assert titles(query) == [expected], query
    assert titles("Gläsern") == ["Sechs Gläser aus Kristall"]
    vectors = dict(Item.objects.values_list("title", "search_vector"))
    assert "'咖啡'" in vectors["蓝色陶瓷咖啡杯"] and "'glas'" in vectors["Sechs Gläser aus Kristall"]


def test_autocomplete_completes_in_every_configured_language(settings, languages):
    configure(settings, SEARCH_LANGUAGE="simple", SEARCH_LANGUAGES=LANGUAGES)
    add_european(languages, GERMAN + ENGLISH)
    for prefix, title in (("kristal", "Sechs Gläser aus Kristall"), ("rechar", "Rechargeable batteries")):
        products = [s.text for s in search_service.suggest(prefix) if s.kind == "product"]
        assert products == [title], prefix


# ---------------------------------------------------------------- CJK words in understanding, synonyms, autocomplete


def tokenisers():
    names = ["bigram"]
    try:
        import jieba  # noqa: F401

        names.append("jieba")
    except ImportError:
        pass
    return names


@pytest.fixture(params=tokenisers())
def chinese_shop(request, settings, languages):
    """The Chinese catalogue, its tokeniser chosen by SEARCH_TOKENISER (bigram) or by the items' language (jieba)."""
    if request.param == "bigram":
        configure(settings, SEARCH_LANGUAGE="simple", SEARCH_TOKENISER="bigram")
        add_chinese()
    else:
        configure(settings, SEARCH_LANGUAGES={"zh": {"CONFIG": "simple", "TOKENISER": "jieba"}})
        add_chinese(languages)
    return request.param


def understood(query):
    return {(t["attribute"], t["value"], t["use"]) for t in recommend.search(query, k=5).understood}


def test_a_chinese_category_and_colour_inside_a_run_are_understood(chinese_shop):
    """Every product's colour and category written together, alone or after other words, is understood as it is in
    English: the category a filter, the colour a boost; the product comes first."""
    for _slug, category, title, colour, material, _ in CHINESE:
        for query in (colour + category, "我想买" + colour + category, colour + material + category):
            assert {("category", category, "filter"), ("colour", colour, "boost")} <= understood(query), query
            result = recommend.search(query, k=5)
            assert [r.item.title for r in result][:1] == [title], query
            assert {r.item.category for r in result} == {category}, query
    result = recommend.search("蓝色杯子", k=5)
    assert result.items[0].reason == "蓝色, 杯子"


def test_a_chinese_synonym_applies_to_keyword_search_and_understanding(chinese_shop):
    """No product says "马克杯" (mug) or "暖脖" (neck warmer): with the merchandiser's synonyms, each finds its
    product, by keyword and (for the category) by understanding."""
    for query in ("马克杯", "暖脖"):
        assert titles(query) == [], query
    SearchSynonym.objects.create(term="马克杯", synonyms="杯子", two_way=True)
    SearchSynonym.objects.create(term="暖脖", synonyms="羊毛围巾", two_way=False)
    search_service.forget_caches()
    assert titles("马克杯") == ["蓝色陶瓷咖啡杯"]
    assert ("category", "杯子", "filter") in understood("马克杯")
    assert {("category", "杯子", "filter"), ("colour", "蓝色", "boost")} <= understood("我要蓝色马克杯")
    assert titles("我要蓝色马克杯") == ["蓝色陶瓷咖啡杯"]
    assert titles("暖脖") == ["红色羊毛围巾"]  # keyword search: "暖脖" is also searched as "羊毛围巾"
    assert titles("红色暖脖") == ["红色羊毛围巾"]


def test_autocomplete_completes_a_chinese_prefix(chinese_shop):
    """The first characters of a word of a product's text suggest the product, after other words or not; the first
    character of a category suggests the category; a run is completed to a word of the catalogue."""
    for _slug, category, title, colour, material, _ in CHINESE:
        for prefix in (title[:1], material[:1], colour + material[:1], "我要" + category[:1]):
            products = [s.text for s in search_service.suggest(prefix, k=20) if s.kind == "product"]
            assert title in products, prefix
        categories = [s.text for s in search_service.suggest("我要" + category[:1], k=20) if s.kind == "category"]
        assert category in categories, category
        typed, word = "我要" + material[:1], "我要" + material
        completions = [s.text for s in search_service.suggest(typed) if s.kind == "completion"]
        assert any(len(c) > len(typed) and (c.startswith(word) or word.startswith(c)) for c in completions), typed
    # A run completed to a product's whole title is suggested as the product (with its URL).
    suggestions = search_service.suggest("蓝色陶")
    assert [(s.kind, s.url) for s in suggestions if s.text == "蓝色陶瓷咖啡杯"] == [("product", "/product/mug/")]
    assert search_service.suggest("汽车") == []  # nothing starts with it


def test_autocomplete_takes_any_mixed_text(chinese_shop):
    """Random prefixes mixing the catalogue's characters, kana, full-width and ASCII letters, digits and punctuation:
    at most k suggestions of the four kinds, products with their page, no error."""
    import random

    rng = random.Random(5)
    alphabet = "".join(row[2] + row[1] for row in CHINESE) + "マグｶｯﾌﾟＴａ1 ,。、-"
    for _ in range(60):
        prefix = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
        k = rng.randrange(1, 9)
        suggestions = search_service.suggest(prefix, k=k)
        assert len(suggestions) <= k, prefix
        assert all(s.kind in ("query", "completion", "category", "product") for s in suggestions), prefix
        assert all(s.url.startswith("/product/") for s in suggestions if s.kind == "product"), prefix


# ---------------------------------------------------------------- ragrec.E019


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["german"], "must be a dict"),
        ({"german": "german"}, "a key must be a language code"),
        ({"de": 3}, "must be a text-search configuration name"),
        ({"de": {"CONFIG": "german", "STEM": True}}, "unknown key(s) STEM"),
        ({"de": {"CONFIG": "german; drop table"}}, "CONFIG must be a text-search configuration name"),
        ({"zh": {"TOKENISER": "icu"}}, "Unknown tokeniser 'icu'"),
        ({"de": "german", "DE": "german"}, "named twice"),
    ],
)
def test_a_bad_mapping_is_a_system_check_error(settings, value, message):
    settings.RAGREC = {**settings.RAGREC, "SEARCH_LANGUAGES": value}
    errors = [e for e in check_validated_settings() if e.id == "ragrec.E019"]
    assert len(errors) == 1 and message in errors[0].msg, [e.msg for e in errors]


def test_jieba_missing_is_a_system_check_error(settings, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "jieba" else real_find_spec(name, *a)
    )
    settings.RAGREC = {**settings.RAGREC, "SEARCH_LANGUAGES": {"zh": {"TOKENISER": "jieba"}}}
    errors = [e for e in check_validated_settings() if e.id == "ragrec.E019"]
    assert len(errors) == 1 and "needs the jieba package" in errors[0].msg


def test_a_configuration_the_database_lacks_is_a_database_check_error(settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "SEARCH_LANGUAGE": "English",  # case as regconfig reads it: fine
        "SEARCH_LANGUAGES": {"de": "german", "tlh": "klingon", "ja": {"CONFIG": "public.nothing"}},
    }
    assert check_validated_settings() == []
    errors = check_text_search_configurations(databases=["default"])
    assert [e.id for e in errors] == ["ragrec.E019", "ragrec.E019"]
    assert "'klingon'" in errors[0].msg and "'public.nothing'" in errors[1].msg
    settings.RAGREC = {**settings.RAGREC, "SEARCH_LANGUAGE": "elvish", "SEARCH_LANGUAGES": {"de": "pg_catalog.german"}}
    errors = check_text_search_configurations(databases=["default"])
    assert len(errors) == 1 and 'SEARCH_LANGUAGE"]' in errors[0].msg and "'elvish'" in errors[0].msg
    settings.RAGREC = {**settings.RAGREC, "SEARCH_LANGUAGE": "english", "SEARCH_LANGUAGES": {}}
    assert check_text_search_configurations(databases=["default"]) == []
