"""Synthetic catalogues for the fine-tuning tests: coloured product silhouettes with matching captions."""

from __future__ import annotations

import io
import random

from ragrec_django.ml.finetune import Pair
from shop_demo.catalog import imaging

SHAPES = {
    "mug": "mug",
    "tshirt": "t-shirt",
    "sneaker": "sneaker",
    "lamp": "lamp",
    "bottle": "bottle",
    "umbrella": "umbrella",
}
COLOURS = ("red", "blue", "green", "yellow", "purple", "black")

#: A LiT image tower small enough to train in seconds on two CPU cores (32x32 images).
TINY_LIT_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
}


def shape_pairs(styles: int = 3, size: int = 48, seed: int = 0) -> list[Pair]:
    """One product per (shape, colour, style): its picture and the caption "a <colour> <noun>".

    Products of one (shape, colour) share the caption and differ in position,
    scale and background, so every caption of a held-out product was also seen
    in training with another picture.
    """
    rng = random.Random(seed)
    pairs = []
    for shape, noun in SHAPES.items():
        for colour in COLOURS:
            for style_number in range(styles):
                style = imaging.random_style(rng)
                pairs.append(
                    Pair(
                        key="%s-%s-%d" % (shape, colour, style_number),
                        image=jpeg(imaging.render(shape, colour, style, size=size)),
                        text="a %s %s" % (colour, noun),
                    )
                )
    return pairs


def jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
