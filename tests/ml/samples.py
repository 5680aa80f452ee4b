"""Image files and non-images that exercise the decoder's edge cases."""

from __future__ import annotations

import io
import struct
import zlib
from types import SimpleNamespace

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def halves(left, right, size=(40, 20), mode="RGB") -> Image.Image:
    """An image whose left half is ``left`` and right half is ``right``."""
    image = Image.new(mode, size, left)
    image.paste(Image.new(mode, (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A few-byte PNG whose header claims ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def noise(size=(256, 256), seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def photo_like(size=(640, 480), seed=0) -> Image.Image:
    """Smooth colour gradients, which resize and compress like photographs."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def build_samples():
    """Image files and non-images covering the decoder's edge cases, as bytes."""
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    red_blue = halves((255, 0, 0), (0, 0, 255))

    palette = Image.new("P", (40, 20), 0)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0, 0, 0] * 254)
    palette.paste(1, (20, 0, 40, 20))

    rgba = Image.new("RGBA", (30, 10), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (10, 0, 20, 10))
    rgba.paste((0, 0, 0, 128), (20, 0, 30, 10))

    jpeg = encode(noise(), "JPEG", quality=90)
    return SimpleNamespace(
        jpeg=jpeg,
        photo_jpeg=encode(photo_like(), "JPEG", quality=90),
        noisy_png=encode(noise((128, 128)), "PNG"),
        red_blue_jpeg=encode(red_blue, "JPEG", quality=95),
        exif_rotated_jpeg=encode(red_blue, "JPEG", quality=95, exif=exif.tobytes()),
        cmyk_jpeg=encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95),
        palette_png=encode(palette, "PNG", transparency=0),
        png16=encode(Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)), "PNG"),
        rgba_png=encode(rgba, "PNG"),
        la_png=encode(Image.new("LA", (8, 8), (0, 0)), "PNG"),
        gif=encode(halves(0, 1, mode="P"), "GIF"),
        webp=encode(red_blue, "WEBP"),
        bmp=encode(red_blue, "BMP"),
        tiff=encode(red_blue, "TIFF"),
        truncated_jpeg=jpeg[: len(jpeg) * 6 // 10],
        random_bytes=np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        pdf=b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        text=b"name,price\nred shirt,10\n",
        svg=b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>',
        gif_js_polyglot=b"GIF89a/*\x00\x00\x00\x00*/=alert(document.cookie);//",
        png_with_html_payload=encode(red_blue, "PNG") + b"<html><script>alert(1)</script></html>",
        bomb_png=png_claiming(50_000, 50_000),
        over_limit_png=png_claiming(7_000, 7_000),
        ppm=encode(red_blue, "PPM"),
    )
