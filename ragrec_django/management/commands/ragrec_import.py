"""Import shopper interactions and products from CSV files (all or nothing)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from ragrec_django.ingest import (
    INTERACTION_FIELDS,
    PRESETS,
    PRODUCT_FIELDS,
    ImportRefused,
    MappingError,
    get_preset,
    import_csv,
    parse_mapping,
)

#: Row errors printed before "... and N more".
SHOWN_ERRORS = 20


class _Formatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _fields(fields: dict[str, str]) -> str:
    return "\n".join("  %-12s %s" % (name, text) for name, text in fields.items())


EPILOG = """\
interaction columns (--map FIELD=COLUMN; a column named like the field needs no mapping):
{interactions}

product columns (--product-map FIELD=COLUMN):
{products}

presets (--preset NAME; --map/--product-map entries override the preset's):
{presets}

examples:
  manage.py ragrec_import --preset online-retail --dir ../shared/datasets/online_retail
  manage.py ragrec_import --interactions orders.csv --map session=customer item=sku order=order_no \\
      timestamp=ordered_at --products catalogue.csv --product-map id=sku title=name
""".format(
    interactions=_fields(INTERACTION_FIELDS),
    products=_fields(PRODUCT_FIELDS),
    presets="\n".join("  %s: %s" % (p.name, p.description) for p in PRESETS.values()),
)


class Command(BaseCommand):
    help = (
        "Import interactions (views, carts, purchases with basket ids) and products from CSV into ragrec's "
        "tables. Every row is validated first; any bad row refuses the whole import (errors are listed with "
        "their line numbers) unless --skip-invalid drops bad rows explicitly. Products go into the item mirror."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs["formatter_class"] = _Formatter
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser):
        parser.add_argument("--interactions", help="CSV of interactions (one event per row).")
        parser.add_argument("--products", help="CSV of products (one item per row).")
        parser.add_argument(
            "--dir", help="With --preset: folder holding the preset's files (e.g. online_retail.csv, products.csv)."
        )
        parser.add_argument(
            "--preset", choices=sorted(PRESETS), help="Column mapping and filtering rules of a known data set."
        )
        parser.add_argument(
            "--map", nargs="+", action="extend", default=[], metavar="FIELD=COLUMN", help="Interaction column mapping."
        )
        parser.add_argument(
            "--product-map",
            nargs="+",
            action="extend",
            default=[],
            metavar="FIELD=COLUMN",
            help="Product column mapping.",
        )
        parser.add_argument(
            "--event", default="purchase", help="Event of rows without an event column (default purchase)."
        )
        parser.add_argument(
            "--time-format", help="strptime format of the timestamp column (default: ISO 8601 or Unix seconds)."
        )
        parser.add_argument(
            "--timezone", help="Time zone of naive timestamps (default: the preset's, else settings.TIME_ZONE)."
        )
        parser.add_argument(
            "--max-quantity",
            type=int,
            default=10_000,
            help="Largest valid quantity (default 10000, as the events API).",
        )
        parser.add_argument("--delimiter", default=",", help="CSV field delimiter (default ',').")
        parser.add_argument("--encoding", default="utf-8-sig", help="File encoding (default utf-8, BOM tolerated).")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="Leave out invalid rows (counted) instead of refusing the import.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Validate everything, write nothing.")

    def handle(self, *args, **options):
        try:
            preset = get_preset(options["preset"])
            interactions, products = options["interactions"], options["products"]
            if options["dir"]:
                if preset is None:
                    raise CommandError("--dir needs --preset (it names the files to read).")
                folder = Path(options["dir"])
                interactions = interactions or str(folder / preset.interactions_file)
                products = products or str(folder / preset.products_file)
            for path in (interactions, products):
                if path is not None and not Path(path).is_file():
                    raise CommandError("No such file: %s" % path)
            started = time.perf_counter()
            written, product_read, interaction_read = import_csv(
                interactions=interactions,
                products=products,
                mapping=parse_mapping(options["map"], INTERACTION_FIELDS),
                product_mapping=parse_mapping(options["product_map"], PRODUCT_FIELDS),
                preset=preset,
                skip_invalid=options["skip_invalid"],
                dry_run=options["dry_run"],
                default_event=options["event"],
                time_format=options["time_format"],
                time_zone=options["timezone"],
                max_quantity=options["max_quantity"],
                delimiter=options["delimiter"],
                encoding=options["encoding"],
            )
        except MappingError as exc:
            raise CommandError(str(exc)) from exc
        except ImportRefused as exc:
            for error in exc.errors[:SHOWN_ERRORS]:
                self.stderr.write(str(error))
            if exc.count > SHOWN_ERRORS:
                self.stderr.write("... and %d more invalid row(s)." % (exc.count - SHOWN_ERRORS))
            raise CommandError(
                "%d invalid row(s): nothing was imported. Fix them, or pass --skip-invalid to leave them out."
                % exc.count
            ) from exc

        for read in (product_read, interaction_read):
            if read is None:
                continue
            self.stdout.write("%s: %d row(s) read." % (read.source, read.total))
            for reason, n in read.filtered.most_common():
                self.stdout.write("  filtered out (%s): %d" % (reason, n))
        if written.skipped:
            for error in written.errors[:SHOWN_ERRORS]:
                self.stderr.write("skipped: %s" % error)
            self.stdout.write(self.style.WARNING("Skipped %d invalid row(s) (--skip-invalid)." % written.skipped))
        verb = "Would import" if written.dry_run else "Imported"
        self.stdout.write(
            self.style.SUCCESS(
                "%s %d product(s) and %d interaction(s) in %.1f s%s."
                % (
                    verb,
                    written.products,
                    written.interactions,
                    time.perf_counter() - started,
                    " (dry run: nothing written)" if written.dry_run else "",
                )
            )
        )
