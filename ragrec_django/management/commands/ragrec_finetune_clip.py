"""Fit a CLIP model to the shop's own catalogue and print the encoder setting that serves it.

    manage.py ragrec_finetune_clip --out var/clip                       # LiT: frozen MiniLM text tower
    manage.py ragrec_finetune_clip --out var/clip --pretrained laion2b_s34b_b79k --model ViT-B-32
    manage.py ragrec_finetune_clip --out var/clip --switch --activate image clip-text

Pairs are read through the configured adapter: ``get_image_bytes`` and the
title (``--text title``, default) or the full ``get_text`` (``--text text``).
Reading the pairs: ``ragrec_django.services.finetune``; training and its
report: ``ragrec_django.ml.finetune``; the zero-downtime switch to the new
checkpoint: ``docs/finetune.md``.
"""

from __future__ import annotations

import json
import os
import pprint

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from ragrec_django.services.finetune import TEXT_FIELDS, finetune_from_adapter


def clip_spaces() -> list[str]:
    """Configured spaces whose encoder encodes images (the CLIP spaces), else the usual names."""
    from ragrec_django import registry

    try:
        spaces = registry.get_spaces()
        clip_aliases = {s.encoder_alias for s in spaces.values() if s.modality == "image"}
        names = [name for name, s in spaces.items() if s.encoder_alias in clip_aliases]
    except ImproperlyConfigured:
        names = []
    return names or ["image", "clip-text"]


def _modality(space: str) -> str:
    from ragrec_django import registry

    try:
        return registry.get_spaces()[space].modality
    except (ImproperlyConfigured, KeyError):
        return "image" if space == "image" else "text" if "text" in space else "image"


def switch_steps(spaces: list[str]) -> list[str]:
    """The zero-downtime switch, one command per line (see docs/finetune.md)."""
    steps = []
    for space in spaces:
        steps.append("manage.py ragrec_spaces switch %s" % space)
    for space in spaces:
        steps.append(
            "manage.py ragrec_reindex --space %s --wait     # or --sync; queries keep using the old generation" % space
        )
    for space in spaces:
        steps.append("manage.py ragrec_spaces promote %s             # atomic" % space)
    for space in spaces:
        steps.append("manage.py ragrec_spaces rollback %s            # only to go back" % space)
    return steps


