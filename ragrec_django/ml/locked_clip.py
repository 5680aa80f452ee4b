"""Serve a locked-text (LiT) CLIP checkpoint: read checkpoint folders and encode with ``LockedTextClipEncoder``.

What a web process needs to answer queries with a checkpoint written by
``ragrec_django.ml.finetune.train_clip``, without importing the training code:
the manifest reader (``read_manifest``), the ``RAGREC["ENCODERS"]`` entry that
serves a checkpoint (``encoder_setting``) and the encoder backend. Torch, PIL,
numpy and open_clip only - no Django; torch is not imported until the first encode.

A checkpoint directory holds ``ragrec_clip.json`` (the manifest; ``"format"`` is
``"ragrec.locked_text_clip"`` or ``"open_clip"``, see ``docs/finetune.md``) and the
weights file it names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import Encoder, EncoderError, text_list
from .clip import ClipImageSide
from .devices import check_device_name, check_precision_name, resolve_device
from .images import ImagePolicy, Preprocessing, check_decode_pool
from .lazy import LazyModule
from .loading import file_fingerprint, load_once
from .text import TransformerTextEncoder, resolve_text_model_source

torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")

MANIFEST = "ragrec_clip.json"
LOCKED_FORMAT = "ragrec.locked_text_clip"
OPEN_CLIP_FORMAT = "open_clip"
FORMAT_VERSION = 1
LOCKED_BACKEND = "ragrec_django.ml.locked_clip.LockedTextClipEncoder"
OPEN_CLIP_BACKEND = "ragrec_django.ml.clip.OpenClipEncoder"


def json_digest(value) -> str:
    """sha256 hex digest of a JSON-serialisable value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def read_manifest(checkpoint: str | os.PathLike) -> dict:
    """The manifest of a checkpoint directory (``ragrec_clip.json``), checked; raises ``EncoderError``."""
    path = os.path.join(os.fspath(checkpoint), MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except FileNotFoundError:
        raise EncoderError(
            "%r is not a ragrec CLIP checkpoint directory (no %s)." % (os.fspath(checkpoint), MANIFEST)
        ) from None
    except (OSError, ValueError) as exc:
        raise EncoderError("Cannot read %s: %s" % (path, exc)) from exc
    if not isinstance(manifest, dict) or manifest.get("format") not in (LOCKED_FORMAT, OPEN_CLIP_FORMAT):
        raise EncoderError('%s has no known "format" (expected %r or %r).' % (path, LOCKED_FORMAT, OPEN_CLIP_FORMAT))
    if manifest.get("format_version") != FORMAT_VERSION:
        raise EncoderError(
            "%s has format_version %r; this version reads %d." % (path, manifest.get("format_version"), FORMAT_VERSION)
        )
    required = ("embed_dim", "vision_cfg", "preprocess", "text") if manifest["format"] == LOCKED_FORMAT else ("model",)
    missing = [key for key in required + ("weights",) if key not in manifest]
    if missing:
        raise EncoderError("%s lacks %s." % (path, ", ".join(missing)))
    return manifest


def encoder_setting(checkpoint: str | os.PathLike, device: str = "auto") -> dict:
    """The ``RAGREC["ENCODERS"]`` entry ({"BACKEND", "OPTIONS"}) that serves a checkpoint directory."""
    directory = os.path.abspath(os.fspath(checkpoint))
    manifest = read_manifest(directory)
    if manifest["format"] == LOCKED_FORMAT:
        return {"BACKEND": LOCKED_BACKEND, "OPTIONS": {"checkpoint": directory, "device": device}}
    options = {"model": manifest["model"], "pretrained": os.path.join(directory, manifest["weights"])}
    if manifest.get("config"):
        options["config"] = os.path.join(directory, manifest["config"])
    options["device"] = device
    return {"BACKEND": OPEN_CLIP_BACKEND, "OPTIONS": options}


def text_model_source(checkpoint: str, manifest: dict) -> str:
    """Folder or hub id of the frozen text model of a locked-text checkpoint."""
    model = manifest["text"]["model"]
    inside = os.path.join(checkpoint, model)
    if not os.path.isabs(model) and os.path.isdir(inside):
        return inside
    return resolve_text_model_source(model)


def text_model_fingerprint(source: str) -> str | None:
    """sha256 prefix of a local text model's weights file; None for a hub id (not on disk)."""
    if not os.path.isdir(source):
        return None
    return file_fingerprint(TransformerTextEncoder._local_weights_file(source))


def load_locked_text_clip(checkpoint: str | os.PathLike, device: str | None = "cpu"):
    """Load the trainable part of a locked-text checkpoint: (``LockedTextClip`` in eval mode, manifest).

    The frozen text model is not loaded here; see ``LockedTextClipEncoder``.
    """
    from safetensors.torch import load_file

    from .finetune_model import LockedTextClip

    directory = os.fspath(checkpoint)
    manifest = read_manifest(directory)
    if manifest["format"] != LOCKED_FORMAT:
        raise EncoderError("%s is an open_clip checkpoint; load it with OpenClipEncoder." % directory)
    model = LockedTextClip(
        manifest["embed_dim"],
        manifest["vision_cfg"],
        manifest["text"]["hidden_size"],
        manifest.get("quick_gelu", False),
    )
    try:
        state = load_file(os.path.join(directory, manifest["weights"]))
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise EncoderError("Cannot load the weights of %s: %s" % (directory, exc)) from exc
    model.eval()
    if device is not None:
        model.to(device)
    return model, manifest


def preprocessing_of(manifest: dict) -> Preprocessing:
    cfg = manifest["preprocess"]
    return Preprocessing(
        size=(int(cfg["size"][0]), int(cfg["size"][1])),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"),
        resize_mode=cfg.get("resize_mode", "shortest"),
    )


@dataclass
class LoadedLockedClip:
    model: object
    device: object
    preprocessing: Preprocessing


class LockedTextClipEncoder(ClipImageSide, Encoder):
    """Encoder backend for locked-text CLIP checkpoints written by ``train_clip(lock_text="minilm")``.

    ``checkpoint`` is the checkpoint directory. Text: the frozen MiniLM (the
    same ``TransformerTextEncoder``, so one MiniLM per process serves this and
    a MiniLM text space, and a search query the text space has just encoded
    is answered from the loaded model's single-query memo) -> trained
    projection -> L2 norm. Images: the same
    defensive decode and preprocessing as ``OpenClipEncoder`` (format allow-list,
    pixel limit, EXIF, alpha on white; nvJPEG on CUDA) -> trained image tower
    -> L2 norm. Nothing loads (and torch is not imported) until the first encode.

    Loading refuses a text model whose weights differ from the ones the
    projection was trained on (``text.weights_sha256`` in the manifest).
    """

    modalities = frozenset({"text", "image"})

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 256,
        text_batch_size: int = 128,
        decode_workers: int | None = None,
        image_formats: Sequence[str] | None = None,
        max_image_pixels: int = 40_000_000,
        decode_pool: str = "threads",
    ):
        if not checkpoint:
            raise EncoderError("checkpoint must be the directory written by ragrec_finetune_clip.")
        if int(batch_size) < 1 or int(text_batch_size) < 1:
            raise EncoderError("batch_size and text_batch_size must be at least 1.")
        try:
            self.device_option = check_device_name(device)
            self.precision_option = check_precision_name(precision)
            self.image_policy = ImagePolicy.build(image_formats, max_image_pixels)
            self.decode_pool = check_decode_pool(decode_pool)
        except ValueError as exc:
            raise EncoderError(str(exc)) from exc
        self.checkpoint = os.path.abspath(os.fspath(checkpoint))
        self.manifest = read_manifest(self.checkpoint)
        if self.manifest["format"] != LOCKED_FORMAT:
            raise EncoderError(
                "%s is an open_clip checkpoint: use %s with the OPTIONS ragrec_finetune_clip printed."
                % (self.checkpoint, OPEN_CLIP_BACKEND)
            )
        self.weights_path = os.path.join(self.checkpoint, self.manifest["weights"])
        if not os.path.isfile(self.weights_path):
            raise EncoderError("Checkpoint %s has no weights file %s." % (self.checkpoint, self.manifest["weights"]))
        try:
            self.preprocessing = preprocessing_of(self.manifest)
        except (KeyError, TypeError, ValueError) as exc:
            raise EncoderError("Bad preprocess section in %s: %s" % (self.checkpoint, exc)) from exc
        self.batch_size = int(batch_size)
        self.decode_workers = decode_workers
        text = self.manifest["text"]
        self.text_encoder = TransformerTextEncoder(
            model=text_model_source(self.checkpoint, self.manifest),
            device=device,
            precision=precision,
            max_length=int(text.get("max_length", 128)),
            batch_size=int(text_batch_size),
        )
        self._version: str | None = None

    @property
    def dimension(self) -> int:
        return int(self.manifest["embed_dim"])

    @property
    def version(self) -> str:
        if self._version is None:
            # The manifest (architecture, preprocessing, text model and its weights hash) and the weights.
            self._version = "locked_text_clip:%s:sha256:%s:manifest=%s" % (
                self.manifest.get("name", "model")[:80],
                file_fingerprint(self.weights_path),
                json_digest(self.manifest)[:12],
            )
        return self._version

    def load(self) -> LoadedLockedClip:
        """Load (once per process, checkpoint version and device) the image tower and projection."""
        try:
            device = resolve_device(self.device_option)
        except ValueError as exc:
            raise EncoderError(str(exc)) from exc
        key = ("locked_text_clip", self.checkpoint, file_fingerprint(self.weights_path), str(device))
        return load_once(key, lambda: self._build(device), device.type)

    def _build(self, device) -> LoadedLockedClip:
        expected = self.manifest["text"].get("weights_sha256")
        actual = text_model_fingerprint(self.text_encoder.source)
        if expected and actual and expected != actual:
            raise EncoderError(
                "The text model %r (weights sha256 %s) is not the one this checkpoint's projection was trained on "
                "(%s); install that model or fine-tune again." % (self.text_encoder.source, actual, expected)
            )
        model, _ = load_locked_text_clip(self.checkpoint, device=device)
        return LoadedLockedClip(model=model, device=device, preprocessing=self.preprocessing)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = text_list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loaded = self.load()
        sentence = self.text_encoder.encode_texts(texts, batch_size=batch_size)
        with torch.inference_mode():
            features = torch.from_numpy(sentence).to(loaded.device)
            projected = F.normalize(loaded.model.encode_text(features).float(), dim=-1)
        return projected.cpu().numpy()
