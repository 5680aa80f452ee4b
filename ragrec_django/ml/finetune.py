"""Fit CLIP to a shop's own catalogue: contrastive fine-tuning on (image, text) pairs.

Torch, PIL, numpy and open_clip only - no Django. ``train_clip(pairs, out_dir)``
trains with the CLIP (InfoNCE) loss and a learnable temperature, holds out a
seeded share of the *products* for evaluation, keeps the best epoch (early
stopping on held-out MRR) and writes a versioned checkpoint directory with a
report of text->image and image->text recall@1/5/10 and MRR before and after.

Two kinds of model:

* ``lock_text="none"``: an open_clip CLIP, both towers trained. It starts from
  pretrained weights (``pretrained=`` an open_clip tag or a checkpoint file) or,
  without them, from a small config (``from_config="small"``, a dict or a JSON
  file). The checkpoint loads with ``OpenClipEncoder``.
* ``lock_text="minilm"``: LiT-style ("locked-image tuning", with the text side
  locked here): the bundled all-MiniLM-L6-v2 is the frozen text tower (mean
  pooled, L2-normalised, as ``TransformerTextEncoder`` computes it) followed by a
  trainable linear projection to the joint dimension; only that projection,
  the image tower and the temperature train. Meant for shops without any
  pretrained CLIP weights. Such a model is not an open_clip architecture, so it
  has its own checkpoint format and encoder backend,
  ``ragrec_django.ml.locked_clip.LockedTextClipEncoder``.

Checkpoint directory ``<out>/<name>-<hash>/`` (``hash``: first 12 hex digits of
the sha256 of manifest + weights, so the same data, options and seed give the
same directory):

* ``ragrec_clip.json``: the manifest. ``"format"`` is ``"ragrec.locked_text_clip"``
  or ``"open_clip"``; see ``docs/finetune.md`` for every field.
* ``model.safetensors`` (locked text) or ``open_clip_model.safetensors`` +
  ``open_clip_config.json`` (open_clip; the pair also loads with
  ``open_clip.create_model("local-dir:<dir>")``).
* ``report.json``, ``report.md`` and, when matplotlib is installed, ``report.png``.

Serving a checkpoint (manifest reading, ``encoder_setting``, ``LockedTextClipEncoder``) lives in
``ragrec_django.ml.locked_clip``, so a web process does not import this training module.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .devices import autocast, check_device_name, check_precision_name, resolve_device, resolve_dtype
from .finetune_report import RECALL_AT, write_report
from .images import ImageDecodeError, ImagePolicy, Preprocessing, default_decode_workers, load_pixels, normalize
from .lazy import LazyModule
from .locked_clip import (
    FORMAT_VERSION,
    LOCKED_FORMAT,
    MANIFEST,
    OPEN_CLIP_FORMAT,
    encoder_setting,
    json_digest,
    text_model_fingerprint,
)
from .text import DEFAULT_TEXT_MODEL, TransformerTextEncoder

torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")

logger = logging.getLogger(__name__)

LOCKED_WEIGHTS = "model.safetensors"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
OPEN_CLIP_CONFIG = "open_clip_config.json"
COPIED_TEXT_MODEL = "text_model"

#: open_clip's default (OpenAI) normalisation, used for models trained from scratch.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: ``from_config="small"``: a CLIP small enough to train on a CPU in minutes (64x64 images).
SMALL_CONFIG = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}
SMALL_MODEL_NAME = "ragrec-clip-small"
DEFAULT_PRETRAINED_MODEL = "ViT-B-32"
LOCK_TEXT_CHOICES = ("none", "minilm")
NAME_PATTERN = re.compile(r"[^A-Za-z0-9._-]+")


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Pair:
    """One training example: a product's image file bytes and a text describing it.

    ``key`` identifies the product; all pairs of one product land on the same
    side of the held-out split (and count as positives of each other in a batch).
    """

    key: str
    image: bytes
    text: str


def split_by_product(pairs: Sequence[Pair], holdout: float = 0.2, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, held-out) pairs; a seeded ``holdout`` share of the distinct product keys is held out.

    The split depends only on the set of keys and the seed, not on the order of ``pairs``.
    """
    if not 0 < holdout < 1:
        raise ValueError("holdout must be between 0 and 1 (exclusive), got %r." % (holdout,))
    keys = sorted({pair.key for pair in pairs})
    rng = np.random.default_rng(seed)
    shuffled = [keys[i] for i in rng.permutation(len(keys))]
    n_held = int(round(len(keys) * holdout))
    if n_held < 2 or len(keys) - n_held < 2:
        raise ValueError(
            "Need at least 2 products on each side of the split; %d product(s) with holdout=%s give %d held out."
            % (len(keys), holdout, n_held)
        )
    held = set(shuffled[:n_held])
    return [p for p in pairs if p.key not in held], [p for p in pairs if p.key in held]


