"""Fit the personalised-search blend on the shop's own orders and store it (active unless --no-promote)."""

from __future__ import annotations

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from ragrec_django.services import personal_search


class Command(BaseCommand):
    help = (
        "Fit the blend that re-orders a known visitor's search results (relevance: each result's place; the "
        "visitor: the active 'for you' model's score, repeat purchases, co-purchases, category affinity) on the "
        "shop's orders. With no search log, each order's items stand for what was searched: one or two words of "
        "an item's title, answered by keyword search over the titles, the shopper's earlier events as the visitor. "
        "By default the orders the active 'for you' model did not learn from (its hold-out and newer) are used. "
        "Serve it with RAGREC['RANKER'] = {'search': 'learned'}; a missing model or blend serves plain search."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=float,
            help="Use the orders of the last N days instead of those after the 'for you' model's training window.",
        )
        parser.add_argument("--per-order", type=int, default=2, help="Simulated searches per order (default 2).")
        parser.add_argument("--max-orders", type=int, default=5000, help="Orders sampled at most (default 5000).")
        parser.add_argument(
            "--min-queries", type=int, default=50, help="Usable searches the fit needs (default %(default)s)."
        )
        parser.add_argument("--no-promote", action="store_true", help="Store the blend as a candidate only.")

    def handle(self, *args, **options):
        since = time.time() - options["days"] * 86400.0 if options["days"] is not None else None
        try:
            version = personal_search.train_blend(
                since=since,
                per_order=options["per_order"],
                max_orders=options["max_orders"],
                min_queries=options["min_queries"],
                promote=not options["no_promote"],
                progress=lambda message: sys.stderr.write(message + "\n"),
            )
        except personal_search.NotEnoughQueries as exc:
            raise CommandError(str(exc)) from exc
        weights = ", ".join("%s %+.3f" % pair for pair in version.metadata["weights"].items())
        self.stdout.write(
            "Stored %s from %d simulated searches (%s)." % (version, version.metadata.get("queries", 0), weights)
        )
