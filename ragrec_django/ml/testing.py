"""Test and benchmark helpers: a tiny random CLIP that loads through the production code path, and photos."""

from __future__ import annotations

import copy
import importlib.util
import io
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
    path = _save_seeded(
        lambda: open_clip.CLIP(**config), directory, "%s-seed%d.safetensors" % (TINY_CLIP_NAME, seed), seed
    )
    return {"model": TINY_CLIP_NAME, "pretrained": path, "config": config}


def make_random_clip_checkpoint(model: str, directory: str | os.PathLike, seed: int = 0) -> dict:
    """Random weights of a built-in open_clip architecture (e.g. "ViT-B-32") saved to ``directory``.

    For benchmarks: several encoders (one per precision, say) built from the returned
    OPTIONS load the same model, which ``pretrained=None`` (a new random init each) does not.
    """
    import open_clip

    path = _save_seeded(
        lambda: open_clip.create_model(model, pretrained=None),
        directory,
        "%s-random-seed%d.safetensors" % (model, seed),
        seed,
    )
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


SAMPLE_PHOTOS = (  # (package, path inside it): photographs some installed packages ship as sample data
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
)


def installed_sample_photos() -> list[str]:
    """Paths of the real photographs (JPEG) in ``SAMPLE_PHOTOS`` whose package is installed; none is imported."""
    paths = []
    for package, name in SAMPLE_PHOTOS:
        spec = importlib.util.find_spec(package)
        for folder in (spec and spec.submodule_search_locations) or ():
            if os.path.isfile(os.path.join(folder, name)):
                paths.append(os.path.join(folder, name))
                break
    return paths


def photo_scene(width: int, height: int, seed: int = 0):
    """A PIL RGB image with the statistics that matter to decoders and resizers, in place of a photograph.

    A "dead leaves" scene (2,500 overlapping discs and rectangles whose sizes follow
    the scale-invariant r^-3 law of natural images, drawn in random order), lit by a
    smooth colour gradient, with roughly 1/f texture, sensor noise and a slight lens
    blur: hard edges at every scale, smooth areas and fine detail, as in photographs.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    short = min(width, height)
    light = Image.fromarray(rng.integers(60, 256, (3, 4, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    scene = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(scene)
    r_min, r_max = 0.006 * short, 0.3 * short
    for radius in (r_min**-2 - rng.random(2_500) * (r_min**-2 - r_max**-2)) ** -0.5:  # density ~ r^-3
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        half_width = radius * rng.uniform(0.5, 1.5)
        colour = tuple(int(v) for v in np.clip(rng.uniform(30, 230) + rng.normal(0, 45, 3), 0, 255))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x - half_width, y - radius, x + half_width, y + radius), fill=colour)
    texture = np.zeros((height, width), np.float32)
    for octave in range(1, 8):  # coarse to fine noise, finer octaves weaker: roughly 1/f
        cells = rng.normal(0, 1, (max(2, height >> octave), max(2, width >> octave))).astype(np.float32)
        layer = Image.fromarray(cells).resize((width, height), Image.Resampling.BILINEAR)
        texture += np.asarray(layer) * 10 * 2 ** (-0.35 * (7 - octave))
    pixels = np.asarray(scene, np.float32) * (np.asarray(light, np.float32) / 255) + texture[..., None]
    pixels += rng.normal(0, 2, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.7))


def photo_jpeg(width: int, height: int, seed: int = 0, quality: int = 90) -> bytes:
    """``photo_scene`` saved as a baseline JPEG (4:2:0 chroma, as cameras and most shops save photos)."""
    buffer = io.BytesIO()
    photo_scene(width, height, seed).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
