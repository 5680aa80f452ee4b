"""manage.py prepare_demo: the demo's CLIP model, and work for its merchandiser and reviewers.

With ``--clip-only`` (run before the catalogue is encoded, so the encoding
worker and the web server start with the model in their settings):

* the CLIP model of the image space (search by photo, text->image search).
  Without pretrained CLIP weights (none can be downloaded offline), a LiT model
  is trained on the demo catalogue's (picture, title) pairs through
  ``ragrec_finetune_clip``'s code path: the bundled MiniLM frozen as the text
  tower, a small image tower trained, within ``--clip-minutes`` (default 3).
  The checkpoint is kept in ``SHOP_DEMO_CLIP_DIR`` (var/models/demo-lit) and
  the settings use it from then on; later runs reuse it. If the database holds
  image vectors of another model, a new generation of the image space is
  started (``ragrec_spaces switch``): the encoding fills it and the next
  ``prepare_demo`` promotes it.

Without it, once the catalogue is encoded:

* the image space's new generation is promoted if one was built and is complete;
* complement proposals ("goes with" pairs from content) for Recommendations >
  Complement pairs, through ``ragrec_complements``;
* description drafts for a sample of one category, so the review queue
  (Ragrec > Description drafts) has work: a generation job on the Celery
  worker, or in this process with ``--in-process``.

Each part is skipped when it was done before, so a second run costs nothing.
"""

from __future__ import annotations

import io
import logging
import os
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ragrec_django import registry
from ragrec_django.conf import ragrec_settings
from ragrec_django.models import ComplementPair, DescriptionDraft, GenerationJob, Item
from ragrec_django.services import spaces
from shop_demo import democlip

#: Default time budget of the demo's CLIP training, in minutes (first run only).
CLIP_MINUTES = 3.0
IMAGE_SPACE = "image"


