"""Test helpers: a tiny random CLIP that loads through the production code path."""

from __future__ import annotations

import copy
import os

TINY_CLIP_NAME = "ragrec-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def make_tiny_clip_checkpoint(directory: str | os.PathLike, seed: int = 0) -> dict:
    """Write a ~7 MB random CLIP checkpoint into ``directory`` and return its encoder OPTIONS.

    The result is ``{"model": "ragrec-tiny-clip", "pretrained": "<directory>/...safetensors",
    "config": {...}}``: pass it as ``OpenClipEncoder(**options, device="cpu")`` or as the
    ``OPTIONS`` of an ``ENCODERS`` entry. Embeddings have 64 dimensions, images are
    preprocessed to 32x32, and the same ``seed`` always gives the same weights.
    """
    import open_clip

    config = copy.deepcopy(TINY_CLIP_CONFIG)
    path = _save_seeded(lambda: open_clip.CLIP(**config), directory, "%s-seed%d.safetensors" % (TINY_CLIP_NAME, seed), seed)
    return {"model": TINY_CLIP_NAME, "pretrained": path, "config": config}


def make_random_clip_checkpoint(model: str, directory: str | os.PathLike, seed: int = 0) -> dict:
    """Random weights of a built-in open_clip architecture (e.g. "ViT-B-32") saved to ``directory``.

    For benchmarks: several encoders (one per precision, say) built from the returned
    OPTIONS load the same model, which ``pretrained=None`` (a new random init each) does not.
    """
    import open_clip

    path = _save_seeded(lambda: open_clip.create_model(model, pretrained=None), directory,
                        "%s-random-seed%d.safetensors" % (model, seed), seed)
    return {"model": model, "pretrained": path}


def _save_seeded(build, directory: str | os.PathLike, filename: str, seed: int) -> str:
    """Build a model under ``seed`` (the global RNG left as it was) and save its weights as safetensors."""
    import torch
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build()
    path = os.path.join(os.fspath(directory), filename)
    os.makedirs(os.fspath(directory), exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in network.state_dict().items()}, path)
    return path
