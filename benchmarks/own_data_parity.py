"""Online Retail through the generic path (``--interactions`` + ``--map``) against the ``online-retail`` preset.

    python benchmarks/own_data_parity.py [--path ../shared/datasets/online_retail] [--users 500]
                                         [--recommenders a,b,...] [--json out.json]

1. Reads the data set both ways (``runner.load_online_retail`` and ``runner.load_files`` with the column
   mapping, ``--exclude-items`` for the preset's non-product codes and ``--skip-invalid`` for its other
   filters) and compares the rows the evaluation would see: events, baskets, catalogue, product texts.
   The generic path keeps customer ids as written ("17850.0"); the preset cleans them ("17850").
2. Runs ``manage.py ragrec_evaluate`` both ways, on scratch databases, on the same seeded sample of
   shoppers, and compares every scored curve of every recommender.

The figures of both runs and the comparison go to ``--json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: The non-product codes the preset drops (``ingest.online_retail.NON_PRODUCTS`` and the vouchers), as patterns.
EXCLUDED = ["POST", "DOT", "C2", "M", "m", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK", "gift_0001*"]
MAP = ["session=CustomerID", "item=StockCode", "order=InvoiceNo", "timestamp=InvoiceDate", "quantity=Quantity"]
PRODUCT_MAP = ["id=StockCode", "title=Description", "price=median_unit_price"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", default=str(ROOT.parent / "shared" / "datasets" / "online_retail"))
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument(
        "--recommenders",
        default="for_you,bought_together,bought_together_visitor,buy_again,trending,popularity,cooc_last,cooc_all",
    )
    parser.add_argument("--out", default="/tmp/own_data_parity")
    parser.add_argument("--json", help="Write the comparison here.")
    return parser.parse_args()


def generic_args(folder: Path) -> list[str]:
    return [
        "--interactions",
        str(folder / "online_retail.csv"),
        "--products",
        str(folder / "products.csv"),
        "--map",
        *MAP,
        "--product-map",
        *PRODUCT_MAP,
        "--timezone",
        "Europe/London",
        "--exclude-items",
        *EXCLUDED,
        "--skip-invalid",
    ]


def compare_datasets(folder: Path) -> dict:
    from ragrec_django.evaluation import runner
    from ragrec_django.ingest import parse_mapping
    from ragrec_django.ingest.importer import INTERACTION_FIELDS, PRODUCT_FIELDS

    started = time.perf_counter()
    preset = runner.load_online_retail(folder)
    generic = runner.load_files(
        folder / "online_retail.csv",
        folder / "products.csv",
        mapping=parse_mapping(MAP, INTERACTION_FIELDS),
        product_mapping=parse_mapping(PRODUCT_MAP, PRODUCT_FIELDS),
        skip_invalid=True,
        time_zone="Europe/London",
        exclude_items=EXCLUDED,
    )

    def rows(dataset, clean):
        return [
            (r.line, r.event, r.item, clean(r.session), r.order_id, r.quantity, r.created_at)
            for r in dataset.interactions
        ]

    def float_id(value: str) -> str:
        return value[:-2] if value.endswith(".0") else value

    same_rows = rows(preset, str) == rows(generic, float_id)
    same_catalogue = [(p.key, p.title, p.price, p.text) for p in preset.products] == [
        (p.key, p.title, p.price, p.text) for p in generic.products
    ]
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "preset": {
            "lines": len(preset.interactions),
            "items": len(preset.products),
            "filtered": preset.info["filtered"],
        },
        "generic": {
            "lines": len(generic.interactions),
            "items": len(generic.products),
            "filtered": generic.info["filtered"],
            "invalid_rows_skipped": generic.info["invalid_rows_skipped"],
        },
        "same_events": same_rows,
        "same_catalogue": same_catalogue,
    }


def figures(report: dict) -> dict:
    return {
        variant: {
            name: {key: result[key] for key in ("recall", "ndcg", "hit_rate", "mrr", "se", "coverage", "users")}
            for name, result in body["results"].items()
        }
        for variant, body in report["variants"].items()
    }


def run(name: str, args: list[str], options) -> tuple[dict, float]:
    from django.core.management import call_command

    out = Path(options.out) / name
    started = time.perf_counter()
    call_command(
        "ragrec_evaluate",
        *args,
        "--users",
        str(options.users),
        "--recommenders",
        options.recommenders,
        "--db-name",
        "evalshop_%s" % name,
        "--out",
        str(out),
        stdout=io.StringIO(),
    )
    return json.loads((out / "report.json").read_text()), time.perf_counter() - started


def main() -> None:
    options = parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    folder = Path(options.path)
    result = {"load_average_1min_start": os.getloadavg()[0], "datasets": compare_datasets(folder)}
    print(json.dumps(result["datasets"], indent=1), flush=True)

    generic, generic_s = run("generic", generic_args(folder), options)
    preset, preset_s = run("preset", ["--dataset", "online-retail", "--path", str(folder)], options)
    result.update(
        {
            "users": options.users,
            "seconds": {"generic": round(generic_s), "preset": round(preset_s)},
            "same_figures": figures(generic) == figures(preset),
            "different": sorted(
                "%s/%s" % (variant, name)
                for variant, body in figures(preset).items()
                for name, curves in body.items()
                if figures(generic)[variant].get(name) != curves
            ),
            "at_10": {
                variant: {
                    name: {
                        "recall": curves["recall"][9],
                        "ndcg": curves["ndcg"][9],
                        "generic_recall": figures(generic)[variant][name]["recall"][9],
                        "generic_ndcg": figures(generic)[variant][name]["ndcg"][9],
                    }
                    for name, curves in body.items()
                }
                for variant, body in figures(preset).items()
            },
            "dataset_generic": {k: v for k, v in generic["dataset"].items() if k != "invalid_rows_shown"},
            "dataset_preset": preset["dataset"],
            "load_average_1min_end": os.getloadavg()[0],
        }
    )
    print(json.dumps({k: result[k] for k in ("seconds", "same_figures", "different")}, indent=1))
    if options.json:
        Path(options.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
