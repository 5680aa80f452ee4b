"""Import shopper interactions and products from CSV files (all or nothing)."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ragrec_django.ingest import (
    PRESETS,
    DatabaseNotMigrated,
    ImportRefused,
    MappingError,
    describe_text,
    get_preset,
    import_csv,
    require_migrated,
)

from . import _csv_options as shared

EPILOG = (
    shared.COLUMNS_HELP
    + """
examples:
  manage.py ragrec_import --preset online-retail --dir ../shared/datasets/online_retail
  manage.py ragrec_import --interactions orders.csv --map session=customer item=sku order=order_no \\
      timestamp=ordered_at --products catalogue.csv --product-map id=sku title=name category=section group=style
  then: manage.py ragrec_evaluate --database-live   (evaluates what was imported, see ragrec_evaluate --help)
"""
)


class Command(BaseCommand):
    help = (
        "Import interactions (views, carts, purchases with basket ids) and products from CSV into ragrec's "
        "tables. Every row is validated first; any bad row refuses the whole import (errors are listed with "
        "their line numbers) unless --skip-invalid drops bad rows explicitly. Products go into the item mirror, "
        "with the product text (title, category, description) the text space encodes."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs["formatter_class"] = shared.Formatter
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser):
        shared.add_arguments(parser)
        parser.add_argument(
            "--dir", help="With --preset: folder holding the preset's files (e.g. online_retail.csv, products.csv)."
        )
        parser.add_argument(
            "--preset", choices=sorted(PRESETS), help="Column mapping and filtering rules of a known data set."
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
                if not folder.is_dir():
                    raise CommandError("No such folder: %s (--dir)." % folder)
                interactions = interactions or str(folder / preset.interactions_file)
                products = products or str(folder / preset.products_file)
            if interactions is None and products is None:
                raise CommandError(
                    "Give --interactions FILE, --products FILE, or both (or --preset NAME --dir FOLDER)."
                )
            if interactions is not None:
                shared.existing_file(interactions, "--interactions")
            if products is not None:
                shared.existing_file(products, "--products")
            mapping, product_mapping = shared.mappings(options)
            read_options = shared.read_options(options)
            require_migrated()
            started = time.perf_counter()
            written, product_read, interaction_read = import_csv(
                interactions=interactions,
                products=products,
                mapping=mapping,
                product_mapping=product_mapping,
                preset=preset,
                skip_invalid=options["skip_invalid"],
                dry_run=options["dry_run"],
                **read_options,
            )
        except (MappingError, DatabaseNotMigrated) as exc:
            raise CommandError(str(exc)) from exc
        except (UnicodeDecodeError, csv.Error) as exc:
            raise shared.read_error(exc, options) from exc
        except ImportRefused as exc:
            raise shared.write_refused(self, exc, nothing="imported") from exc

        for read in (product_read, interaction_read):
            if read is None:
                continue
            self.stdout.write("%s: %d row(s) read." % (read.source, read.total))
            for reason, n in read.filtered.most_common():
                self.stdout.write("  filtered out (%s): %d" % (reason, n))
        if product_read is not None and product_read.rows:
            self.stdout.write("Product text (what the text space encodes): %s" % describe_text(product_read.rows))
        if written.skipped:
            for error in written.errors[: shared.SHOWN_ERRORS]:
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