class Command(BaseCommand):
    help = (
        "Fine-tune CLIP on the catalogue's (image, text) pairs with a held-out split by product; write a "
        "versioned checkpoint and a before/after report; print the RAGREC encoder OPTIONS to use."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="Directory that receives <name>-<hash>/ checkpoint folders.")
        parser.add_argument("--epochs", type=int, default=10)
        parser.add_argument("--batch-size", type=int, default=128)
        parser.add_argument(
            "--lr", type=float, default=None, help="Default 5e-4 from scratch, 1e-5 from pretrained weights."
        )
        parser.add_argument("--weight-decay", type=float, default=0.1)
        parser.add_argument("--holdout", type=float, default=0.2, help="Share of products held out for evaluation.")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--lock-text",
            choices=("auto", "minilm", "none"),
            default="auto",
            help="minilm: frozen MiniLM text tower + trained projection (LiT-style); none: train an open_clip CLIP. "
            "auto: minilm without --pretrained, none with it.",
        )
        parser.add_argument("--from-config", default=None, help='"small" or an open_clip model config JSON file.')
        parser.add_argument(
            "--pretrained", default=None, help="open_clip pretrained tag or weights file to start from."
        )
        parser.add_argument("--model", default=None, help="open_clip model name (default ViT-B-32 with --pretrained).")
        parser.add_argument("--text", dest="text_field", choices=TEXT_FIELDS, default="title", help="Text of a pair.")
        parser.add_argument("--limit", type=int, default=None, help="Only the first N items (by primary key).")
        parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
        parser.add_argument("--precision", default="auto", help="auto (bf16/fp16 autocast on CUDA), fp32, fp16, bf16.")
        parser.add_argument(
            "--patience", type=int, default=3, help="Epochs without held-out gain before stopping (0: never)."
        )
        parser.add_argument("--max-minutes", type=float, default=None, help="Stop training after this long.")
        parser.add_argument(
            "--copy-text-model", action="store_true", help="Copy MiniLM into the checkpoint (self-contained)."
        )
        parser.add_argument("--name", default=None, help="Checkpoint name before the hash.")
        parser.add_argument(
            "--activate",
            nargs="+",
            metavar="SPACE",
            default=None,
            help="Spaces that should use the new checkpoint (default: the configured CLIP spaces).",
        )
        parser.add_argument(
            "--switch",
            action="store_true",
            help="Also print the zero-downtime switch (settings are code: nothing is changed for you).",
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
        parser.add_argument("--no-plot", action="store_true", help="No report.png even when matplotlib is installed.")

    def handle(self, *args, **options):
        lock_text = options["lock_text"]  # "auto" resolves to "none" with --pretrained, else "minilm"
        from_config = options["from_config"]
        if from_config and from_config != "small" and not os.path.isfile(from_config):
            raise CommandError("--from-config must be 'small' or a JSON file; %r is neither." % from_config)
        training = {
            "epochs": options["epochs"],
            "batch_size": options["batch_size"],
            "lr": options["lr"],
            "weight_decay": options["weight_decay"],
            "holdout": options["holdout"],
            "seed": options["seed"],
            "lock_text": lock_text,
            "from_config": from_config,
            "pretrained": options["pretrained"],
            "model": options["model"],
            "device": options["device"],
            "precision": options["precision"],
            "patience": options["patience"],
            "max_seconds": options["max_minutes"] * 60 if options["max_minutes"] else None,
            "copy_text_model": options["copy_text_model"],
            "name": options["name"],
            "progress": not options["no_progress"],
            "plot": not options["no_plot"],
        }
        try:
            result = finetune_from_adapter(
                options["out"], text_field=options["text_field"], limit=options["limit"], **training
            )
        except (ValueError, TypeError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        self._print(result, options)

    def _print(self, result, options) -> None:
        from ragrec_django.ml.finetune_report import metrics_table

        report = result.report
        data = report["data"]
        self.stdout.write(
            "Trained on %d pairs (%d products), held out %d products; %d item(s) without image/text, %d bad image(s)."
            % (
                data["train_pairs"],
                data["train_products"],
                data["holdout_products"],
                report["adapter_skipped"],
                data["skipped_images"],
            )
        )
        self.stdout.write(
            "Best epoch %s of %s (%s); %s pairs/s on %s."
            % (
                report["best_epoch"],
                report["epochs_run"],
                report["stopped"],
                report["train_pairs_per_second"],
                report["device"]["device"],
            )
        )
        self.stdout.write("")
        self.stdout.write(metrics_table(report))
        self.stdout.write("")
        for warning in report.get("warnings") or ():
            self.stdout.write("Warning: %s" % warning)
            self.stdout.write("")
        self.stdout.write("Checkpoint: %s" % result.checkpoint)
        self.stdout.write("Report:     %s" % ", ".join(result.files.values()))
        if report.get("plot_note"):
            self.stdout.write("Plot:       %s" % report["plot_note"])
        spaces = options["activate"] or clip_spaces()
        self.stdout.write("")
        self.stdout.write("Encoder OPTIONS to use (RAGREC is code: set it yourself):")
        self.stdout.write("")
        self.stdout.write(
            'RAGREC["ENCODERS"]["clip"] = %s' % pprint.pformat(result.encoder, sort_dicts=False, width=100)
        )
        for space in spaces:
            modality = _modality(space)
            self.stdout.write(
                'RAGREC["SPACES"][%r] = %s' % (space, json.dumps({"ENCODER": "clip", "MODALITY": modality}))
            )
        if options["switch"]:
            self.stdout.write("")
            self.stdout.write(
                "Zero-downtime switch (docs/finetune.md), once the setting above is deployed to the encoding workers:"
            )
            for number, step in enumerate(switch_steps(spaces), 1):
                self.stdout.write("  %d. %s" % (number, step))
