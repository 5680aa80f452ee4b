"""Image helpers of the demo shop's tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def pixels(source) -> np.ndarray:
    """RGB pixels (int array) of an image file, bytes or PIL image."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    image = source if isinstance(source, Image.Image) else Image.open(source)
    return np.asarray(image.convert("RGB")).astype(int)


def foreground(rgb: np.ndarray, threshold: int = 100) -> np.ndarray:
    """Pixels clearly unlike the background (the median colour of the border)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.abs(rgb - np.median(border, axis=0)).sum(axis=2) > threshold


COLOUR_RULES = {
    "red": lambda p: (p[..., 0] > p[..., 1] + 60) & (p[..., 0] > p[..., 2] + 60),
    "blue": lambda p: (p[..., 2] > p[..., 0] + 50) & (p[..., 2] > p[..., 1] + 30),
    "green": lambda p: (p[..., 1] > p[..., 0] + 30) & (p[..., 1] > p[..., 2] + 20),
    "yellow": lambda p: (p[..., 0] > p[..., 2] + 70) & (p[..., 1] > p[..., 2] + 60),
}


def colour_share(rgb: np.ndarray, colour: str) -> float:
    """Share of the foreground pixels that look like ``colour``."""
    fg = rgb[foreground(rgb)]
    return float(COLOUR_RULES[colour](fg).mean()) if len(fg) else 0.0
