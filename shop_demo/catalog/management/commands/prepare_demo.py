"""manage.py prepare_demo: work for the demo's merchandiser and reviewers, once the catalogue is encoded.

* complement proposals ("goes with" pairs from content) for Recommendations >
  Complement pairs, through ``ragrec_complements``;
* description drafts for a sample of one category, so the review queue
  (Ragrec > Description drafts) has work: a generation job on the Celery
  worker, or in this process with ``--in-process``.

Each part is skipped when it was done before, so a second run costs nothing.
"""

from __future__ import annotations

import io
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from ragrec_django.conf import ragrec_settings
from ragrec_django.models import ComplementPair, DescriptionDraft, GenerationJob, Item


class Command(BaseCommand):
    requires_system_checks = []
    help = __doc__.strip().splitlines()[0].split(": ", 1)[1]

    def add_arguments(self, parser):
        parser.add_argument("--category", default="Mugs", help="Category of the description sample (default Mugs).")
        parser.add_argument("--drafts", type=int, default=50, help="Items in the description sample (default 50).")
        parser.add_argument("--in-process", action="store_true", help="Generate the drafts here, not on a worker.")
        parser.add_argument("--no-complements", action="store_true")

    def handle(self, *args, category, drafts, in_process, no_complements, verbosity=1, **options):
        self.verbosity = verbosity
        if not no_complements:
            self.complements()
        if drafts > 0:
            self.descriptions(category, drafts, in_process)

    def log(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)

    def complements(self) -> None:
        pending = ComplementPair.objects.filter(status=ComplementPair.Status.PROPOSED).count()
        if ComplementPair.objects.exists():
            self.log("Complements: proposed before (%d await review)." % pending)
            return
        started = time.monotonic()
        out = io.StringIO()
        call_command("ragrec_complements", stdout=out)
        self.log("Complements: %s (%.1fs)" % (out.getvalue().strip(), time.monotonic() - started))

    def descriptions(self, category: str, count: int, in_process: bool) -> None:
        if GenerationJob.objects.exists() or DescriptionDraft.objects.exists():
            pending = DescriptionDraft.objects.filter(status=DescriptionDraft.Status.PENDING).count()
            self.log("Descriptions: generated before (%d draft(s) await review)." % pending)
            return
        keys = list(
            Item.objects.filter(is_eligible=True, category=category).order_by("id").values_list("key", flat=True)[:count]
        )
        if not keys:
            self.log("Descriptions: no encoded items in category %r; no drafts generated." % category)
            return
        with transaction.atomic():
            job = GenerationJob.objects.create(
                scope=category, generator=ragrec_settings.DESCRIPTION_GENERATOR, total=len(keys)
            )
        if in_process:
            from ragrec_django.tasks import generate_descriptions_task

            started = time.monotonic()
            result = generate_descriptions_task(job.pk, keys)
            self.log(
                "Descriptions: %d draft(s) of %s generated for review (%d failed, %.1fs)."
                % (result["done"], category, result["failed"], time.monotonic() - started)
            )
        else:
            from ragrec_django.tasks import enqueue_generation

            enqueue_generation(job, keys)  # autocommit: queued at once
            self.log("Descriptions: %d item(s) of %s queued on the worker; drafts appear in the review queue."
                     % (len(keys), category))