class Command(BaseCommand):
    requires_system_checks = []
    help = __doc__.strip().splitlines()[0].split(": ", 1)[1]

    def add_arguments(self, parser):
        parser.add_argument("--category", default="Mugs", help="Category of the description sample (default Mugs).")
        parser.add_argument("--drafts", type=int, default=50, help="Items in the description sample (default 50).")
        parser.add_argument("--in-process", action="store_true", help="Generate the drafts here, not on a worker.")
        parser.add_argument("--no-complements", action="store_true")
        parser.add_argument(
            "--clip-only",
            action="store_true",
            help="Only make sure the image space has a CLIP model: train the demo's LiT checkpoint if none is cached.",
        )
        parser.add_argument(
            "--clip-minutes",
            type=float,
            default=CLIP_MINUTES,
            help="Time budget of that training in minutes (default %(default)s; on a GPU it ends sooner).",
        )
        parser.add_argument(
            "--skip-clip-training",
            action="store_true",
            help="Never train: use a cached checkpoint if there is one, else leave image search off.",
        )

    def handle(
        self,
        *args,
        category,
        drafts,
        in_process,
        no_complements,
        clip_only,
        clip_minutes,
        skip_clip_training,
        verbosity=1,
        **options,
    ):
        self.verbosity = verbosity
        if clip_only:
            self.clip(clip_minutes, skip_clip_training)
            return
        self.promote_image_space()
        if not no_complements:
            self.complements()
        if drafts > 0:
            self.descriptions(category, drafts, in_process)

    def log(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)

    # --- the image space's CLIP model --------------------------------------------------

    def clip(self, minutes: float, skip_training: bool) -> None:
        if not minutes > 0:
            raise CommandError("--clip-minutes must be positive.")
        choice = democlip.choose_clip(os.environ, settings.SHOP_DEMO_CLIP_DIR)
        if choice.source in ("pretrained", "checkpoint", "off"):
            self.log("CLIP: %s; nothing to train." % choice.description)
            return
        folder = democlip.demo_checkpoint(settings.SHOP_DEMO_CLIP_DIR)
        if folder is not None:
            record = democlip.read_record(settings.SHOP_DEMO_CLIP_DIR) or {}
            self.log("CLIP: reusing the demo checkpoint %s (trained before%s)." % (folder, _figures(record)))
        elif skip_training:
            self.log(
                "CLIP: no pretrained CLIP weights are configured (RAGREC_CLIP_PRETRAINED unset; they cannot be "
                "downloaded offline) and training is skipped, so image and photo search are off rather than "
                "serving noise."
            )
            return
        else:
            folder = self.train_clip(minutes)
        self.align_image_space(str(folder))

    def train_clip(self, minutes: float):
        from ragrec_django.services.finetune import finetune_from_adapter

        directory = settings.SHOP_DEMO_CLIP_DIR
        self.log(
            "CLIP: no pretrained CLIP weights (none can be downloaded offline). Training the image model on the "
            "demo catalogue instead (LiT: the bundled MiniLM frozen as text tower, a small image tower learnt from "
            "the pictures and their titles), for at most %s, once: the checkpoint is kept in %s."
            % (_duration(minutes * 60), directory)
        )
        started = time.monotonic()
        options = {**settings.SHOP_DEMO_CLIP_TRAINING, "max_seconds": minutes * 60, "progress": False}
        trainer_log = logging.getLogger("ragrec_django.ml.finetune")
        level = trainer_log.level
        trainer_log.setLevel(logging.WARNING)  # its per-epoch lines would repeat the progress lines below
        try:
            result = finetune_from_adapter(
                str(directory), text_field="title", on_progress=self.training_progress, **options
            )
        except (ValueError, TypeError) as exc:
            raise CommandError("CLIP training failed: %s" % exc) from exc
        finally:
            trainer_log.setLevel(level)
        after = result.report["after"]["text_to_image"]
        before = result.report["before"]["text_to_image"]
        details = {
            "products": result.report["data"]["products"],
            "holdout_products": result.report["data"]["holdout_products"],
            "minutes": minutes,
            "epochs_run": result.report["epochs_run"],
            "best_epoch": result.report["best_epoch"],
            "text_to_image_before": {k: round(v, 4) for k, v in before.items()},
            "text_to_image_after": {k: round(v, 4) for k, v in after.items()},
            "seconds": round(time.monotonic() - started, 1),
        }
        democlip.record_demo_checkpoint(directory, result.checkpoint, **details)
        self.log(
            "CLIP: trained in %s (%d epochs) on %d products; checkpoint %s%s."
            % (
                _duration(details["seconds"]),
                details["epochs_run"],
                details["products"],
                result.checkpoint,
                _figures(details),
            )
        )
        return result.checkpoint

    def training_progress(self, event: dict) -> None:
        holdout = event["holdout"] or {}
        figures = "held-out text->image R@1 %.2f, R@5 %.2f, MRR %.2f" % (
            holdout.get("t2i_r@1", 0),
            holdout.get("t2i_r@5", 0),
            holdout.get("t2i_mrr", 0),
        )
        if event["event"] == "start":
            budget = event["budget_seconds"]
            self.log(
                "  training starts (untrained model: %s)%s"
                % (figures, ", ETA %s" % _duration(budget) if budget else "")
            )
            return
        eta = event["eta_seconds"]
        self.log(
            "  epoch %d: loss %.3f, %s; %s elapsed%s"
            % (
                event["epoch"],
                event["train_loss"],
                figures,
                _duration(event["elapsed_seconds"]),
                ", ETA %s" % _duration(eta) if eta is not None else "",
            )
        )

    def align_image_space(self, checkpoint: str) -> None:
        """If the image space holds vectors of another model, start its switch to ``checkpoint``."""
        from ragrec_django.ml.locked_clip import LockedTextClipEncoder

        active = spaces.active_generation(IMAGE_SPACE)
        encoder = LockedTextClipEncoder(checkpoint=checkpoint)
        if active is None or (active.encoder_version == encoder.version and active.dimension == encoder.dimension):
            return
        space = registry.SpaceConfig(name=IMAGE_SPACE, encoder_alias="clip", modality="image")
        spaces.switch(space, encoder=encoder)
        self.log(
            "CLIP: the image space holds vectors of another model (%s): a new generation for this checkpoint "
            "is encoded next and promoted once complete; searches use the old one until then." % active.encoder_version
        )

    def promote_image_space(self) -> None:
        """Promote the image space's new generation (started by ``--clip-only``) once it is complete."""
        if IMAGE_SPACE not in registry.get_spaces():
            return
        building = spaces.building_generation(IMAGE_SPACE)
        if building is None or building.encoder_version != registry.get_space(IMAGE_SPACE).encoder.version:
            return
        out = io.StringIO()
        try:
            call_command("ragrec_spaces", "promote", IMAGE_SPACE, stdout=out)
        except CommandError as exc:
            self.log(
                "CLIP: the image space's new generation is not complete yet (%s); run prepare_demo again later." % exc
            )
            return
        self.log("CLIP: the image space now uses the demo checkpoint (%s)." % out.getvalue().strip())

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
            Item.objects.filter(is_eligible=True, category=category)
            .order_by("id")
            .values_list("key", flat=True)[:count]
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
            self.log(
                "Descriptions: %d item(s) of %s queued on the worker; drafts appear in the review queue."
                % (len(keys), category)
            )


def _duration(seconds: float | None) -> str:
    seconds = max(0, int(round(seconds or 0)))
    return "%dm%02ds" % divmod(seconds, 60) if seconds >= 60 else "%ds" % seconds


def _figures(record: dict) -> str:
    after = record.get("text_to_image_after")
    if not after:
        return ""
    return "; held-out text->image recall@10 %.2f, MRR %.2f on %s products" % (
        after.get("recall@10", 0),
        after.get("mrr", 0),
        record.get("holdout_products", "?"),
    )