def retrieval_metrics(text_vectors: np.ndarray, image_vectors: np.ndarray, ks: Sequence[int] = RECALL_AT) -> dict:
    """Text->image and image->text recall@k and MRR where row i of both arrays is the same product.

    Vectors are L2-normalised (cosine = dot product). Each query has exactly one
    right answer among the n candidates; ties count against the model (a model
    giving every item the same vector ranks each right answer last).
    """
    text_vectors = np.asarray(text_vectors, dtype=np.float64)
    image_vectors = np.asarray(image_vectors, dtype=np.float64)
    if text_vectors.shape != image_vectors.shape or text_vectors.ndim != 2:
        raise ValueError(
            "Expected two (n, d) arrays of the same shape, got %s and %s." % (text_vectors.shape, image_vectors.shape)
        )
    scores = text_vectors @ image_vectors.T  # (texts, images)
    result = {"n": int(len(scores))}
    for direction, matrix in (("text_to_image", scores), ("image_to_text", scores.T)):
        right = np.diag(matrix)[:, None]
        ranks = (matrix >= right).sum(axis=1)  # 1 + others scoring at least as high
        metrics = {"recall@%d" % k: float(np.mean(ranks <= k)) for k in ks}
        metrics["mrr"] = float(np.mean(1.0 / ranks))
        metrics["median_rank"] = float(np.median(ranks))
        result[direction] = metrics
    result["mean_mrr"] = (result["text_to_image"]["mrr"] + result["image_to_text"]["mrr"]) / 2
    return result


# ----------------------------------------------------------------------------- options


@dataclass
class FinetuneConfig:
    """Options of ``train_clip``; every field has a sensible default.

    Model: ``lock_text`` ("minilm", "none", or "auto": "none" with ``pretrained``
    weights, else "minilm"), ``from_config`` ("small", a config dict or a JSON
    file; None = "small" unless ``pretrained`` is given), ``pretrained`` (an
    open_clip tag such as "laion2b_s34b_b79k" or a weights file) for the
    open_clip ``model`` name (default "ViT-B-32" with ``pretrained``, else a
    name derived from the config). With ``lock_text="minilm"`` and
    ``pretrained``, the pretrained model's image tower starts the training.
    """

    lock_text: str = "auto"
    from_config: str | dict | None = None
    pretrained: str | None = None
    model: str | None = None
    text_model: str = DEFAULT_TEXT_MODEL
    text_max_length: int = 128
    copy_text_model: bool = False
    epochs: int = 10
    batch_size: int = 128
    lr: float | None = None  # None: 5e-4 from scratch, 1e-5 from pretrained weights
    weight_decay: float = 0.1
    warmup: float = 0.05  # share of the total steps spent warming the learning rate up
    holdout: float = 0.2
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # autocast: bf16 (or fp16) on CUDA, fp32 on CPU
    augment: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)
    flip: bool = True
    patience: int = 3  # epochs without a better held-out MRR before stopping; 0 = never stop early
    min_delta: float = 1e-4
    max_steps: int | None = None
    max_seconds: float | None = None
    eval_batch_size: int = 256
    decode_workers: int | None = None
    pixel_cache_bytes: int = 4 << 30  # decode every image once and keep the pixels when they fit
    name: str | None = None  # checkpoint name (before the hash)
    progress: bool = True
    plot: bool = True  # report.png, when matplotlib is installed

    def validated(self) -> FinetuneConfig:
        config = replace(self)
        if config.lock_text == "auto":
            config.lock_text = "none" if config.pretrained else "minilm"
        if config.lock_text not in LOCK_TEXT_CHOICES:
            raise ValueError("lock_text must be auto, %s, got %r." % (" or ".join(LOCK_TEXT_CHOICES), config.lock_text))
        if int(config.epochs) < 1 or int(config.batch_size) < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2.")
        if config.lr is not None and not config.lr > 0:
            raise ValueError("lr must be positive, got %r." % (config.lr,))
        if not 0 < config.crop_scale[0] <= config.crop_scale[1] <= 1:
            raise ValueError("crop_scale must be (low, high) with 0 < low <= high <= 1, got %r." % (config.crop_scale,))
        if config.max_steps is not None and int(config.max_steps) < 1:
            raise ValueError("max_steps must be at least 1.")
        config.crop_scale = tuple(float(v) for v in config.crop_scale)
        config.device = check_device_name(config.device)
        config.precision = check_precision_name(config.precision)
        if config.from_config is None and not config.pretrained:
            config.from_config = "small"
        return config

    @classmethod
    def from_options(cls, **options) -> FinetuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError("Unknown fine-tuning option(s): %s." % ", ".join(unknown))
        # None means "the default" (every field that may be None defaults to None).
        return cls(**{name: value for name, value in options.items() if value is not None})


