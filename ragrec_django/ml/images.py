"""Defensive image decoding and CLIP-style preprocessing of image batches.

Untrusted bytes are opened header-first: the format must be on an allow-list
and the pixel count under a limit before any pixel is decoded. Decoded images
are oriented by EXIF, flattened to RGB (alpha composited on white) and
resized/cropped exactly like open_clip's inference transform.

Batches are decoded in a thread pool (PIL releases the GIL while decoding) one
batch ahead of the model. On CUDA, plain baseline JPEGs are decoded by nvJPEG
on the GPU instead. A bad image never fails its batch; it is reported by index.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .lazy import LazyModule

torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")

DEFAULT_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
EXIF_ORIENTATION = 0x0112
WHITE = (255, 255, 255)


class ImageDecodeError(ValueError):
    """Bytes that cannot be used as an image; ``reason`` says why, for people."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImagePolicy:
    """What untrusted image bytes are allowed to be."""

    formats: tuple[str, ...] = DEFAULT_IMAGE_FORMATS
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    @classmethod
    def build(cls, formats: Sequence[str] | None = None, max_pixels: int | None = None) -> "ImagePolicy":
        """Validate and normalise formats (PIL names, case-insensitive, "JPG"/"TIF" accepted)."""
        Image.init()
        names = []
        for name in DEFAULT_IMAGE_FORMATS if formats is None else formats:
            upper = FORMAT_ALIASES.get(str(name).upper(), str(name).upper())
            if upper not in Image.OPEN:
                raise ValueError("Unknown image format %r; Pillow can read: %s." % (name, ", ".join(sorted(Image.OPEN))))
            names.append(upper)
        if not names:
            raise ValueError("At least one image format must be allowed.")
        limit = DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
        if limit < 1:
            raise ValueError("max_pixels must be positive, got %r." % (max_pixels,))
        return cls(formats=tuple(dict.fromkeys(names)), max_pixels=limit)


@dataclass(frozen=True)
class Preprocessing:
    """Resize, crop and normalisation parameters of a CLIP image tower."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_open_clip(cls, cfg: dict) -> "Preprocessing":
        """Build from an open_clip ``model.visual.preprocess_cfg`` dict."""
        size = cfg["size"]
        size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        interpolation = cfg.get("interpolation") or "bicubic"
        resize_mode = cfg.get("resize_mode") or "shortest"
        if interpolation not in ("bicubic", "bilinear"):
            raise ValueError("Unsupported interpolation %r (use bicubic or bilinear)." % interpolation)
        if resize_mode not in ("shortest", "squash"):
            raise ValueError("Unsupported resize_mode %r (use shortest or squash)." % resize_mode)
        if resize_mode == "shortest" and size[0] != size[1]:
            raise ValueError("resize_mode 'shortest' needs a square image size, got %r." % (size,))
        return cls(
            size=size,
            mean=tuple(float(v) for v in _three(cfg["mean"])),
            std=tuple(float(v) for v in _three(cfg["std"])),
            interpolation=interpolation,
            resize_mode=resize_mode,
        )

    def describe(self) -> str:
        """Short stable text for encoder versions."""
        return "%dx%d-%s-%s-mean%s-std%s" % (
            self.size[0],
            self.size[1],
            self.resize_mode,
            self.interpolation,
            ",".join("%.4f" % v for v in self.mean),
            ",".join("%.4f" % v for v in self.std),
        )

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing, as torchvision's ``Resize`` computes it."""
        target_h, target_w = self.size
        if self.resize_mode == "squash":
            return target_w, target_h
        if width <= height:
            return target_w, int(target_w * height / width)
        return int(target_h * width / height), target_h

    def crop_origin(self, width: int, height: int) -> tuple[int, int]:
        """(left, top) of the centre crop in a resized image, as torchvision's ``CenterCrop``."""
        target_h, target_w = self.size
        return int(round((width - target_w) / 2.0)), int(round((height - target_h) / 2.0))


@dataclass
class PixelBatch:
    """Preprocessed pixels (n_ok, 3, H, W) on the device for ``indices``; ``errors`` by input index."""

    indices: list[int]
    pixels: torch.Tensor | None
    errors: dict[int, str]


