"""CLIP text and image towers from open_clip, sharing one loaded model per process."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256

import numpy as np

from . import clip_text
from .base import Encoder, EncoderError, ImageBatchResult, text_list
from .batching import OomBackoff
from .clip_weights import pretrained_source
from .devices import (
    autocast,
    check_device_name,
    check_precision_name,
    resolve_device,
    resolve_dtype,
    weights_precision,
)
from .images import ImagePolicy, Preprocessing, check_decode_pool, encode_image_bytes
from .lazy import LazyModule
from .loading import file_fingerprint, load_once

torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")

HF_HUB_PREFIX = "hf-hub:"
CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

_config_dir: tempfile.TemporaryDirectory | None = None
_config_lock = threading.Lock()


@dataclass
class LoadedClip:
    """One loaded open_clip model with its tokenizer and image preprocessing."""

    model: torch.nn.Module
    tokenizer: object
    preprocessing: Preprocessing
    device: torch.device
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock)


class ClipImageSide:
    """``encode_images`` of a CLIP-style encoder: ``load()`` gives ``model.encode_image``, ``preprocessing``
    and ``device``; the encoder has ``dimension``, ``batch_size``, ``image_policy``, ``precision_option``,
    ``decode_workers`` and ``decode_pool``."""

    def encode_images(self, images: Sequence[bytes], batch_size: int | None = None) -> ImageBatchResult:
        images = list(images)
        if not images:
            return ImageBatchResult(vectors=np.zeros((0, self.dimension), dtype=np.float32))
        loaded = self.load()
        return encode_image_bytes(
            images,
            encode=loaded.model.encode_image,
            dimension=self.dimension,
            batch_size=batch_size or self.batch_size,
            policy=self.image_policy,
            preprocessing=loaded.preprocessing,
            device=loaded.device,
            dtype=resolve_dtype(self.precision_option, loaded.device),
            workers=self.decode_workers,
            decode_pool=self.decode_pool,
        )


class OpenClipEncoder(ClipImageSide, Encoder):
    """CLIP encoder for text and images (open_clip).

    The model is one of:

    * a built-in open_clip architecture with a pretrained tag
      (``model="ViT-B-32", pretrained="laion2b_s34b_b79k"``);
    * ``model="hf-hub:org/repo"`` (``pretrained`` is ignored);
    * a local weights file: ``checkpoint="/path/model.safetensors"`` (or the
      same path as ``pretrained``), optionally with ``config`` - an open_clip
      model config dict or JSON file path - registered under ``model``.

    ``pretrained=None`` without a checkpoint gives random weights (benchmarks).
    Text and image towers of encoders with the same model options share one
    model per process; it loads on first use.
    """

    modalities = frozenset({"text", "image"})

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = "laion2b_s34b_b79k",
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 256,
        checkpoint: str | os.PathLike | None = None,
        config: dict | str | os.PathLike | None = None,
        decode_workers: int | None = None,
        image_formats: Sequence[str] | None = None,
        max_image_pixels: int = 40_000_000,
        decode_pool: str = "threads",
    ):
        if not isinstance(model, str) or not model:
            raise EncoderError("model must be an open_clip model name or an hf-hub: id, got %r." % (model,))
        if int(batch_size) < 1:
            raise EncoderError("batch_size must be at least 1.")
        try:
            self.device_option = check_device_name(device)
            self.precision_option = check_precision_name(precision)
            self.image_policy = ImagePolicy.build(image_formats, max_image_pixels)
            self.decode_pool = check_decode_pool(decode_pool)
        except ValueError as exc:
            raise EncoderError(str(exc)) from exc
        self.model_name = model
        self.is_hub_model = model.startswith(HF_HUB_PREFIX)
        self.weights = None if self.is_hub_model else (os.fspath(checkpoint) if checkpoint else pretrained)
        self.config = _read_config(config, model) if config is not None else None
        if self.is_hub_model and (self.config is not None or checkpoint):
            raise EncoderError("An hf-hub: model brings its own config and weights; drop config and checkpoint.")
        self.batch_size = int(batch_size)
        self.decode_workers = decode_workers
        self._dimension: int | None = None
        self._version: str | None = None

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self._model_config()["embed_dim"])
        return self._dimension

    @property
    def version(self) -> str:
        if self._version is None:
            parts = ["open_clip", self.model_name]
            if not self.is_hub_model:
                parts.append(self._weights_identity())
                parts.append("image_size=%s" % (self._model_config()["vision_cfg"].get("image_size", 224),))
            if self.config is not None:
                parts.append("config=%s" % _config_digest(self.config))
            self._version = ":".join(parts)
        return self._version

    def load(self) -> LoadedClip:
        """Load (once per process and configuration) and return the model; later calls are free."""
        try:
            device = resolve_device(self.device_option)
        except ValueError as exc:
            raise EncoderError(str(exc)) from exc
        weights = weights_precision(device, resolve_dtype(self.precision_option, device))
        key = ("open_clip", self.model_name, self.weights, _config_digest(self.config), str(device), weights)
        return load_once(key, lambda: self._build(device, weights), device.type)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = text_list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loaded = self.load()
        with loaded.tokenizer_lock:
            tokens = loaded.tokenizer(texts)
        backoff = OomBackoff(batch_size or self.batch_size)
        with torch.inference_mode(), autocast(loaded.device, resolve_dtype(self.precision_option, loaded.device)):
            vectors = backoff.run(
                lambda batch: F.normalize(clip_text.encode_text(loaded.model, batch.to(loaded.device)).float(), dim=-1),
                tokens,
            )
        return vectors.cpu().numpy()

    def _build(self, device: torch.device, weights: str) -> LoadedClip:
        import open_clip

        if self.config is not None:
            _register_config(self.model_name, self.config)
        source = pretrained_source(self.model_name, self.weights)  # a cached tag loads with no network at all
        try:
            model = open_clip.create_model(
                self.model_name,
                pretrained=source.pretrained,
                force_preprocess_cfg=source.preprocess,
                device=device,
                precision=weights,
            )
            tokenizer = open_clip.get_tokenizer(self.model_name)
            preprocessing = Preprocessing.from_open_clip(model.visual.preprocess_cfg)
        except Exception as exc:
            raise EncoderError(
                "Cannot load open_clip model %r (weights %r): %s" % (self.model_name, self.weights, exc)
            ) from exc
        model.eval()
        return LoadedClip(model=model, tokenizer=tokenizer, preprocessing=preprocessing, device=device)

    def _model_config(self) -> dict:
        if self.config is not None:
            return self.config
        bundled = _bundled_config(self.model_name)
        if bundled is not None:
            return bundled
        import open_clip

        try:
            config = open_clip.get_model_config(self.model_name)
        except Exception as exc:  # hf-hub config download failed
            raise EncoderError("Cannot read the config of %r: %s" % (self.model_name, exc)) from exc
        if config is None:
            raise EncoderError(
                "Unknown open_clip model %r; pass config= for a custom architecture or see open_clip.list_models()."
                % self.model_name
            )
        return config

    def _weights_identity(self) -> str:
        if self.weights is None:
            return "random-init"
        if os.path.isfile(self.weights):
            return "sha256:%s" % file_fingerprint(self.weights)
        return self.weights


def _read_config(config: dict | str | os.PathLike, model: str) -> dict:
    """Load and check a custom model config (dict or JSON file)."""
    if not MODEL_NAME_PATTERN.match(model):
        raise EncoderError("A custom config needs a plain model name (letters, digits, . _ -), got %r." % model)
    if not isinstance(config, dict):
        try:
            with open(config, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            raise EncoderError("Cannot read open_clip config %r: %s" % (config, exc)) from exc
    config = config.get("model_cfg", config)
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise EncoderError("open_clip config for %r lacks %s." % (model, ", ".join(missing)))
    return json.loads(json.dumps(config))


def _bundled_config(model: str) -> dict | None:
    """open_clip's bundled config of a built-in ``model``, read as JSON without importing open_clip (and torch).

    None when open_clip is already imported (its registry may hold added configs) or the file is not there.
    """
    if "open_clip" in sys.modules or not MODEL_NAME_PATTERN.match(model):
        return None
    spec = importlib.util.find_spec("open_clip")  # locates the package without running it
    filename = model + ".json"
    for package in (spec and spec.submodule_search_locations) or ():
        folder = os.path.join(package, "model_configs")
        try:
            if filename not in os.listdir(folder):  # exact name, also on case-insensitive file systems
                continue
            with open(os.path.join(folder, filename), encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and all(key in config for key in CONFIG_KEYS):
            return config
    return None


def _config_digest(config: dict | None) -> str | None:
    if config is None:
        return None
    return sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def _register_config(name: str, config: dict) -> None:
    """Make ``config`` known to open_clip as ``name``; refuse to redefine an existing name."""
    import open_clip

    global _config_dir
    with _config_lock:
        existing = open_clip.get_model_config(name)
        if existing is not None:
            if _config_digest(json.loads(json.dumps(existing))) != _config_digest(config):
                raise EncoderError(
                    "open_clip already knows a different model called %r; give the custom config another name." % name
                )
            return
        if _config_dir is None:
            _config_dir = tempfile.TemporaryDirectory(prefix="ragrec-open-clip-configs-")
        path = os.path.join(_config_dir.name, name + ".json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        open_clip.add_model_config(path)
