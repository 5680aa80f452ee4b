"""Search quality on the demo catalogue: a labelled query set built from the catalogue's own attributes.

    python benchmarks/search_quality.py [--count 1200] [--code PATH] [--label after] [--json out.json]

The script creates a scratch database (``--db-name``, default ``ragrec_bench_searchmerch``) on the configured
server (the embedded PostgreSQL of ``SHOP_DEMO_VAR_DIR``, this checkout's ``var/`` unless set, or
``DATABASE_URL``), seeds the demo catalogue as ``manage.py seed_catalog --no-images`` does (``--count``
products, seed 42), mirrors and encodes it into the demo's "text" space (the bundled MiniLM, on the CPU), adds
the merchandiser synonyms below, and drops the database at the end, also after an error or Ctrl-C.

Queries (deterministic, from the mirrored items: category, metadata colour and material, price), by kind:

* ``type``: a category as shoppers name it ("mug", "mugs", "table lamp");
* ``colour+type``: "red mug", for every colour a category has eligible items in;
* ``material+type``: "stoneware mug", for every material of a category;
* ``type+price``: "mug under 20", "backpacks between 50 and 80", "watch over 300" (bounds from the category's
  own price quartiles);
* ``misspelt``: a type or colour+type query with one typo in its longest word ("red muug", "sneekers");
* ``synonym``: a word the catalogue does not use, taught as a one-way synonym ("trainers" -> "sneakers"),
  alone and with a colour.

Graded relevance, from the item's attributes: 2 when the item is eligible and has every attribute the query
asks for (its category; its colour; its material, "cotton" counting "organic cotton"; its price in the range),
1 when it has the category but not all the rest, 0 otherwise. Search shows one item per variant group (the
default serving configuration), so the best achievable list holds one item per group: ``best`` relevant items
in the top 10 is ``min(10, groups with a fully relevant item)``. Per query: precision@10 (fully relevant items
in the top 10 over 10), its ratio to the best achievable (hits / best), and nDCG@10 with gains 2^grade - 1 against
the ideal list of the groups' best grades. Reported overall and per kind (means over the queries).

``--code PATH`` runs another checkout's code (a ``git worktree`` of an earlier commit) with this script and
its query set: "before" and "after" a change measured the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K = 10
KINDS = ("type", "colour+type", "material+type", "type+price", "misspelt", "synonym")
#: One-way synonyms a merchandiser would teach the demo shop: a word shoppers use -> the catalogue's word for it.
SYNONYMS = {
    "trainers": "sneakers",
    "rucksack": "backpack",
    "cup": "mug",
    "flask": "bottle",
    "brolly": "umbrella",
    "earphones": "headphones",
    "tee": "t-shirt",
    "wristwatch": "watch",
    "houseplant": "plant",
    "seat": "chair",
    "cap": "hat",
    "light": "lamp",
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1200, help="Demo products (default 1200, the demo's own).")
    parser.add_argument("--code", default=str(ROOT), help="Root of the checkout whose code is measured.")
    parser.add_argument("--label", default="", help="Name of this run in the output (e.g. before, after).")
    parser.add_argument("--db-name", default="ragrec_bench_searchmerch", help="Scratch database (dropped at the end).")
    parser.add_argument("--seed", type=int, default=7, help="Seed of the query sampling.")
    parser.add_argument("--json", help="Also write the per-kind table and every query's figures to this file.")
    parser.add_argument("--show", type=int, default=0, help="Print this many worst queries per kind.")
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="Keep the scratch database and reuse the catalogue already encoded in it (to measure again after a "
        "change without encoding again). Drop it later with a run without --keep-db.",
    )
    return parser.parse_args()


def log(message: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


# ---------------------------------------------------------------- the catalogue


def load_catalogue(count: int) -> None:
    """The demo catalogue (``seed_catalog --no-images``), mirrored and encoded into the "text" space."""
    from django.core.management import call_command

    from ragrec_django.services import encoding
    from shop_demo.catalog.models import Product

    call_command("seed_catalog", count=count, no_images=True, verbosity=0)
    pks = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    t0 = time.perf_counter()
    for start in range(0, len(pks), 256):
        encoding.encode_items("text", pks[start : start + 256])
    log("%d products mirrored and encoded in %.1f s" % (len(pks), time.perf_counter() - t0))


def loaded(count: int) -> bool:
    """Whether a kept scratch database already holds the catalogue, encoded."""
    from ragrec_django.models import Embedding, Item
    from shop_demo.catalog.models import Product

    products = Product.objects.count()
    return products == count and Item.objects.count() == products and Embedding.objects.count() >= products


def mirrored_items() -> list[dict]:
    from ragrec_django.models import Item

    rows = Item.objects.values_list("id", "category", "metadata", "price", "group_key", "is_eligible")
    return [
        {
            "id": item_id,
            "category": category,
            "colour": str((metadata or {}).get("colour", "")).lower(),
            "material": str((metadata or {}).get("material", "")).lower(),
            "price": float(price) if price is not None else None,
            "group": group or "i%d" % item_id,
            "eligible": eligible,
        }
        for item_id, category, metadata, price, group, eligible in rows
    ]


# ---------------------------------------------------------------- the labelled queries


def grade(item: dict, query: dict) -> int:
    if not item["eligible"] or item["category"] != query["category"]:
        return 0
    if query.get("colour") and item["colour"] != query["colour"]:
        return 1
    if query.get("material") and not set(query["material"].split()) <= set(item["material"].split()):
        return 1
    low, high = query.get("min_price"), query.get("max_price")
    if low is not None or high is not None:
        if (
            item["price"] is None
            or (low is not None and item["price"] < low)
            or (high is not None and item["price"] > high)
        ):
            return 1
    return 2


def ideal(items: list[dict], query: dict) -> tuple[list[int], int]:
    """The ideal top-10 grades (one item per group, its best grade) and the groups with a fully relevant item."""
    best: dict[str, int] = {}
    for item in items:
        g = grade(item, query)
        if g:
            best[item["group"]] = max(best.get(item["group"], 0), g)
    grades = sorted(best.values(), reverse=True)
    return grades[:K], sum(1 for g in grades if g == 2)


def typo(word: str, rng: random.Random) -> str:
    """One edit inside the word (never its first letter): a letter dropped, doubled, swapped or replaced."""
    position = rng.choice([i for i in range(1, len(word) - 1) if word[i].isalpha() and word[i + 1].isalpha()])
    kind = rng.choice(("drop", "double", "swap", "replace"))
    if kind == "drop":
        return word[:position] + word[position + 1 :]
    if kind == "double":
        return word[: position + 1] + word[position] + word[position + 1 :]
    if kind == "swap":
        return word[:position] + word[position + 1] + word[position] + word[position + 2 :]
    letters = "aeiou" if word[position] in "aeiou" else "bcdfghklmnprstvw"
    return word[:position] + rng.choice([c for c in letters if c != word[position]]) + word[position + 1 :]


def misspelt(text: str, rng: random.Random) -> str:
    words = text.split()
    longest = max(range(len(words)), key=lambda i: (len(words[i]), i))
    if len(words[longest]) < 4:
        return ""
    words[longest] = typo(words[longest], rng)
    return " ".join(words)


def build_queries(items: list[dict], seed: int) -> list[dict]:
    """The labelled query set (see the module docstring), each with its kind, text and what it asks for."""
    from shop_demo.catalog.seeding import CATEGORIES

    rng = random.Random(seed)
    eligible = [item for item in items if item["eligible"]]
    queries: list[dict] = []

    def add(kind: str, text: str, **asks) -> None:
        if text and not any(q["text"] == text for q in queries):
            queries.append({"kind": kind, "text": text, **asks})

    for spec in CATEGORIES:
        own = [item for item in eligible if item["category"] == spec.name]
        if not own:
            continue
        for text in {spec.noun.lower(), spec.name.lower()}:
            add("type", text, category=spec.name)
        for colour in sorted({item["colour"] for item in own if item["colour"]}):
            add(
                "colour+type",
                "%s %s" % (colour, rng.choice((spec.noun, spec.name)).lower()),
                category=spec.name,
                colour=colour,
            )
        for material in spec.materials:
            add(
                "material+type",
                "%s %s" % (material.lower(), spec.noun.lower()),
                category=spec.name,
                material=material.lower(),
            )
        prices = sorted(item["price"] for item in own if item["price"] is not None)
        low, high = (round(prices[int(len(prices) * q)]) for q in (0.25, 0.75))
        noun, name = spec.noun.lower(), spec.name.lower()
        add("type+price", "%s under %d" % (noun, high), category=spec.name, max_price=high)
        add("type+price", "%s under %d" % (name, low), category=spec.name, max_price=low)
        add("type+price", "%s between %d and %d" % (name, low, high), category=spec.name, min_price=low, max_price=high)
        add("type+price", "%s over %d" % (noun, high), category=spec.name, min_price=high)
    for term, word in SYNONYMS.items():
        spec = next(s for s in CATEGORIES if word in (s.noun.lower(), s.name.lower(), s.noun.lower().split()[-1]))
        add("synonym", term, category=spec.name)
        colours = sorted({i["colour"] for i in eligible if i["category"] == spec.name and i["colour"]})
        for colour in rng.sample(colours, 4):
            add("synonym", "%s %s" % (colour, term), category=spec.name, colour=colour)
    sources = [q for q in queries if q["kind"] in ("type", "colour+type")]
    for source in rng.sample(sources, min(60, len(sources))):
        text = misspelt(source["text"], rng)
        add("misspelt", text, **{k: v for k, v in source.items() if k not in ("kind", "text")})
    labelled = []
    for query in queries:
        query["ideal"], query["relevant_groups"] = ideal(items, query)
        if query["relevant_groups"]:
            labelled.append(query)
    return labelled


# ---------------------------------------------------------------- measuring


def dcg(grades: list[int]) -> float:
    return sum((2**g - 1) / math.log2(position + 2) for position, g in enumerate(grades[:K]))


def measure(queries: list[dict], items: list[dict]) -> list[dict]:
    from ragrec_django.services import search as search_service

    by_id = {item["id"]: item for item in items}
    rows = []
    for query in queries:
        t0 = time.perf_counter()
        result = search_service.search(query["text"], k=K)
        seconds = time.perf_counter() - t0
        grades = [grade(by_id[r.item.id], query) if r.item.id in by_id else 0 for r in result.items[:K]]
        hits = sum(1 for g in grades if g == 2)
        best = min(K, query["relevant_groups"])
        rows.append(
            {
                "kind": query["kind"],
                "query": query["text"],
                "hits": hits,
                "best": best,
                "precision_at_10": hits / K,
                "best_precision_at_10": best / K,
                "ratio": hits / best,
                "ndcg_at_10": dcg(grades) / dcg(query["ideal"]),
                "ms": round(seconds * 1000, 1),
                "shown": [r.item.title for r in result.items[:K]],
                "notice": getattr(result, "notice", None),
            }
        )
    return rows


def summary(rows: list[dict]) -> dict[str, dict]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["kind"]].append(row)
        groups["all"].append(row)
    table = {}
    for kind in (*KINDS, "all"):
        chosen = groups.get(kind, [])
        if not chosen:
            continue

        def mean(key, chosen=chosen):
            return round(sum(r[key] for r in chosen) / len(chosen), 4)

        table[kind] = {
            "queries": len(chosen),
            "precision_at_10": mean("precision_at_10"),
            "best_precision_at_10": mean("best_precision_at_10"),
            "ratio_to_best": mean("ratio"),
            "ndcg_at_10": mean("ndcg_at_10"),
            "queries_at_best": sum(1 for r in chosen if r["hits"] == r["best"]),
            "mean_ms": round(sum(r["ms"] for r in chosen) / len(chosen), 1),
        }
    return table


def print_table(table: dict, label: str) -> None:
    print("\nsearch quality%s (k=%d)" % (" (%s)" % label if label else "", K))
    print(
        "%-14s %7s %8s %8s %10s %8s %9s %8s"
        % ("kind", "queries", "P@10", "best", "P/best", "nDCG@10", "at best", "mean ms")
    )
    for kind, v in table.items():
        print(
            "%-14s %7d %8.3f %8.3f %10.3f %8.3f %9d %8.1f"
            % (
                kind,
                v["queries"],
                v["precision_at_10"],
                v["best_precision_at_10"],
                v["ratio_to_best"],
                v["ndcg_at_10"],
                v["queries_at_best"],
                v["mean_ms"],
            )
        )


# ---------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    code = Path(args.code).resolve()
    os.environ.setdefault("SHOP_DEMO_VAR_DIR", str(ROOT / "var"))  # the same server whichever code runs
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    sys.path.insert(0, str(code))
    os.chdir(code)  # something on the import path adds the working folder to sys.path
    if code != ROOT:  # an editable install of this checkout would still answer the imports of ragrec_django
        sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
    import django

    django.setup()
    import ragrec_django

    if Path(ragrec_django.__file__).resolve().parent.parent != code:
        raise SystemExit("ragrec_django was imported from %s, not %s" % (ragrec_django.__file__, code))
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    connection.settings_dict["TEST"]["NAME"] = args.db_name
    original_name = connection.settings_dict["NAME"]
    log("creating scratch database %s (code: %s)" % (args.db_name, code))
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=args.keep_db, serialize=False)
    report: dict = {"label": args.label, "code": str(code), "args": vars(args), "loadavg_start": os.getloadavg()}
    try:
        ragrec = {
            **settings.RAGREC,
            "ENCODERS": {
                "minilm": {
                    "BACKEND": "ragrec_django.ml.text.TransformerTextEncoder",
                    "OPTIONS": {"model": "sentence-transformers/all-MiniLM-L6-v2", "device": "cpu"},
                }
            },
            "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text"}},
            "AUTO_ENCODE": False,
        }
        with override_settings(RAGREC=ragrec, DEBUG=False):
            from ragrec_django.models import SearchSynonym

            if args.keep_db and loaded(args.count):
                log("reusing the catalogue encoded in the kept scratch database")
            else:
                load_catalogue(args.count)
            SearchSynonym.objects.all().delete()
            for term, word in SYNONYMS.items():
                SearchSynonym.objects.create(term=term, synonyms=word, two_way=False)
            items = mirrored_items()
            queries = build_queries(items, args.seed)
            log("%d labelled queries: %s" % (len(queries), {k: sum(q["kind"] == k for q in queries) for k in KINDS}))
            from ragrec_django.services import search as search_service

            search_service.search("warm up", k=K)  # loads the encoder and the vocabularies
            rows = measure(queries, items)
        report.update(table=summary(rows), queries=rows, loadavg_end=os.getloadavg())
    finally:
        connection.close()
        if args.keep_db:
            log("keeping scratch database %s (--keep-db)" % args.db_name)
        else:
            log("dropping scratch database %s" % args.db_name)
            connection.creation.destroy_test_db(original_name, verbosity=0)
    print_table(report["table"], args.label)
    if args.show:
        for kind in KINDS:
            worst = sorted(
                (r for r in report["queries"] if r["kind"] == kind), key=lambda r: (r["ratio"], r["ndcg_at_10"])
            )
            for row in worst[: args.show]:
                print(
                    "  %-13s %-32r %d/%d nDCG %.2f %s"
                    % (kind, row["query"], row["hits"], row["best"], row["ndcg_at_10"], row["shown"][:4])
                )
    print("load average: start %.2f, end %.2f" % (report["loadavg_start"][0], report["loadavg_end"][0]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