@dataclass
class FinetuneResult:
    """What ``train_clip`` wrote: the checkpoint directory, the report and the encoder setting to use."""

    checkpoint: str
    report: dict
    encoder: dict  # {"BACKEND": dotted path, "OPTIONS": {...}} for RAGREC["ENCODERS"]
    files: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- models being trained


class _Trainee:
    """What the training loop needs from a model, whatever its kind."""

    kind: str
    model: object
    preprocessing: Preprocessing
    text_inputs: object  # tensor indexed by text id
    name: str

    def encode_image(self, pixels):
        return self.model.encode_image(pixels)

    def encode_text(self, inputs):
        return self.model.encode_text(inputs)

    @property
    def logit_scale(self):
        return self.model.logit_scale

    def warnings(self) -> list[str]:
        return []


class _LockedTrainee(_Trainee):
    kind = LOCKED_FORMAT

    def __init__(self, config: FinetuneConfig, texts: list[str], device, seed: int):
        from .finetune_model import LockedTextClip

        self.text_encoder = TransformerTextEncoder(
            model=config.text_model, device=str(device), max_length=config.text_max_length, batch_size=128
        )
        source = self.text_encoder.source
        if config.pretrained:
            architecture, visual, preprocess = _pretrained_vision_tower(config)
        else:
            architecture = _architecture(config.from_config)
            visual, preprocess = None, _default_preprocess(architecture)
        hidden_size = self.text_encoder.dimension
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = LockedTextClip(
                architecture["embed_dim"],
                architecture["vision_cfg"],
                hidden_size,
                architecture.get("quick_gelu", False),
            )
        if visual is not None:
            self.model.visual.load_state_dict(visual.state_dict())
        self.model.to(device)
        self.preprocessing = Preprocessing.from_open_clip(preprocess)
        self.architecture = architecture
        self.name = config.name or "lit-minilm-%s" % (_architecture_label(config))
        self.text_source = source
        self.text_weights = text_model_fingerprint(source)
        logger.info("Encoding %d distinct texts with the frozen text model %s", len(texts), config.text_model)
        self.text_inputs = torch.from_numpy(self.text_encoder.encode_texts(texts)).float()
        self.config = config

    def manifest(self) -> dict:
        text_model = COPIED_TEXT_MODEL if self.config.copy_text_model else self.config.text_model
        return {
            "format": LOCKED_FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "embed_dim": int(self.architecture["embed_dim"]),
            "vision_cfg": self.architecture["vision_cfg"],
            "quick_gelu": bool(self.architecture.get("quick_gelu", False)),
            "preprocess": {
                "size": list(self.preprocessing.size),
                "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
                "interpolation": self.preprocessing.interpolation,
                "resize_mode": self.preprocessing.resize_mode,
            },
            "text": {
                "model": text_model,
                "hidden_size": int(self.model.text_projection.in_features),
                "max_length": int(self.config.text_max_length),
                "pooling": "mean",
                "normalize": True,
                "weights_sha256": self.text_weights,
            },
            "weights": LOCKED_WEIGHTS,
        }

    def save(self, directory: str) -> dict:
        from safetensors.torch import save_file

        manifest = self.manifest()
        save_file(_cpu_state(self.model), os.path.join(directory, LOCKED_WEIGHTS))
        if self.config.copy_text_model:
            if not os.path.isdir(self.text_source):
                raise ValueError("copy_text_model needs a local text model folder, got %r." % self.text_source)
            shutil.copytree(self.text_source, os.path.join(directory, COPIED_TEXT_MODEL))
        return manifest


