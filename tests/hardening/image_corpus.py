"""Hostile images for every format on the allow-list (JPEG, PNG, WEBP, GIF, BMP, TIFF), built in code.

Each case is a builder (bytes are made when a test asks, some take a second) and what decoding it must give:
``OK`` (a normal 224 x 224 array) or a piece of the ``ImageDecodeError`` reason. The shapes:

* at the pixel limit but long and thin: 4,000,000 x 10 and 10 x 4,000,000 where the format allows such a
  side (PNG, BMP, TIFF), else the longest it allows at the pixel limit (JPEG 65,500, GIF 65,535) or at
  all (WebP: 16,383);
* just over a limit: pixels (6,325 x 6,325), a side (16,385) and the elongation (2,100 x 100);
* the largest an image may be and still decode (near ``MAX_DECODE_BYTES``), EXIF-rotated where the
  format has EXIF: these measure the bound, the rest are refused from the header;
* 16-bit and float: PNG I;16, TIFF F, I;16 and I (32-bit), one-strip TIFFs (libtiff buffers the strip);
* huge declared sizes over tiny data: a PNG, JPEG, GIF, BMP and TIFF header claiming 50,000 x 50,000,
  a WebP canvas (libwebp allocates it when the file is opened);
* many frames: GIF, WebP, PNG (APNG) and TIFF animations of 300-2,000 frames, and 10 of 2,000 x 2,000;
* decoder buffers: progressive JPEGs (all DCT coefficients held), a PNG with 64 compressed text chunks.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import numpy as np
from PIL import Image, TiffImagePlugin

from ragrec_django.ml.images import DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE
from tests.ml.samples import png_chunk, png_claiming

OK = "ok"
SIDE = "a side over the limit of %d" % MAX_IMAGE_SIDE
ELONGATED = "more elongated than the limit"
PIXELS = "over the limit of %d (decompression bomb guard)" % DEFAULT_MAX_IMAGE_PIXELS
MEMORY = "of memory, over the limit of"
JUST_OVER = 6_325  # 6,325 x 6,325 = 40,005,625 pixels
ROTATED = 6  # EXIF orientation "rotate 90 degrees clockwise": the decode makes a rotated copy


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def exif(orientation: int = ROTATED) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


def plain(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """One colour: memory depends on the size and mode, not the content, and plain images encode fast.

    "P" has a colourful palette (a grey one would be read back as "L").
    """
    if mode == "P":
        image = Image.new("P", (width, height), 1)
        image.putpalette([0, 0, 0, 200, 40, 10] + [0, 0, 255] * 254)
        return image
    return Image.new(mode, (width, height), {"L": 120, "CMYK": (0, 80, 200, 0)}.get(mode, (200, 40, 10)))


def grey(width: int, height: int, dtype, value: float) -> Image.Image:
    """A 16-bit, 32-bit or float greyscale image."""
    return Image.fromarray(np.full((height, width), value, dtype=dtype))


# ------------------------------------------------------------------ hand-made files


def png(width: int, height: int, colour_type: int = 2, bit_depth: int = 8, extra_chunks: bytes = b"") -> bytes:
    """A valid black PNG of any size, compressed as it is built (4,000,000 x 10 RGB is ~120 KB)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    raw_size = (1 + width * channels * bit_depth // 8) * height  # filter byte 0 and black pixels: all zeros
    compressor = zlib.compressobj(9)
    block = bytes(1 << 24)
    parts = []
    for start in range(0, raw_size, len(block)):
        parts.append(compressor.compress(block[: min(len(block), raw_size - start)]))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + extra_chunks
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def png_text_bomb(chunks: int = 63) -> bytes:
    """A small PNG with ``chunks`` zTXt chunks of 1 MB each once inflated (PIL refuses more than 64 MB)."""
    text = b"".join(png_chunk(b"zTXt", b"comment%d\0\0" % i + zlib.compress(bytes(1 << 20), 9)) for i in range(chunks))
    return png(64, 64, extra_chunks=text)


def bmp_rle8(width: int, height: int) -> bytes:
    """A valid 8-bit RLE BMP of any size: "skip" codes down to the last row, runs of 255 black pixels on it."""
    skips = b"".join(b"\x00\x02\x00" + bytes([min(255, height - 1 - row)]) for row in range(0, height - 1, 255))
    runs = b"".join(b"%c\x00" % min(255, width - x) for x in range(0, width, 255))
    data = skips + runs + b"\x00\x01"  # end of bitmap
    palette = b"".join(struct.pack("<BBBB", i, i, i, 0) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("L", (16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    """A small real GIF whose logical screen is rewritten to ``width`` x ``height``."""
    data = bytearray(encode(Image.new("P", (16, 16)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def tiff_claiming(width: int, height: int) -> bytes:
    """A small real TIFF (one deflate strip) whose ImageWidth and ImageLength tags are rewritten."""
    data = bytearray(encode(Image.new("L", (16, 16)), "TIFF", compression="tiff_deflate"))
    ifd = struct.unpack("<I", data[4:8])[0]
    for entry in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        at = ifd + 2 + 12 * entry
        tag, kind = struct.unpack("<HH", data[at : at + 4])
        value = {256: width, 257: height, 278: height}.get(tag)
        if value is not None:
            data[at + 2 : at + 12] = struct.pack("<HII", 4, 1, value)  # LONG
    return bytes(data)


def webp_canvas(width: int, height: int) -> bytes:
    """A valid animated WebP: a ``width`` x ``height`` canvas holding one 1 x 1 frame (under 100 bytes)."""

    def u24(value: int) -> bytes:
        return struct.pack("<I", value)[:3]

    frame = encode(Image.new("RGB", (1, 1)), "WEBP", lossless=True)[12:]  # its VP8L chunk
    anmf = u24(0) + u24(0) + u24(0) + u24(0) + u24(100) + b"\x00" + frame  # at (0, 0), 1 x 1, 100 ms
    chunks = (
        b"VP8X"
        + struct.pack("<I", 10)
        + b"\x02\x00\x00\x00"
        + u24(width - 1)
        + u24(height - 1)  # animated
        + b"ANIM"
        + struct.pack("<I", 6)
        + struct.pack("<IH", 0, 0)
        + b"ANMF"
        + struct.pack("<I", len(anmf))
        + anmf
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def frames(fmt: str, count: int, size: tuple[int, int] = (32, 32), **params) -> bytes:
    images = [Image.new("RGB", size, (i % 256, 0, 0)) for i in range(count)]
    if fmt == "GIF":
        images = [image.convert("P") for image in images]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], **params)


def one_strip_tiff(image: Image.Image, **params) -> bytes:
    """A compressed TIFF written as a single strip: libtiff buffers the whole strip while it decodes."""
    saved = TiffImagePlugin.STRIP_SIZE
    TiffImagePlugin.STRIP_SIZE = 1 << 31
    try:
        return encode(image, "TIFF", compression="tiff_deflate", **params)
    finally:
        TiffImagePlugin.STRIP_SIZE = saved


# ------------------------------------------------------------------ the corpus

Case = tuple[Callable[[], bytes], str]
CASES: dict[str, Case] = {
    # At the pixel limit, long and thin (the reported 9 GB attack is the first one).
    "png_4000000x10": (lambda: png(4_000_000, 10), SIDE),
    "png_10x4000000": (lambda: png(10, 4_000_000), SIDE),
    "bmp_4000000x10": (lambda: bmp_rle8(4_000_000, 10), SIDE),
    "bmp_10x4000000": (lambda: bmp_rle8(10, 4_000_000), SIDE),
    "tiff_4000000x10": (lambda: encode(Image.new("L", (4_000_000, 10)), "TIFF", compression="tiff_deflate"), SIDE),
    "tiff_10x4000000": (lambda: encode(Image.new("L", (10, 4_000_000)), "TIFF", compression="tiff_deflate"), SIDE),
    "jpeg_65500x610": (lambda: encode(Image.new("L", (65_500, 610)), "JPEG"), SIDE),  # libjpeg's longest side
    "jpeg_610x65500": (lambda: encode(Image.new("L", (610, 65_500)), "JPEG"), SIDE),
    "gif_65535x610": (lambda: encode(Image.new("P", (65_535, 610)), "GIF"), SIDE),
    "gif_610x65535": (lambda: encode(Image.new("P", (610, 65_535)), "GIF"), SIDE),
    "webp_16383x16": (lambda: encode(Image.new("RGB", (16_383, 16)), "WEBP", lossless=True), ELONGATED),
    "webp_16x16383": (lambda: encode(Image.new("RGB", (16, 16_383)), "WEBP", lossless=True), ELONGATED),
    # Just over a limit.
    "png_over_pixels": (lambda: png(JUST_OVER, JUST_OVER), PIXELS),
    "jpeg_over_pixels": (lambda: encode(Image.new("L", (JUST_OVER, JUST_OVER)), "JPEG"), PIXELS),
    "gif_over_pixels": (lambda: encode(Image.new("P", (JUST_OVER, JUST_OVER)), "GIF"), PIXELS),
    "bmp_over_pixels": (lambda: bmp_rle8(JUST_OVER, JUST_OVER), PIXELS),
    "tiff_over_pixels": (
        lambda: encode(Image.new("L", (JUST_OVER, JUST_OVER)), "TIFF", compression="tiff_deflate"),
        PIXELS,
    ),
    "webp_over_pixels": (lambda: webp_canvas(JUST_OVER, JUST_OVER), PIXELS),
    "png_over_side": (lambda: png(MAX_IMAGE_SIDE + 1, 1_000), SIDE),
    "jpeg_over_side": (lambda: encode(Image.new("L", (1_000, MAX_IMAGE_SIDE + 1)), "JPEG"), SIDE),
    "png_over_aspect": (lambda: png(2_100, 100), ELONGATED),
    "gif_over_aspect": (lambda: encode(Image.new("P", (100, 2_100)), "GIF"), ELONGATED),
    "webp_over_aspect": (lambda: encode(Image.new("RGB", (2_100, 100)), "WEBP"), ELONGATED),
    "bmp_over_aspect": (lambda: bmp_rle8(2_100, 100), ELONGATED),
    "tiff_over_aspect": (lambda: encode(Image.new("RGB", (100, 2_100)), "TIFF"), ELONGATED),
    "jpeg_over_aspect": (lambda: encode(Image.new("RGB", (2_100, 100)), "JPEG"), ELONGATED),
    # The largest that still decodes (EXIF rotation adds a full copy); these measure the bound.
    "png_rgb_4000x4000_rotated": (lambda: encode(plain(4_000, 4_000), "PNG", exif=exif(), compress_level=1), OK),
    "png_rgba_4000x4000_rotated": (
        lambda: encode(plain(4_000, 4_000, "RGBA"), "PNG", exif=exif(), compress_level=1),
        OK,
    ),
    "png_palette_transparent_3800x3800": (lambda: encode(plain(3_800, 3_800, "P"), "PNG", transparency=0), OK),
    "png_rgb_4500x4500_over_memory": (lambda: png(4_500, 4_500), MEMORY),
    "jpeg_16380x819_rotated": (lambda: encode(plain(16_380, 819), "JPEG", exif=exif()), OK),
    "jpeg_8000x5000_at_reduced_scale": (lambda: encode(plain(8_000, 5_000), "JPEG"), OK),
    "jpeg_progressive_6000x4000": (lambda: encode(plain(6_000, 4_000), "JPEG", progressive=True), OK),
    "jpeg_progressive_444_6000x4000": (
        lambda: encode(plain(6_000, 4_000), "JPEG", progressive=True, subsampling=0),
        MEMORY,
    ),
    "jpeg_cmyk_16380x819_rotated": (lambda: encode(plain(16_380, 819, "CMYK"), "JPEG", exif=exif()), OK),
    "webp_2800x2800_rotated": (lambda: encode(plain(2_800, 2_800), "WEBP", exif=exif()), OK),
    "webp_4000x3000_over_memory": (lambda: encode(plain(4_000, 3_000), "WEBP"), MEMORY),
    "gif_3800x3800_transparent": (lambda: encode(plain(3_800, 3_800, "P"), "GIF", transparency=0), OK),
    "bmp_3000x3000": (lambda: encode(plain(3_000, 3_000), "BMP"), OK),
    "tiff_rgb_3200x3200_one_strip_rotated": (lambda: one_strip_tiff(plain(3_200, 3_200), exif=exif()), OK),
    # 16-bit and float.
    "png_i16_6000x6000": (lambda: encode(grey(6_000, 6_000, np.uint16, 40_000), "PNG", compress_level=1), OK),
    "png_rgb48_4000x4000": (lambda: png(4_000, 4_000, bit_depth=16), OK),
    "tiff_f_3200x3200_one_strip_rotated": (
        lambda: one_strip_tiff(grey(3_200, 3_200, np.float32, 0.5), exif=exif()),
        OK,
    ),
    "tiff_f_6000x6000_over_memory": (
        lambda: encode(grey(6_000, 6_000, np.float32, 0.5), "TIFF", compression="tiff_deflate"),
        MEMORY,
    ),
    "tiff_i16_6000x6000": (
        lambda: encode(grey(6_000, 6_000, np.uint16, 40_000), "TIFF", compression="tiff_deflate"),
        OK,
    ),
    "tiff_i32_4000x4000": (
        lambda: encode(grey(4_000, 4_000, np.int32, 100_000), "TIFF", compression="tiff_deflate"),
        OK,
    ),
    # Huge declared sizes over tiny data.
    "png_claims_50000x50000": (lambda: png_claiming(50_000, 50_000), "far over the limit"),
    "jpeg_claims_50000x50000": (lambda: jpeg_claiming(50_000, 50_000), "far over the limit"),
    "gif_claims_50000x50000": (lambda: gif_claiming(50_000, 50_000), "far over the limit"),
    "bmp_claims_50000x50000": (lambda: bmp_rle8(50_000, 50_000), "far over the limit"),
    "tiff_claims_50000x50000": (lambda: tiff_claiming(50_000, 50_000), "far over the limit"),
    "webp_canvas_16383x16383": (lambda: webp_canvas(16_383, 16_383), PIXELS),
    "webp_canvas_12000x3000": (lambda: webp_canvas(12_000, 3_000), MEMORY),
    # Many frames (only the first is decoded).
    "gif_2000_frames": (lambda: frames("GIF", 2_000), OK),
    "webp_300_frames": (lambda: frames("WEBP", 300, lossless=True), OK),
    "apng_1000_frames": (lambda: frames("PNG", 1_000), OK),
    "tiff_1000_pages": (lambda: frames("TIFF", 1_000), OK),
    "gif_2000x2000_10_frames": (lambda: frames("GIF", 10, (2_000, 2_000)), OK),
    # Decoder side buffers.
    "png_63_text_chunks_of_1mb": (png_text_bomb, OK),
}
