"""Which CLIP model serves the demo's image space, and where the demo keeps the one it trains itself.

Imported by the settings, so no Django and no torch here. In order:

1. ``RAGREC_CLIP_PRETRAINED`` (an open_clip pretrained tag or weights file, with
   ``RAGREC_CLIP_MODEL`` and ``RAGREC_CLIP_CONFIG``): ``OpenClipEncoder``, spaces
   "image" and "clip-text" (production behaviour, unchanged);
2. ``RAGREC_CLIP_CHECKPOINT=<folder>``: a checkpoint folder written by
   ``ragrec_finetune_clip`` (a LiT one is served by ``LockedTextClipEncoder``, an
   open_clip one by ``OpenClipEncoder``); ``RAGREC_CLIP_CHECKPOINT=off`` turns
   CLIP off, even with a trained demo checkpoint present;
3. otherwise the demo checkpoint, if one was trained (``prepare_demo
   --clip-only``, run by ``./dev demo``): the folder named by
   ``<VAR_DIR>/models/demo-lit/current.json``;
4. else no CLIP: image search and search by photo are off rather than serving noise.

A LiT checkpoint gets the "image" space only: its text side is a linear map of
the MiniLM the "text" space already stores, so a "clip-text" space would hold
nothing new.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

POINTER = "current.json"
OFF_VALUES = frozenset({"0", "off", "none", "no", "false"})
LOCKED_BACKEND = "ragrec_django.ml.locked_clip.LockedTextClipEncoder"
MANIFEST = "ragrec_clip.json"


@dataclass(frozen=True)
class ClipChoice:
    """The CLIP encoder entry and spaces the settings use (``encoder`` None: no CLIP)."""

    source: str  # "pretrained", "checkpoint", "demo-checkpoint", "off" or "none"
    description: str
    encoder: dict | None = None
    spaces: dict = field(default_factory=dict)
    checkpoint: str | None = None


class ClipSettingError(ValueError):
    """RAGREC_CLIP_CHECKPOINT names something that is not a checkpoint folder."""


def demo_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The demo checkpoint folder recorded in ``directory``/current.json, if it is still there and complete."""
    record = read_record(directory)
    if record is None:
        return None
    folder = Path(directory) / str(record.get("checkpoint", ""))
    if not record.get("checkpoint") or not (folder / MANIFEST).is_file():
        return None
    return folder


def read_record(directory: str | os.PathLike) -> dict | None:
    """The content of ``current.json`` (checkpoint folder name, training figures), or None."""
    try:
        with open(Path(directory) / POINTER, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_demo_checkpoint(directory: str | os.PathLike, checkpoint: str | os.PathLike, **details) -> Path:
    """Make ``checkpoint`` (a folder inside ``directory``) the demo's checkpoint; written atomically."""
    directory = Path(directory)
    checkpoint = Path(checkpoint)
    if checkpoint.parent.resolve() != directory.resolve():
        raise ValueError("The demo checkpoint %s must be a folder of %s." % (checkpoint, directory))
    record = {"checkpoint": checkpoint.name, **details}
    handle, staging = tempfile.mkstemp(prefix=".current-", suffix=".json", dir=directory)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(record, out, indent=2, sort_keys=True)
        out.write("\n")
    os.chmod(staging, 0o644)
    os.replace(staging, directory / POINTER)
    return directory / POINTER


def choose_clip(environ: Mapping[str, str], demo_dir: str | os.PathLike) -> ClipChoice:
    """The CLIP model of the demo's settings, from the environment and the demo checkpoint folder."""
    pretrained = environ.get("RAGREC_CLIP_PRETRAINED")
    if pretrained:
        model = environ.get("RAGREC_CLIP_MODEL", "ViT-B-32")
        encoder = {
            "BACKEND": "ragrec_django.ml.clip.OpenClipEncoder",
            "OPTIONS": {
                "model": model,
                "pretrained": pretrained,
                "config": environ.get("RAGREC_CLIP_CONFIG") or None,
                "device": "auto",
            },
        }
        return ClipChoice(
            "pretrained",
            "open_clip %s, weights %s (RAGREC_CLIP_PRETRAINED)" % (model, pretrained),
            encoder,
            _spaces(with_clip_text=True),
        )
    named = (environ.get("RAGREC_CLIP_CHECKPOINT") or "").strip()
    if named.lower() in OFF_VALUES:
        return ClipChoice("off", "CLIP is turned off (RAGREC_CLIP_CHECKPOINT=%s)" % named)
    if named:
        return _from_checkpoint("checkpoint", named, "RAGREC_CLIP_CHECKPOINT")
    folder = demo_checkpoint(demo_dir)
    if folder is not None:
        try:
            return _from_checkpoint("demo-checkpoint", str(folder), "trained on the demo catalogue")
        except ClipSettingError:
            pass  # a damaged demo checkpoint: no CLIP; prepare_demo --clip-only trains a new one
    return ClipChoice(
        "none", "no CLIP weights (RAGREC_CLIP_PRETRAINED, RAGREC_CLIP_CHECKPOINT unset; no demo checkpoint)"
    )


def _from_checkpoint(source: str, folder: str, origin: str) -> ClipChoice:
    from ragrec_django.ml.base import EncoderError
    from ragrec_django.ml.locked_clip import encoder_setting

    try:
        encoder = encoder_setting(folder)
    except EncoderError as exc:
        raise ClipSettingError(
            "%s=%s: %s" % ("RAGREC_CLIP_CHECKPOINT" if source == "checkpoint" else "demo checkpoint", folder, exc)
        ) from exc
    locked = encoder["BACKEND"] == LOCKED_BACKEND
    kind = "LiT checkpoint (frozen MiniLM text tower)" if locked else "open_clip checkpoint"
    return ClipChoice(
        source,
        "%s %s (%s)" % (kind, os.path.abspath(folder), origin),
        encoder,
        _spaces(with_clip_text=not locked),
        checkpoint=os.path.abspath(folder),
    )


def _spaces(with_clip_text: bool) -> dict:
    spaces = {"image": {"ENCODER": "clip", "MODALITY": "image"}}
    if with_clip_text:
        spaces["clip-text"] = {"ENCODER": "clip", "MODALITY": "text"}
    return spaces