class _OpenClipTrainee(_Trainee):
    kind = OPEN_CLIP_FORMAT

    def __init__(self, config: FinetuneConfig, texts: list[str], device, seed: int):
        import open_clip

        from .clip import _register_config

        name, architecture = _open_clip_model_and_config(config)
        if architecture is not None:
            _register_config(name, architecture)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            try:
                self.model = open_clip.create_model(name, pretrained=config.pretrained or None, device=device)
            except Exception as exc:
                raise ValueError(
                    "Cannot create open_clip model %r (pretrained %r): %s" % (name, config.pretrained, exc)
                ) from exc
        self.model.train()
        tokenizer = open_clip.get_tokenizer(name)
        self.text_inputs = tokenizer(texts)
        self.preprocessing = Preprocessing.from_open_clip(self.model.visual.preprocess_cfg)
        self.open_clip_name = name
        self.architecture = architecture if architecture is not None else open_clip.get_model_config(name)
        self.custom = architecture is not None
        self.name = config.name or "%s-ft" % name
        self.preprocess_cfg = dict(self.model.visual.preprocess_cfg)

    def warnings(self) -> list[str]:
        """OpenClipEncoder loads a weights file with open_clip's default preprocessing: say when that differs."""
        from open_clip.transform import PreprocessCfg

        default = asdict(PreprocessCfg())
        differs = [
            key
            for key in ("mean", "std", "interpolation", "resize_mode")
            if _jsonable(self.preprocess_cfg.get(key)) != _jsonable(default.get(key))
        ]
        if not differs:
            return []
        return [
            "The pretrained weights use other image preprocessing (%s) than OpenClipEncoder applies to a weights "
            "file (open_clip defaults); embeddings of the new checkpoint will be computed differently from training."
            % ", ".join("%s=%s" % (key, self.preprocess_cfg.get(key)) for key in differs)
        ]

    def manifest(self) -> dict:
        return {
            "format": OPEN_CLIP_FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "model": self.open_clip_name,
            "embed_dim": int(self.architecture["embed_dim"]),
            "config": OPEN_CLIP_CONFIG if self.custom else None,
            "weights": OPEN_CLIP_WEIGHTS,
        }

    def save(self, directory: str) -> dict:
        from safetensors.torch import save_file

        save_file(_cpu_state(self.model), os.path.join(directory, OPEN_CLIP_WEIGHTS))
        config = {"model_cfg": self.architecture, "preprocess_cfg": _jsonable(self.preprocess_cfg)}
        with open(os.path.join(directory, OPEN_CLIP_CONFIG), "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, sort_keys=True)
        return self.manifest()


def _cpu_state(model) -> dict:
    return {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def _architecture(from_config: str | dict | os.PathLike | None) -> dict:
    """An open_clip model config (embed_dim, vision_cfg, text_cfg) from "small", a dict or a JSON file."""
    if from_config in (None, "small"):
        return copy.deepcopy(SMALL_CONFIG)
    if isinstance(from_config, dict):
        config = from_config
    else:
        try:
            with open(from_config, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ValueError("Cannot read model config %r: %s" % (from_config, exc)) from exc
    config = copy.deepcopy(config.get("model_cfg", config))
    missing = [key for key in ("embed_dim", "vision_cfg") if key not in config]
    if missing:
        raise ValueError("Model config lacks %s." % ", ".join(missing))
    return json.loads(json.dumps(config))


def _architecture_label(config: FinetuneConfig) -> str:
    if config.pretrained:
        return config.model or DEFAULT_PRETRAINED_MODEL
    if config.from_config in (None, "small"):
        return "small"
    return "custom-%s" % json_digest(_architecture(config.from_config))[:8]


def _default_preprocess(architecture: dict) -> dict:
    size = architecture["vision_cfg"].get("image_size", 224)
    return {"size": size, "mean": CLIP_MEAN, "std": CLIP_STD, "interpolation": "bicubic", "resize_mode": "shortest"}


def _open_clip_model_and_config(config: FinetuneConfig) -> tuple[str, dict | None]:
    """(open_clip model name, custom config to register or None for a built-in architecture)."""
    if config.from_config is None:
        return config.model or DEFAULT_PRETRAINED_MODEL, None
    architecture = _architecture(config.from_config)
    if "text_cfg" not in architecture:
        raise ValueError("An open_clip model config needs text_cfg (or use lock_text='minilm').")
    if config.model:
        name = config.model
    elif config.from_config == "small":
        name = SMALL_MODEL_NAME
    else:
        name = "ragrec-clip-%s" % json_digest(architecture)[:8]
    return name, architecture


def _pretrained_vision_tower(config: FinetuneConfig):
    """(architecture, visual module, preprocess cfg) of a pretrained open_clip model, for locked-text training."""
    import open_clip

    from .clip import _register_config

    name, architecture = _open_clip_model_and_config(config)
    if architecture is not None:
        _register_config(name, architecture)
    try:
        model = open_clip.create_model(name, pretrained=config.pretrained, device="cpu")
    except Exception as exc:
        raise ValueError(
            "Cannot create open_clip model %r (pretrained %r): %s" % (name, config.pretrained, exc)
        ) from exc
    architecture = architecture if architecture is not None else open_clip.get_model_config(name)
    return json.loads(json.dumps(architecture)), model.visual, dict(model.visual.preprocess_cfg)


# ----------------------------------------------------------------------------- pixels


class _PixelStore:
    """Decoded, resized, centre-cropped uint8 pixels of the usable pairs, cached when they fit in memory."""

    def __init__(
        self, blobs: list[bytes], preprocessing: Preprocessing, policy: ImagePolicy, workers: int, cache_bytes: int
    ):
        self.blobs = blobs
        self.preprocessing = preprocessing
        self.policy = policy
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ragrec-finetune-decode")
        height, width = preprocessing.size
        self.cached = len(blobs) * 3 * height * width <= cache_bytes
        # Every image is decoded once here: to find the unusable ones, and to keep the pixels when cached.
        decoded = list(self.pool.map(self._decode if self.cached else self._check, blobs))
        self.errors = {i: item.reason for i, item in enumerate(decoded) if isinstance(item, ImageDecodeError)}
        self.ok = [i for i in range(len(blobs)) if i not in self.errors]
        self.pixels = None
        if self.cached:
            array = np.stack([decoded[i] for i in self.ok]) if self.ok else np.zeros((0, height, width, 3), np.uint8)
            self.pixels = torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()

    def _check(self, data: bytes) -> ImageDecodeError | None:
        result = self._decode(data)
        return result if isinstance(result, ImageDecodeError) else None

    def _decode(self, data: bytes):
        try:
            return load_pixels(data, self.policy, self.preprocessing)
        except ImageDecodeError as exc:
            return exc
        except Exception as exc:  # one image never fails training
            return ImageDecodeError("cannot preprocess image: %s" % exc)

    def batch(self, indices: Sequence[int]):
        """uint8 (n, 3, H, W) pixels of pairs ``indices`` (indices into the usable pairs)."""
        if self.cached:
            return self.pixels[torch.as_tensor(list(indices), dtype=torch.long)]
        arrays = list(
            self.pool.map(lambda i: load_pixels(self.blobs[self.ok[i]], self.policy, self.preprocessing), indices)
        )
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    def close(self):
        self.pool.shutdown(wait=True)


# ----------------------------------------------------------------------------- training


def train_clip(
    pairs: Iterable[Pair],
    out_dir: str | os.PathLike,
    config: FinetuneConfig | None = None,
    *,
    on_progress: Callable[[dict], None] | None = None,
    **options,
) -> FinetuneResult:
    """Fine-tune a CLIP on ``pairs`` and write a checkpoint directory with its report under ``out_dir``.

    Options are the fields of ``FinetuneConfig`` (pass a config or keywords).
    Returns the checkpoint path, the report (also in ``report.json``) and the
    ``RAGREC["ENCODERS"]`` entry serving the new checkpoint.

    ``on_progress(event)``, if given, is called with a dict when training
    starts (``"event": "start"``, after the held-out evaluation of the starting
    model) and after every epoch (``"epoch"``): ``epoch``, ``step``,
    ``total_steps``, ``elapsed_seconds`` (since training started),
    ``budget_seconds`` (``max_seconds`` or None), ``eta_seconds`` (training
    time left: the time budget's rest, or the remaining steps at the pace so
    far, whichever is shorter; the final evaluation and writing come on top),
    ``train_loss`` and ``holdout`` (recall@1/5, MRR of the epoch).
    """
    config = (replace(config, **options) if config is not None else FinetuneConfig.from_options(**options)).validated()
    pairs = list(pairs)
    started = time.time()
    device = resolve_device(config.device)
    if config.precision == "auto":
        autocast_dtype = (
            (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
            if device.type == "cuda"
            else torch.float32
        )
    else:
        autocast_dtype = resolve_dtype(config.precision, device)
    lr = config.lr if config.lr is not None else (1e-5 if config.pretrained else 5e-4)

    texts = sorted({pair.text for pair in pairs})
    text_id = {text: i for i, text in enumerate(texts)}
    trainee_class = _LockedTrainee if config.lock_text == "minilm" else _OpenClipTrainee
    trainee = trainee_class(config, texts, device, config.seed)

    policy = ImagePolicy.build()
    workers = config.decode_workers or default_decode_workers()
    store = _PixelStore([p.image for p in pairs], trainee.preprocessing, policy, workers, config.pixel_cache_bytes)
    try:
        skipped = {pairs[i].key: reason for i, reason in store.errors.items()}
        usable = [pairs[i] for i in store.ok]
        train, held = split_by_product(usable, config.holdout, config.seed)
        row = {id(pair): r for r, pair in enumerate(usable)}
        data = _Data(
            train_rows=[row[id(p)] for p in train],
            held_rows=_first_pair_per_product([row[id(p)] for p in held], usable),
            text_ids=torch.tensor([text_id[p.text] for p in usable], dtype=torch.long),
            image_ids=_content_ids([p.image for p in usable]),
            key_ids=_content_ids([p.key.encode() for p in usable]),
        )
        report = _run_training(trainee, store, data, config, device, autocast_dtype, lr, on_progress)
    finally:
        store.close()

    report.update(
        {
            "data": {
                "pairs": len(pairs),
                "usable_pairs": len(usable),
                "skipped_images": len(skipped),
                "skipped_examples": dict(list(skipped.items())[:20]),
                "products": len({p.key for p in usable}),
                "train_pairs": len(train),
                "train_products": len({p.key for p in train}),
                "holdout_products": len(data.held_rows),
                "distinct_texts": len(texts),
            },
            "config": _config_summary(config, lr),
            "device": _device_summary(device, autocast_dtype),
            "wall_seconds": round(time.time() - started, 2),
        }
    )
    return _write_checkpoint(trainee, report, out_dir)


@dataclass
class _Data:
    train_rows: list[int]
    held_rows: list[int]
    text_ids: object
    image_ids: object
    key_ids: object


def _first_pair_per_product(rows: list[int], usable: list[Pair]) -> list[int]:
    seen, result = set(), []
    for r in sorted(rows, key=lambda r: usable[r].key):
        if usable[r].key not in seen:
            seen.add(usable[r].key)
            result.append(r)
    return result


def _content_ids(blobs: list[bytes]):
    ids: dict[bytes, int] = {}
    return torch.tensor([ids.setdefault(hashlib.sha256(b).digest(), len(ids)) for b in blobs], dtype=torch.long)


def _run_training(
    trainee: _Trainee, store: _PixelStore, data: _Data, config: FinetuneConfig, device, dtype, lr, on_progress=None
) -> dict:
    from tqdm import tqdm

    from .finetune_model import (
        MAX_LOGIT_SCALE,
        clip_loss,
        cosine_with_warmup,
        random_resized_crop_flip,
        weight_decay_groups,
    )

    model = trainee.model
    generator = torch.Generator().manual_seed(config.seed)
    n_train = len(data.train_rows)
    batch_size = min(config.batch_size, n_train)
    steps_per_epoch = max(1, n_train // batch_size)  # drop the last partial batch: contrastive batches stay full
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, int(config.max_steps))
    warmup = int(round(config.warmup * total_steps))
    optimizer = torch.optim.AdamW(weight_decay_groups(model, config.weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    clock = {"start": time.monotonic(), "limit": config.max_seconds}

    def lr_factor(step: int) -> float:
        # With a time limit the cosine follows whichever runs out first, steps or time, so it always anneals.
        elapsed = (time.monotonic() - clock["start"]) / clock["limit"] if clock["limit"] else 0.0
        return cosine_with_warmup(step, total_steps, warmup, elapsed)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    train_rows = torch.tensor(data.train_rows, dtype=torch.long)

    def evaluate() -> dict:
        return _evaluate(trainee, store, data.held_rows, data.text_ids, config.eval_batch_size, device, dtype)

    before = evaluate()
    best, best_state, best_epoch = before, _state_copy(model), 0
    history = [{"epoch": 0, "step": 0, "train_loss": None, "lr": 0.0, "holdout": _short(before)}]
    step, step_seconds, pairs_seen, stale_epochs = 0, 0.0, 0, 0
    stopped = "completed"
    clock["start"] = time.monotonic()  # the time limit counts from here: training and its evaluations
    deadline = clock["start"] + config.max_seconds if config.max_seconds else None

    def report_progress(event: str, epoch: int, loss=None, metrics=None) -> None:
        if on_progress is None:
            return
        elapsed = time.monotonic() - clock["start"]
        left = [max(0.0, config.max_seconds - elapsed)] if config.max_seconds else []
        if step:
            left.append(elapsed / step * max(0, total_steps - step))
        on_progress(
            {
                "event": event,
                "epoch": epoch,
                "epochs": config.epochs,
                "step": step,
                "total_steps": total_steps,
                "elapsed_seconds": round(elapsed, 2),
                "budget_seconds": config.max_seconds,
                "eta_seconds": round(min(left), 1) if left else None,
                "train_loss": loss,
                "holdout": _short(metrics) if metrics is not None else None,
            }
        )

    report_progress("start", 0, metrics=before)
    with torch.random.fork_rng(devices=[_cuda_index(device)] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = train_rows[torch.randperm(n_train, generator=generator)]
            losses = []
            bar = tqdm(
                range(steps_per_epoch),
                desc="epoch %d/%d" % (epoch, config.epochs),
                unit="step",
                disable=not config.progress,
                leave=False,
            )
            for position in bar:
                tick = time.perf_counter()
                rows = order[position * batch_size : (position + 1) * batch_size]
                pixels = normalize(store.batch(rows.tolist()).to(device, non_blocking=True), trainee.preprocessing)
                if config.augment:
                    pixels = random_resized_crop_flip(pixels, generator, scale=config.crop_scale, flip=config.flip)
                text_inputs = trainee.text_inputs[data.text_ids[rows]].to(device, non_blocking=True)
                positives = _positives(rows, data).to(device)
                with autocast(device, dtype):
                    image_features = trainee.encode_image(pixels)
                    text_features = trainee.encode_text(text_inputs)
                loss = clip_loss(image_features, text_features, trainee.logit_scale, positives)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                with torch.no_grad():
                    trainee.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                value = float(loss.detach())  # synchronises: the step is done
                step_seconds += time.perf_counter() - tick
                pairs_seen += len(rows)
                losses.append(value)
                step += 1
                bar.set_postfix(loss="%.4f" % value)
                if not math.isfinite(value):
                    raise FloatingPointError(
                        "The training loss became %s at step %d; lower the learning rate." % (value, step)
                    )
                if step >= total_steps or (deadline is not None and time.monotonic() > deadline):
                    break
            bar.close()
            metrics = evaluate()
            history.append(
                {
                    "epoch": epoch,
                    "step": step,
                    "train_loss": float(np.mean(losses)),
                    "lr": float(scheduler.get_last_lr()[0]),
                    "temperature": float(1 / trainee.logit_scale.detach().exp()),
                    "holdout": _short(metrics),
                }
            )
            logger.info("epoch %d: loss %.4f, held-out MRR %.4f", epoch, history[-1]["train_loss"], metrics["mean_mrr"])
            report_progress("epoch", epoch, history[-1]["train_loss"], metrics)
            if metrics["mean_mrr"] > best["mean_mrr"] + config.min_delta:
                best, best_state, best_epoch, stale_epochs = metrics, _state_copy(model), epoch, 0
            else:
                stale_epochs += 1
            if step >= total_steps and epoch < config.epochs:
                stopped = "max_steps"
                break
            if deadline is not None and time.monotonic() > deadline:
                stopped = "time_limit"
                break
            if config.patience and stale_epochs >= config.patience:
                stopped = "early_stopping"
                break
    model.load_state_dict(best_state)
    model.eval()
    after = evaluate()
    return {
        "before": before,
        "after": after,
        "best_epoch": best_epoch,
        "epochs_run": history[-1]["epoch"],
        "steps": step,
        "stopped": stopped,
        "history": history,
        "train_pairs_per_second": round(pairs_seen / step_seconds, 2) if step_seconds else None,
        "train_seconds": round(step_seconds, 2),
        "logit_scale": float(trainee.logit_scale.detach()),
    }


def _cuda_index(device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _positives(rows, data: _Data):
    """(n, n) bool: pairs sharing a product, a text or identical image bytes belong together."""
    positives = None
    for ids in (data.text_ids, data.image_ids, data.key_ids):
        values = ids[rows]
        same = values[:, None] == values[None, :]
        positives = same if positives is None else positives | same
    return positives


def _state_copy(model) -> dict:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def _short(metrics: dict) -> dict:
    return {
        "t2i_r@1": metrics["text_to_image"]["recall@1"],
        "t2i_r@5": metrics["text_to_image"]["recall@5"],
        "t2i_mrr": metrics["text_to_image"]["mrr"],
        "i2t_mrr": metrics["image_to_text"]["mrr"],
        "mean_mrr": metrics["mean_mrr"],
    }


def _evaluate(trainee: _Trainee, store: _PixelStore, rows: list[int], text_ids, batch_size: int, device, dtype) -> dict:
    """Held-out retrieval metrics: one image and one text per held-out product, no augmentation."""
    model = trainee.model
    was_training = model.training
    model.eval()
    image_chunks, text_chunks = [], []
    with torch.inference_mode(), autocast(device, dtype):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            pixels = normalize(store.batch(chunk).to(device), trainee.preprocessing)
            image_chunks.append(F.normalize(trainee.encode_image(pixels).float(), dim=-1).cpu())
            inputs = trainee.text_inputs[text_ids[torch.tensor(chunk, dtype=torch.long)]].to(device)
            text_chunks.append(F.normalize(trainee.encode_text(inputs).float(), dim=-1).cpu())
    model.train(was_training)
    return retrieval_metrics(torch.cat(text_chunks).numpy(), torch.cat(image_chunks).numpy())


def _config_summary(config: FinetuneConfig, lr: float) -> dict:
    summary = asdict(config)
    summary["lr"] = lr
    summary["crop_scale"] = list(config.crop_scale)
    return _jsonable(summary)


def _device_summary(device, dtype) -> dict:
    import open_clip

    summary = {
        "device": str(device),
        "autocast": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    return summary


_write_lock = threading.Lock()


def _write_checkpoint(trainee: _Trainee, report: dict, out_dir: str | os.PathLike) -> FinetuneResult:
    """Write weights + manifest to a temporary folder, name it by content hash, add the report."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=out_dir)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the web and worker users must read the checkpoint
    try:
        manifest = trainee.save(staging)
        manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
        with open(os.path.join(staging, MANIFEST), "wb") as handle:
            handle.write(manifest_bytes)
        sha = hashlib.sha256(manifest_bytes)
        with open(os.path.join(staging, manifest["weights"]), "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        name = NAME_PATTERN.sub("-", manifest["name"]).strip("-") or "clip"
        target = os.path.join(out_dir, "%s-%s" % (name, sha.hexdigest()[:12]))
        with _write_lock:
            try:
                os.rename(staging, target)
            except OSError:
                if not os.path.isdir(target):
                    raise
                # Same manifest and weights already there (same data, options and seed): keep them, refresh the report.
                shutil.rmtree(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    encoder = encoder_setting(target)
    report["checkpoint"] = target
    report["format"] = manifest["format"]
    report["encoder"] = encoder
    report["warnings"] = trainee.warnings()
    if report["best_epoch"] == 0:
        report["warnings"].append(
            "No epoch beat the starting model on the held-out products: the checkpoint holds the starting weights. "
            "Try more epochs, another learning rate or more data."
        )
    files = write_report(target, report, plot=report["config"]["plot"])
    return FinetuneResult(checkpoint=target, report=report, encoder=encoder, files=files)


def __getattr__(name: str):
    """``LockedTextClipEncoder`` at its old dotted path (``ragrec_django.ml.finetune.LockedTextClipEncoder``).

    Deprecated: settings should name ``ragrec_django.ml.locked_clip.LockedTextClipEncoder``; this alias
    goes in the next release. Resolved lazily, so the warning is emitted only where the old path is used.
    """
    if name == "LockedTextClipEncoder":
        warnings.warn(
            "ragrec_django.ml.finetune.LockedTextClipEncoder moved to ragrec_django.ml.locked_clip.LockedTextClipEncoder; "
            "the old path goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        from .locked_clip import LockedTextClipEncoder

        return LockedTextClipEncoder
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
