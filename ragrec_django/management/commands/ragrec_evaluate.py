"""Offline evaluation of the recommenders on a shop's own data or a known data set, on a scratch database."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from ragrec_django.evaluation import report as reports
from ragrec_django.evaluation.runner import (
    DEFAULT_RECOMMENDERS,
    RECOMMENDERS,
    DatabaseNotEmpty,
    EvaluationError,
    Options,
    as_sessions,
    evaluate,
    evaluate_and_roll_back,
    load_database,
    load_files,
)
from ragrec_django.exceptions import SpaceMismatch
from ragrec_django.ingest import DatabaseNotMigrated, ImportRefused, MappingError, get_preset, require_migrated

from . import _csv_options as shared

#: Known data sets: a preset of the importer and the default folder of its files.
DATASETS = {"online-retail": "../shared/datasets/online_retail"}
DEFAULT_DATASET = "online-retail"
DEFAULT_DB_NAME = "ragrec_eval"

default_out_dir = reports.default_out_dir

EPILOG = (
    shared.COLUMNS_HELP
    + """
where the data comes from (one of):
  --interactions FILE --products FILE [--map ... --product-map ...]   a shop's own export, read and
        validated exactly as ragrec_import reads it (--dataset NAME adds that preset's mapping and filters)
  --dataset NAME [--path FOLDER]   a known data set's files (default: online-retail in %s)
  --imported                       the events and items already in the configured database (what
        ragrec_import wrote), copied to the scratch database
  --database-live                  with no data set: the same, evaluated in place in the configured
        database (its events are set aside and the training part written back; all rolled back at the
        end, the rows locked meanwhile). With a data set: the data set is loaded into the configured
        database, whose ragrec tables must be empty, and rolled back.

examples:
  manage.py ragrec_evaluate --users 500                      # Online Retail, a seeded sample of 500 shoppers
  manage.py ragrec_evaluate --interactions orders.csv --products catalogue.csv \\
      --map session=customer item=sku order=order_no timestamp=ordered_at \\
      --product-map id=sku title=name category=section group=style --recommenders for_you,for_you_learned,buy_again,cooc_last
  manage.py ragrec_import ... && manage.py ragrec_evaluate --database-live
"""
    % DATASETS[DEFAULT_DATASET]
)


class Command(BaseCommand):
    help = (
        "Evaluate for you (fusion, and learned: a LightGBM ranker trained inside the run on the training part), "
        "bought together (per basket), buy again and trending against popularity and co-occurrence baselines, "
        "on a shop's own CSV export, on the data already imported, or on a known data set: each shopper's last "
        "basket is held out, only earlier events are loaded (into a scratch database), the product texts "
        "(title + category + description) are encoded with the configured text encoder, and recall, nDCG, MRR, "
        "hit rate, coverage and diversity are reported for k = 1..20 (table, report.json, results.md, PNG plots)."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs["formatter_class"] = shared.Formatter
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.epilog = EPILOG
        return parser

    def add_arguments(self, parser):
        shared.add_arguments(parser)
        parser.add_argument(
            "--dataset",
            choices=sorted(DATASETS),
            help="A known data set (its preset's mapping and filters; default %s when no data is named)."
            % DEFAULT_DATASET,
        )
        parser.add_argument("--path", help="Folder of the --dataset's files (default: %s)." % DATASETS[DEFAULT_DATASET])
        parser.add_argument(
            "--imported",
            action="store_true",
            help="Evaluate the events and items already in the configured database, on a scratch copy.",
        )
        parser.add_argument(
            "--users", type=int, help="Evaluate a random sample of this many eligible shoppers (default: all)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the sample (default 0).")
        parser.add_argument("--k", type=int, default=20, help="Largest cut-off k (default 20).")
        parser.add_argument("--table-k", type=int, default=10, help="Cut-off shown in the table (default 10).")
        parser.add_argument(
            "--recommenders",
            help="Comma-separated names, from: %s (default: %s; the for_you_* ablations and for_you_learned, which "
            "trains a LightGBM ranker inside the run on the training part only, run only when named)."
            % (", ".join(RECOMMENDERS), ", ".join(DEFAULT_RECOMMENDERS)),
        )
        parser.add_argument(
            "--out", help="Folder for report.json, results.md and plots (default: %s)." % default_out_dir()
        )
        parser.add_argument(
            "--db-name",
            default=DEFAULT_DB_NAME,
            help="Name of the scratch database (default %s; dropped and made again)." % DEFAULT_DB_NAME,
        )
        parser.add_argument("--keep-db", action="store_true", help="Leave the scratch database in place afterwards.")
        parser.add_argument(
            "--database-live",
            action="store_true",
            help="Run in the configured database instead of a scratch one, everything rolled back at the end: "
            "without a data set, on the data it holds (what ragrec_import wrote); with one, its ragrec tables "
            "must be empty.",
        )

    def handle(self, *args, **options):
        source = self._source(options)
        run_options = self._run_options(options)
        out = self._out_dir(options)
        live = options["database_live"]
        started = time.perf_counter()
        try:
            if source == "database" or live:
                require_migrated()
            if source == "database":
                self._say("reading the events and items of database %r" % connection.settings_dict["NAME"])
                dataset = load_database()
                if not dataset.interactions:
                    raise CommandError(
                        "The database %r holds no events to evaluate: import them first (manage.py ragrec_import), "
                        "or name a data set (--interactions and --products, or --dataset)."
                        % connection.settings_dict["NAME"]
                    )
                if not live:
                    dataset = as_sessions(dataset)  # the scratch database has no users
            else:
                self._say("reading %s" % ", ".join(str(path) for path in source))
                dataset = load_files(*source, **self._file_options(options))
        except (MappingError, DatabaseNotMigrated) as exc:
            raise CommandError(str(exc)) from exc
        except (UnicodeDecodeError, csv.Error) as exc:
            raise shared.read_error(exc, options) from exc
        except ImportRefused as exc:
            raise shared.write_refused(self, exc, nothing="evaluated") from exc
        self._describe(dataset)

        try:
            if live:
                report = evaluate_and_roll_back(dataset, run_options, progress=self._say, in_place=source == "database")
            else:
                report = self._on_scratch_database(options["db_name"], options["keep_db"], dataset, run_options)
        except (DatabaseNotEmpty, EvaluationError, SpaceMismatch) as exc:
            raise CommandError(str(exc)) from exc

        self.stdout.write("\n" + reports.text_table(report, k=options["table_k"]))
        written = reports.write(report, out, k=options["table_k"])
        for kind, file in written.items():
            self.stdout.write("%-12s %s" % (kind, file))
        if not any(kind.startswith("metrics_") for kind in written):
            self.stdout.write(self.style.WARNING("matplotlib is not installed: no plots (pip install matplotlib)."))
        self.stdout.write(self.style.SUCCESS("Done in %.0f s." % (time.perf_counter() - started)))

    # ---------------------------------------------------------------- options

    def _source(self, options) -> str | tuple[Path, Path]:
        """ "database", or the (interactions, products) files; ``CommandError`` for any contradiction."""
        files = [flag for flag in ("--interactions", "--products") if options[flag[2:]]]
        known = [flag for flag in ("--dataset", "--path") if options[flag[2:]]]
        csv_given = shared.given(options)
        if options["imported"] and options["database_live"]:
            raise CommandError(
                "--imported evaluates the configured database's data on a scratch copy, --database-live in place: "
                "give one of them."
            )
        if options["imported"] or (options["database_live"] and not files and not known):
            if csv_given or known:
                flag = "--imported" if options["imported"] else "--database-live without a data set"
                raise CommandError(
                    "%s evaluates the events already in the database; %s are for reading a data set. Give one or "
                    "the other." % (flag, ", ".join(csv_given + known))
                )
            return "database"
        if options["products"] and not options["interactions"]:
            raise CommandError("--products needs --interactions (the events to evaluate).")
        if options["interactions"]:
            if not options["products"]:
                raise CommandError(
                    "--interactions needs --products: the evaluation encodes each product's text "
                    "(--product-map id=COLUMN title=COLUMN at least)."
                )
            if options["path"]:
                raise CommandError(
                    "--path is the folder of a --dataset's files; with --interactions and --products give no --path."
                )
            return (
                shared.existing_file(options["interactions"], "--interactions"),
                shared.existing_file(options["products"], "--products"),
            )
        name = options["dataset"] or DEFAULT_DATASET
        preset = get_preset(name)
        folder = Path(options["path"] or DATASETS[name])
        if folder.is_file():
            raise CommandError(
                "--path %s is a file: give the folder holding %s and %s, or your own files with --interactions "
                "and --products." % (folder, preset.interactions_file, preset.products_file)
            )
        if not folder.is_dir():
            raise CommandError("No such folder: %s (the %s data set; give --path FOLDER)." % (folder, name))
        what = "the %s data set's %s"
        return (
            shared.existing_file(folder / preset.interactions_file, what % (name, "interactions")),
            shared.existing_file(folder / preset.products_file, what % (name, "products")),
        )

    def _file_options(self, options) -> dict:
        try:
            mapping, product_mapping = shared.mappings(options)
        except MappingError as exc:
            raise CommandError(str(exc)) from exc
        name = options["dataset"] or (None if options["interactions"] else DEFAULT_DATASET)
        return {
            "mapping": mapping,
            "product_mapping": product_mapping,
            "preset": get_preset(name),
            "skip_invalid": options["skip_invalid"],
            "name": name,
            **shared.read_options(options),
        }

    def _run_options(self, options) -> Options:
        if options["k"] < 1 or not 1 <= options["table_k"] <= options["k"]:
            raise CommandError("--k must be >= 1 and --table-k between 1 and --k.")
        if options["users"] is not None and options["users"] < 1:
            raise CommandError("--users must be >= 1.")
        chosen = DEFAULT_RECOMMENDERS
        if options["recommenders"] is not None:
            chosen = tuple(dict.fromkeys(r.strip() for r in options["recommenders"].split(",") if r.strip()))
            if not chosen:
                raise CommandError("--recommenders names none (known: %s)." % ", ".join(RECOMMENDERS))
            unknown = sorted(set(chosen) - set(RECOMMENDERS))
            if unknown:
                raise CommandError(
                    "Unknown recommender(s) %s (known: %s)." % (", ".join(unknown), ", ".join(RECOMMENDERS))
                )
        if options["database_live"]:
            scratch = [
                flag
                for flag, on in (
                    ("--keep-db", options["keep_db"]),
                    ("--db-name", options["db_name"] != DEFAULT_DB_NAME),
                )
                if on
            ]
            if scratch:
                raise CommandError("%s: there is no scratch database with --database-live." % ", ".join(scratch))
        elif options["db_name"] == connection.settings_dict["NAME"]:
            raise CommandError(
                "--db-name %s is the configured database: the scratch database is dropped and made again, so it "
                "must have another name." % options["db_name"]
            )
        return Options(k_max=options["k"], users=options["users"], seed=options["seed"], recommenders=chosen)

    def _out_dir(self, options) -> Path:
        out = Path(options["out"]) if options["out"] else default_out_dir()
        if out.exists() and not out.is_dir():
            raise CommandError("--out %s is a file; give a folder for the report." % out)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError("Cannot make the report folder %s: %s" % (out, exc)) from exc
        return out

    # ---------------------------------------------------------------- running

    def _describe(self, dataset) -> None:
        info = dataset.info
        self._say(
            "%s: %d event(s) read, %d kept; %d product(s) occur in them"
            % (
                dataset.name,
                info.get("rows_read", len(dataset.interactions)),
                len(dataset.interactions),
                len(dataset.products),
            )
        )
        for reason, n in sorted(info.get("filtered", {}).items(), key=lambda pair: -pair[1]):
            self._say("  filtered out (%s): %d" % (reason, n))
        if info.get("invalid_rows_skipped"):
            for error in info.get("invalid_rows_shown", []):
                self.stderr.write("skipped: %s" % error)
            self._say("  skipped %d invalid row(s) (--skip-invalid)" % info["invalid_rows_skipped"])

    def _on_scratch_database(self, db_name, keep, dataset, run_options):
        settings_dict = connection.settings_dict
        live_name = settings_dict["NAME"]
        settings_dict.setdefault("TEST", {})["NAME"] = db_name
        self._say("creating scratch database %s" % db_name)
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False, keepdb=False)
        try:
            return evaluate(dataset, run_options, progress=self._say)
        finally:
            if keep:
                self._say("kept scratch database %s" % db_name)
            else:
                connection.creation.destroy_test_db(live_name, verbosity=0)

    def _say(self, message: str) -> None:
        self.stderr.write("[ragrec_evaluate] %s" % message)
        sys.stderr.flush()
