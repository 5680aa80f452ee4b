"""A deterministic, instant text encoder for evaluation tests (bag of hashed words)."""

import zlib

import numpy as np

from ragrec_django.ml.base import Encoder, text_list


class WordHashEncoder(Encoder):
    modalities = frozenset({"text"})

    def __init__(self, dimension: int = 16, **options):
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def version(self) -> str:
        return "word-hash-%d" % self._dimension

    def encode_texts(self, texts, batch_size=None) -> np.ndarray:
        rows = np.full((len(texts), self._dimension), 0.01, dtype=np.float32)
        for row, text in zip(rows, text_list(texts)):
            for word in text.lower().split():
                row[zlib.crc32(word.encode()) % self._dimension] += 1.0
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)
