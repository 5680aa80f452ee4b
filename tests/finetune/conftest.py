"""Shared fine-tuning fixtures: synthetic pairs and a tiny LiT checkpoint trained once per session."""

from __future__ import annotations

import pytest

from ragrec_django.ml.finetune import train_clip

from .helpers import TINY_LIT_CONFIG, shape_pairs

#: Options of the session's tiny locked-text (LiT) training run.
TINY_LIT_OPTIONS = dict(
    lock_text="minilm",
    from_config=TINY_LIT_CONFIG,
    epochs=6,
    batch_size=16,
    lr=3e-3,
    holdout=0.2,
    seed=0,
    device="cpu",
    patience=0,
    progress=False,
)


@pytest.fixture(scope="session")
def pairs():
    return shape_pairs()


@pytest.fixture(scope="session")
def trained_lit(pairs, tmp_path_factory):
    """FinetuneResult of a tiny LiT model trained on the coloured shapes."""
    return train_clip(pairs, tmp_path_factory.mktemp("lit"), **TINY_LIT_OPTIONS)
