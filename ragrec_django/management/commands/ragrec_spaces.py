"""Inspect embedding spaces and switch them between models (and dimensions) without downtime.

manage.py ragrec_spaces status
manage.py ragrec_spaces switch image      # new generation for the configured encoder
manage.py ragrec_reindex --space image    # fill it (queries still use the old one)
manage.py ragrec_spaces promote image     # atomic swap once complete
manage.py ragrec_spaces rollback image    # back to the previous generation
manage.py ragrec_spaces drop-retired image
manage.py ragrec_spaces rebuild-index image  # build the index type RAGREC SPACES[...]["INDEX"] names now
manage.py ragrec_spaces centroids [text ...]  # compute the category centroids queries are routed by, now
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from ragrec_django import registry
from ragrec_django.exceptions import SpaceMismatch, SpaceNotReady
from ragrec_django.models import SpaceGeneration
from ragrec_django.services import spaces


class Command(BaseCommand):
    help = "Show embedding-space generations; switch a space to its configured encoder; promote, roll back, drop."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="List generations of every space.")
        centroids = sub.add_parser(
            "centroids",
            help="Compute the category centroids of the spaces' active generations now (every space by default); "
            'RAGREC["HNSW"]["QUERY_CATEGORIES"] routes queries by them.',
        )
        centroids.add_argument("spaces", nargs="*")
        for action, text in [
            ("switch", "Start a new generation for the space's configured encoder (other model or dimension)."),
            ("promote", "Make the building generation active (refused until it is complete unless --force)."),
            ("rollback", "Re-activate the previously active generation."),
            ("drop-retired", "Delete retired generations, their vectors and indexes."),
            (
                "rebuild-index",
                'Give the active and building generations the index type SPACES[...]["INDEX"] names (halfvec or '
                "binary), then drop their other index.",
            ),
        ]:
            action_parser = sub.add_parser(action, help=text)
            action_parser.add_argument("space")
            if action == "promote":
                action_parser.add_argument("--force", action="store_true", help="Promote even if items are missing.")

    def handle(self, *args, action, **options):
        try:
            if action == "status":
                return self._status()
            if action == "centroids":
                names = [registry.get_space(name).name for name in options["spaces"]]
                for name, count in spaces.refresh_centroids(names or None).items():
                    self.stdout.write("%s: %d category centroids" % (name, count))
                return None
            space = registry.get_space(options["space"])
            if action == "switch":
                generation = spaces.switch(space)
                self.stdout.write(
                    "Building %s; now run `manage.py ragrec_reindex --space %s`." % (generation, space.name)
                )
            elif action == "promote":
                self._promote(space.name, options["force"])
            elif action == "rollback":
                self.stdout.write("Active: %s" % spaces.rollback(space.name))
            elif action == "drop-retired":
                for generation in spaces.drop_retired(space.name):
                    self.stdout.write("Dropped %s" % generation)
            elif action == "rebuild-index":
                rebuilt = spaces.rebuild_index(space)
                for generation in rebuilt:
                    self.stdout.write("%s: %s index built, the other dropped" % (generation, space.index))
                if not rebuilt:
                    self.stdout.write("%s: every generation already has a %s index" % (space.name, space.index))
        except (ImproperlyConfigured, SpaceMismatch, SpaceNotReady) as exc:
            raise CommandError(str(exc)) from exc

    def _promote(self, space_name: str, force: bool) -> None:
        row = spaces.coverage([space_name], max_failures=0)[0]
        if row.stale and not force:
            raise CommandError(
                "%s: %d of %d items are not encoded yet; run ragrec_reindex --space %s --stale, or --force."
                % (row.generation, row.stale, row.items, space_name)
            )
        self.stdout.write("Active: %s" % spaces.promote(space_name))

    def _status(self) -> None:
        configured = registry.get_spaces()
        for generation in SpaceGeneration.objects.order_by("space", "number"):
            count = generation.embeddings.count()
            mark = "" if generation.space in configured else "  (space no longer configured)"
            self.stdout.write("%s  vectors=%d%s" % (generation, count, mark))
        for name in configured:
            if not SpaceGeneration.objects.filter(space=name).exists():
                self.stdout.write("%s: nothing encoded yet" % name)