def open_checked(data: bytes, policy: ImagePolicy) -> Image.Image:
    """Open image bytes header-only, enforcing the format allow-list and the pixel limit."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError("expected image file bytes, got %s" % type(data).__name__)
    if not data:
        raise ImageDecodeError("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=policy.formats)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            "image has too many pixels, far over the limit of %d (decompression bomb guard): %s" % (policy.max_pixels, exc)
        ) from exc
    except UnidentifiedImageError:
        raise ImageDecodeError(_unidentified_reason(data, policy)) from None
    except Exception as exc:  # malformed headers raise many different exception types
        raise ImageDecodeError("corrupt image header: %s" % _describe(exc)) from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageDecodeError("image has no pixels (%dx%d)" % (width, height))
    if width * height > policy.max_pixels:
        raise ImageDecodeError(
            "image is %dx%d = %d pixels, over the limit of %d (decompression bomb guard)"
            % (width, height, width * height, policy.max_pixels)
        )
    return image


def decode_image(data: bytes, policy: ImagePolicy) -> Image.Image:
    """Decode untrusted bytes to an upright RGB image or raise ``ImageDecodeError``."""
    image = open_checked(data, policy)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except Exception as exc:
        raise ImageDecodeError("truncated or corrupt %s image: %s" % (image.format, _describe(exc))) from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Flatten any PIL mode to 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    if (mode == "P" and "transparency" in image.info) or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError("unsupported colour mode %s" % mode) from exc


def load_pixels(data: bytes, policy: ImagePolicy, preprocessing: Preprocessing) -> np.ndarray:
    """Decode, resize and centre-crop to a uint8 (H, W, 3) array; raises ``ImageDecodeError``."""
    image = decode_image(data, policy)
    width, height = preprocessing.resized_size(*image.size)
    resample = Image.Resampling.BICUBIC if preprocessing.interpolation == "bicubic" else Image.Resampling.BILINEAR
    image = image.resize((width, height), resample)
    left, top = preprocessing.crop_origin(width, height)
    target_h, target_w = preprocessing.size
    image = image.crop((left, top, left + target_w, top + target_h))
    return np.array(image, dtype=np.uint8)


def normalize(pixels: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 normalised with the model's mean and std, on the same device."""
    mean = torch.tensor(preprocessing.mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, device=pixels.device).view(1, 3, 1, 1)
    return pixels.float().div_(255.0).sub_(mean).div_(std)


def iter_pixel_batches(
    images: Sequence[bytes],
    batch_size: int,
    policy: ImagePolicy,
    preprocessing: Preprocessing,
    device: torch.device,
    workers: int | None = None,
    gpu_jpeg: bool = True,
) -> Iterator[PixelBatch]:
    """Yield normalised pixel batches on ``device``, decoding the next batch while this one is used.

    With a CUDA ``device`` and ``gpu_jpeg``, JPEGs that pass the header checks
    are decoded with nvJPEG on the GPU; everything else goes through PIL.
    """
    if not images:
        return
    prepare = _prepare_for_gpu if gpu_jpeg and device.type == "cuda" else _prepare_on_cpu
    starts = range(0, len(images), batch_size)
    with ThreadPoolExecutor(max_workers=workers or default_decode_workers(), thread_name_prefix="ragrec-decode") as pool:

        def submit(start: int) -> list[Future]:
            return [pool.submit(prepare, data, policy, preprocessing) for data in images[start : start + batch_size]]

        pending = submit(starts[0])
        for position, start in enumerate(starts):
            current = pending
            pending = submit(starts[position + 1]) if position + 1 < len(starts) else []
            yield _assemble(start, current, images, policy, preprocessing, device, pool)


