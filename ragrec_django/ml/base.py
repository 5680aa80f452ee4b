"""Encoder interface shared by every backend (torch/PIL/numpy only, no Django).

An encoder backend is built from its ``OPTIONS`` as keyword arguments and
loads its weights lazily, on the first call that needs them, so a Celery
prefork parent never holds a model and each child loads it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


class EncoderError(Exception):
    """An encoder could not be built or loaded (bad model name, missing weights...)."""


class DimensionMismatch(EncoderError):
    """Vectors of one dimension were offered where another dimension is stored."""


@dataclass
class ImageBatchResult:
    """Result of encoding a batch of images: bad images are reported, not raised.

    ``vectors`` has one row per input; rows of failed inputs are zero and their
    index is a key of ``errors`` with a human-readable reason.
    """

    vectors: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def ok_indices(self) -> list[int]:
        return [i for i in range(len(self.vectors)) if i not in self.errors]


def text_list(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, refusing anything that is not a string (with its position)."""
    texts = list(texts)
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError("texts[%d] is %s, expected str." % (position, type(text).__name__))
    return texts


class Encoder:
    """Base class. Subclasses set ``modalities`` and implement the encode methods."""

    #: Modalities this backend can encode: a subset of {"text", "image"}.
    modalities: frozenset[str] = frozenset()

    @property
    def dimension(self) -> int:
        """Output dimension, known without loading weights where possible."""
        raise NotImplementedError

    @property
    def version(self) -> str:
        """Stable identifier of the model and its preprocessing; changes re-encode items."""
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """Return float32 (n, dimension), L2-normalised, in input order."""
        raise NotImplementedError("%s does not encode text" % type(self).__name__)

    def encode_images(self, images: Sequence[bytes], batch_size: int | None = None) -> ImageBatchResult:
        """Encode raw image file bytes; undecodable inputs go to ``errors``."""
        raise NotImplementedError("%s does not encode images" % type(self).__name__)
