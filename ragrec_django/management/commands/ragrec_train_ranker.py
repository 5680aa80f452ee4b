"""Train a learned ranker on the shop's own events, gate it against the serving ranking, promote or keep it."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from ragrec_django.models import RankerModel
from ragrec_django.services import item_candidates, ranker


class Command(BaseCommand):
    help = (
        "Train the learned 'for you' ranker (LightGBM LambdaRank over repeat, co-purchase, ALS and popular "
        "candidates) on the orders in the database. The latest --holdout-days of orders judge it against the "
        "ranking being served (the active model, else fusion) on nDCG@10; it is promoted only when it wins by "
        "--margin over at least --min-orders orders. Serve it with RAGREC['RANKER'] = {'for_you': 'learned'}. "
        "--list shows the stored versions; --promote N and --rollback switch versions; --signals refreshes the "
        "signals serving reads (item popularity, co-purchase partners, the popular list; every training does too). "
        "--recommender similar trains, lists and switches the 'similar items' ranker instead (its own versions: "
        "LambdaRank over the vector spaces', co-purchase and kNN candidates of an item, judged against the spaces' "
        "fusion; serve it with RAGREC['RANKER'] = {'similar': 'learned'})."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--recommender",
            choices=("for_you", "similar"),
            default="for_you",
            help="The ranker to train or switch (default for_you).",
        )
        parser.add_argument(
            "--label-days",
            type=float,
            default=180,
            help="Training orders: this many days before the hold-out (default 180).",
        )
        parser.add_argument(
            "--holdout-days", type=float, default=14, help="Latest days of orders kept to judge the model (default 14)."
        )
        parser.add_argument(
            "--margin", type=float, default=ranker.GATE_MARGIN, help="nDCG@10 it must win by (default %(default)s)."
        )
        parser.add_argument(
            "--min-orders",
            type=int,
            default=ranker.GATE_MIN_QUERIES,
            help="Hold-out orders the gate needs (default %(default)s).",
        )
        parser.add_argument(
            "--no-promote", action="store_true", help="Store the version as a candidate, whatever the gate says."
        )
        parser.add_argument("--force", action="store_true", help="Promote it even if the gate says no.")
        parser.add_argument("--list", action="store_true", help="List the stored versions and stop.")
        parser.add_argument("--promote", type=int, metavar="N", help="Activate version N and stop.")
        parser.add_argument(
            "--rollback", action="store_true", help="Re-activate the version active before the current one and stop."
        )
        parser.add_argument(
            "--signals",
            action="store_true",
            help="Materialise the signals the learned ranker serves from, as of now, and stop (e.g. every 15 minutes).",
        )

    def handle(self, *args, **options):
        recommender = options["recommender"]
        if options["list"]:
            return self._list(recommender)
        if options["promote"] is not None:
            version = RankerModel.objects.filter(recommender=recommender, number=options["promote"]).first()
            if version is None:
                raise CommandError("No %s ranker version %d (see --list)." % (recommender, options["promote"]))
            ranker.promote_version(version)
            self.stdout.write(self.style.SUCCESS("Activated %s." % version))
            return
        if options["signals"]:
            snapshot = ranker.refresh_signals()
            self.stdout.write(self.style.SUCCESS("Materialised %s in %.1f s." % (snapshot, snapshot.seconds)))
            return
        if options["rollback"]:
            previous = ranker.rollback_version(recommender)
            self.stdout.write(
                self.style.SUCCESS(
                    "Activated %s." % previous if previous else "No earlier version: %s serves fusion." % recommender
                )
            )
            return
        from ragrec_django.ml.ranker import NotEnoughData, RankerUnavailable

        train = item_candidates.train_similar_ranker if recommender == "similar" else ranker.train_ranker
        try:
            outcome = train(
                label_days=options["label_days"],
                holdout_days=options["holdout_days"],
                margin=options["margin"],
                min_queries=options["min_orders"],
                promote=not options["no_promote"],
                force=options["force"],
                progress=self._say,
            )
        except NotEnoughData as exc:
            raise CommandError("%s The current ranking stays." % exc) from exc
        except RankerUnavailable as exc:
            raise CommandError(str(exc)) from exc
        style = self.style.SUCCESS if outcome.promoted else self.style.WARNING
        self.stdout.write(style(outcome.message))

    def _list(self, recommender: str) -> None:
        rows = RankerModel.objects.filter(recommender=recommender).order_by("-number")
        if not rows:
            self.stdout.write("No ranker versions yet.")
        for row in rows:
            gate = row.metadata.get("gate") or {}
            self.stdout.write(
                "#%-3d %-9s %s  validation nDCG@10 %s  hold-out %s vs %s  %s"
                % (
                    row.number,
                    row.status,
                    row.content_hash[:12],
                    row.metadata.get("validation", {}).get("ndcg@10"),
                    gate.get("learned_ndcg@10", "-"),
                    gate.get("baseline_ndcg@10", "-"),
                    row.created_at.isoformat(timespec="seconds"),
                )
            )

    def _say(self, message: str) -> None:
        self.stderr.write("[ragrec_train_ranker] %s" % message)
        sys.stderr.flush()