def default_decode_workers() -> int:
    """Decode threads used when none are configured: one per CPU, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


class _GpuJpeg:
    """Marker: these bytes passed the checks and will be decoded by nvJPEG."""


_GPU_JPEG = _GpuJpeg()


def _prepare_on_cpu(data: bytes, policy: ImagePolicy, preprocessing: Preprocessing) -> np.ndarray | ImageDecodeError:
    try:
        return load_pixels(data, policy, preprocessing)
    except ImageDecodeError as exc:
        return exc
    except Exception as exc:  # one image must never fail its batch
        return ImageDecodeError("cannot preprocess image: %s" % _describe(exc))


def _prepare_for_gpu(data: bytes, policy: ImagePolicy, preprocessing: Preprocessing):
    """Send plain, complete, upright RGB/grey JPEGs to nvJPEG; decode the rest on the CPU."""
    try:
        image = open_checked(data, policy)
    except ImageDecodeError as exc:
        return exc
    try:
        upright = image.getexif().get(EXIF_ORIENTATION, 1) == 1
    except Exception:  # unreadable EXIF: let the CPU path decide
        upright = False
    complete = bytes(data[-1024:]).rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L") and upright and complete:
        return _GPU_JPEG
    return _prepare_on_cpu(data, policy, preprocessing)


def _assemble(
    start: int,
    futures: list[Future],
    images: Sequence[bytes],
    policy: ImagePolicy,
    preprocessing: Preprocessing,
    device: torch.device,
    pool: ThreadPoolExecutor,
) -> PixelBatch:
    prepared = {start + offset: future.result() for offset, future in enumerate(futures)}
    gpu_indices = [i for i, item in prepared.items() if item is _GPU_JPEG]
    if gpu_indices:
        decoded = _decode_jpegs_on_gpu([images[i] for i in gpu_indices], preprocessing, device)
        if decoded is None:  # nvJPEG rejected the batch: let PIL decode and report each image
            retry = [pool.submit(_prepare_on_cpu, images[i], policy, preprocessing) for i in gpu_indices]
            prepared.update(zip(gpu_indices, (future.result() for future in retry)))
        else:
            prepared.update(zip(gpu_indices, decoded))
    errors = {i: item.reason for i, item in prepared.items() if isinstance(item, ImageDecodeError)}
    indices = [i for i in prepared if i not in errors]
    if not indices:
        return PixelBatch(indices=[], pixels=None, errors=errors)
    height, width = preprocessing.size
    pixels = torch.empty((len(indices), 3, height, width), dtype=torch.uint8, device=device)
    host_rows = [row for row, i in enumerate(indices) if isinstance(prepared[i], np.ndarray)]
    if host_rows:
        host = torch.empty((len(host_rows), height, width, 3), dtype=torch.uint8, pin_memory=device.type == "cuda")
        for slot, row in enumerate(host_rows):
            host[slot] = torch.from_numpy(prepared[indices[row]])
        rows = torch.tensor(host_rows, device=device)
        pixels[rows] = host.to(device, non_blocking=True).permute(0, 3, 1, 2)
    for row, i in enumerate(indices):
        if isinstance(prepared[i], torch.Tensor):
            pixels[row] = prepared[i]
    return PixelBatch(indices=indices, pixels=normalize(pixels, preprocessing), errors=errors)


def _decode_jpegs_on_gpu(
    blobs: list[bytes], preprocessing: Preprocessing, device: torch.device
) -> list[torch.Tensor] | None:
    """nvJPEG-decode, resize and crop on the GPU to uint8 (3, H, W); None if nvJPEG fails."""
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
    try:
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
    except (RuntimeError, ValueError):
        return None
    target_h, target_w = preprocessing.size
    results = []
    for image in decoded:
        height, width = image.shape[-2:]
        new_w, new_h = preprocessing.resized_size(width, height)
        resized = F.interpolate(
            image.unsqueeze(0).float(),
            size=(new_h, new_w),
            mode=preprocessing.interpolation,
            antialias=True,
            align_corners=False,
        )
        left, top = preprocessing.crop_origin(new_w, new_h)
        crop = resized[0, :, top : top + target_h, left : left + target_w]
        results.append(crop.round_().clamp_(0, 255).to(torch.uint8))
    return results


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit RGB, scaling instead of clipping."""
    values = np.asarray(image).astype(np.float32)
    if image.mode.startswith("I;16") or values.max(initial=0) > 255:
        values /= 257.0
    elif image.mode == "F" and values.max(initial=0) <= 1.0:
        values *= 255.0
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _unidentified_reason(data: bytes, policy: ImagePolicy) -> str:
    """Name the format of bytes PIL could not open within the allow-list, if it is an image at all."""
    allowed = ", ".join(policy.formats)
    try:
        with Image.open(io.BytesIO(data)) as other:
            found = other.format
    except Exception:
        return "not a recognised image file (allowed formats: %s)" % allowed
    return "image format %s is not allowed (allowed formats: %s)" % (found, allowed)


def _three(values) -> tuple:
    values = (values,) if isinstance(values, (int, float)) else tuple(values)
    return values * 3 if len(values) == 1 else values


def _describe(exc: Exception) -> str:
    return "%s: %s" % (type(exc).__name__, exc) if str(exc) else type(exc).__name__


def encode_image_bytes(images, *, encode, dimension: int, batch_size: int, policy, preprocessing, device, dtype,
                       workers=None):
    """Decode, preprocess and encode raw image bytes in batches with a model's image tower.

    ``encode(pixels) -> (n, dimension) tensor`` runs under inference mode and
    autocast to ``dtype`` (off for float32), in OOM-halving chunks; vectors are
    L2-normalised. Undecodable inputs are reported by index, never raised.
    """
    from .base import ImageBatchResult
    from .batching import OomBackoff
    from .devices import autocast

    images = list(images)
    vectors = np.zeros((len(images), dimension), dtype=np.float32)
    if not images:
        return ImageBatchResult(vectors=vectors)
    errors: dict[int, str] = {}
    backoff = OomBackoff(batch_size)
    with torch.inference_mode():
        for batch in iter_pixel_batches(images, batch_size, policy, preprocessing, device, workers):
            errors.update(batch.errors)
            if batch.indices:
                with autocast(device, dtype):
                    encoded = backoff.run(lambda pixels: F.normalize(encode(pixels).float(), dim=-1), batch.pixels)
                vectors[batch.indices] = encoded.cpu().numpy()
    return ImageBatchResult(vectors=vectors, errors=dict(sorted(errors.items())))
