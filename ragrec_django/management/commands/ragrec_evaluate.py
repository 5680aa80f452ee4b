"""Offline evaluation of the recommenders on a real data set, on a scratch database."""

from __future__ import annotations

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
    Options,
    evaluate,
    evaluate_and_roll_back,
    load_online_retail,
)

DATASETS = {"online-retail": ("../shared/datasets/online_retail", load_online_retail)}

default_out_dir = reports.default_out_dir


class Command(BaseCommand):
    help = (
        "Evaluate for you, bought together (per basket), buy again and trending against popularity and co-occurrence baselines: "
        "each shopper's last basket is held out, only earlier events are loaded (into a scratch database), item "
        "titles are encoded with the configured text encoder, and recall, nDCG, MRR, hit rate, coverage and "
        "diversity are reported for k = 1..20 (table, report.json, results.md, PNG plots)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", choices=sorted(DATASETS), default="online-retail")
        parser.add_argument("--path", help="Folder of the data set (default: %s)." % DATASETS["online-retail"][0])
        parser.add_argument(
            "--users", type=int, help="Evaluate a random sample of this many eligible shoppers (default: all)."
        )
        parser.add_argument("--seed", type=int, default=0, help="Seed of the sample (default 0).")
        parser.add_argument("--k", type=int, default=20, help="Largest cut-off k (default 20).")
        parser.add_argument("--table-k", type=int, default=10, help="Cut-off shown in the table (default 10).")
        parser.add_argument(
            "--recommenders",
            help="Comma-separated names, from: %s (default: %s; the for_you_* ablations and for_you_learned, which trains a LightGBM ranker inside the run, run only when named)."
            % (", ".join(RECOMMENDERS), ", ".join(DEFAULT_RECOMMENDERS)),
        )
        parser.add_argument(
            "--out", help="Folder for report.json, results.md and plots (default: %s)." % default_out_dir()
        )
        parser.add_argument(
            "--db-name", default="ragrec_eval", help="Name of the scratch database (default ragrec_eval)."
        )
        parser.add_argument("--keep-db", action="store_true", help="Leave the scratch database in place afterwards.")
        parser.add_argument(
            "--database-live",
            action="store_true",
            help="Run in the configured database instead of a scratch one (its ragrec tables must be empty; "
            "everything is rolled back at the end).",
        )

    def handle(self, *args, **options):
        name = options["dataset"]
        path = Path(options["path"] or DATASETS[name][0])
        if not path.is_dir():
            raise CommandError("No data set folder %s (give --path)." % path)
        if options["k"] < 1 or not 1 <= options["table_k"] <= options["k"]:
            raise CommandError("--k must be >= 1 and --table-k between 1 and --k.")
        if options["users"] is not None and options["users"] < 1:
            raise CommandError("--users must be >= 1.")
        chosen = DEFAULT_RECOMMENDERS
        if options["recommenders"]:
            chosen = tuple(r.strip() for r in options["recommenders"].split(",") if r.strip())
            unknown = sorted(set(chosen) - set(RECOMMENDERS))
            if unknown:
                raise CommandError(
                    "Unknown recommender(s) %s (known: %s)." % (", ".join(unknown), ", ".join(RECOMMENDERS))
                )
        run_options = Options(k_max=options["k"], users=options["users"], seed=options["seed"], recommenders=chosen)
        out = Path(options["out"]) if options["out"] else default_out_dir()

        started = time.perf_counter()
        self._say("reading %s from %s" % (name, path))
        dataset = DATASETS[name][1](path)
        self._say(
            "%d lines, %d products after filtering (%.1f s)"
            % (len(dataset.interactions), len(dataset.products), time.perf_counter() - started)
        )
        try:
            if options["database_live"]:
                report = evaluate_and_roll_back(dataset, run_options, progress=self._say)
            else:
                report = self._on_scratch_database(options["db_name"], options["keep_db"], dataset, run_options)
        except DatabaseNotEmpty as exc:
            raise CommandError(str(exc)) from exc

        self.stdout.write("\n" + reports.text_table(report, k=options["table_k"]))
        written = reports.write(report, out, k=options["table_k"])
        for kind, file in written.items():
            self.stdout.write("%-12s %s" % (kind, file))
        if not any(kind.startswith("metrics_") for kind in written):
            self.stdout.write(self.style.WARNING("matplotlib is not installed: no plots (pip install matplotlib)."))
        self.stdout.write(self.style.SUCCESS("Done in %.0f s." % (time.perf_counter() - started)))

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
