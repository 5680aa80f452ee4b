"""Encoder interface shared by every backend (torch/PIL/numpy only, no Django).

An encoder backend is built from its ``OPTIONS`` as keyword arguments and
loads its weights lazily, on the first call that needs them, so a Celery
prefork parent never holds a model and each child loads it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class EncoderError(Exception):
    """An encoder could not be built or loaded (bad model name, missing weights...)."""


class DimensionMismatch(EncoderError):
    """Vectors of one dimension were offered where another dimension is stored."""


#: The modalities an encoder may support.
MODALITIES = ("text", "image")


@dataclass
class EncodeResult:
    """Result of encoding a batch of any modality: inputs that cannot be encoded are reported, not raised.

    ``vectors`` has one row per input; rows of failed inputs are zero and their
    index is a key of ``errors`` with a human-readable reason.
    """

    vectors: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def ok_indices(self) -> list[int]:
        return [i for i in range(len(self.vectors)) if i not in self.errors]


@dataclass
class ImageBatchResult(EncodeResult):
    """What ``encode_images`` returns: an ``EncodeResult`` whose ``errors`` are the undecodable images."""


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

    def encode(self, modality: str, contents: Sequence, batch_size: int | None = None) -> EncodeResult:
        """Encode texts (``modality="text"``) or image file bytes (``"image"``): one contract for both.

        Per-input failures (an undecodable image) are in ``errors``, never raised; a text
        batch has none. Backends implement ``encode_texts`` and ``encode_images``.
        """
        if modality == "text":
            return EncodeResult(vectors=self.encode_texts(contents, batch_size=batch_size))
        if modality == "image":
            return self.encode_images(contents, batch_size=batch_size)
        raise ValueError("modality must be one of %s, got %r." % (", ".join(MODALITIES), modality))
