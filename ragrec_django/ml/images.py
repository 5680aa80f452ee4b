"""Defensive image decoding and CLIP-style preprocessing of image batches.

Untrusted bytes are opened header-first. Before any pixel is decoded the format
must be on an allow-list and the image within three shape limits (pixels, each
side, elongation) and one memory limit: ``estimated_decode_bytes`` adds up, from
the header, what the decoder and every later step hold at once (the decoded
pixels at their mode's bytes per pixel, decoder buffers such as a progressive
JPEG's coefficients or WebP's canvases, the 8-bit copy of a 16-bit or float
image, the EXIF-rotated copy, the resize buffers); over ``max_decode_bytes`` the
image is refused with an ``ImageDecodeError``. A JPEG is decoded at the
smallest DCT scale (1/2, 1/4 or 1/8, ``Image.draft``) that still covers the
resized size, so the resize only ever shrinks.

Decoded images are flattened to 8 bits (alpha composited on white, 16-bit and
float images scaled in row bands, never as one float copy), oriented by EXIF
and resized/cropped exactly like open_clip's inference transform; the elongation
limit keeps the resized intermediate within ``max_aspect`` times the output.

Batches are decoded one batch ahead of the model, in a thread pool (PIL releases
the GIL while decoding) or, with ``decode_pool="processes"``, in a process pool
started once per process and reused. On CUDA, plain baseline JPEGs are decoded by nvJPEG
on the GPU instead. A bad image never fails its batch; it is reported by index.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .batching import discard_process_pool, shared_process_pool
from .lazy import LazyModule

torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")

DECODE_POOLS = ("threads", "processes")
DEFAULT_IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_SIDE = 16_384  # pixels, either side (WebP's own maximum is 16,383)
MAX_IMAGE_ASPECT = 20  # long side / short side: a 20:1 banner still works, a 4,000,000 x 10 strip does not
MAX_DECODE_BYTES = 128 * 1024 * 1024  # what one decode may hold at once, as estimated_decode_bytes counts it
FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF"}
EXIF_ORIENTATION = 0x0112
ORIENTATION_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
WHITE = (255, 255, 255)
MB = 1024 * 1024
HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")
GREY_MODES = HIGH_DEPTH_MODES + ("1", "L")  # flattened to "L"; everything else to "RGB"
GREY_BAND_PIXELS = 1 << 18  # rows converted at a time from 16-bit or float to 8 bits
WEBP_CANVAS_BYTES = 8  # libwebp's animation decoder keeps two RGBA canvases
NVJPEG_BYTES_PER_PIXEL = 16  # uint8 RGB from nvJPEG, its float32 copy, the antialiased resize's first pass
BMP_RLE8, BMP_RLE4 = 1, 2
TIFF_BITS_PER_SAMPLE, TIFF_SAMPLES_PER_PIXEL, TIFF_ROWS_PER_STRIP = 258, 277, 278
TIFF_TILE_WIDTH, TIFF_TILE_LENGTH = 322, 323


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
    max_side: int = MAX_IMAGE_SIDE
    max_aspect: float = MAX_IMAGE_ASPECT
    max_decode_bytes: int = MAX_DECODE_BYTES

    @classmethod
    def build(
        cls,
        formats: Sequence[str] | None = None,
        max_pixels: int | None = None,
        *,
        max_side: int = MAX_IMAGE_SIDE,
        max_aspect: float = MAX_IMAGE_ASPECT,
        max_decode_bytes: int = MAX_DECODE_BYTES,
    ) -> ImagePolicy:
        """Validate and normalise formats (PIL names, case-insensitive, "JPG"/"TIF" accepted) and limits."""
        Image.init()
        names = []
        for name in DEFAULT_IMAGE_FORMATS if formats is None else formats:
            upper = FORMAT_ALIASES.get(str(name).upper(), str(name).upper())
            if upper not in Image.OPEN:
                raise ValueError(
                    "Unknown image format %r; Pillow can read: %s." % (name, ", ".join(sorted(Image.OPEN)))
                )
            names.append(upper)
        if not names:
            raise ValueError("At least one image format must be allowed.")
        limit = DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
        if limit < 1:
            raise ValueError("max_pixels must be positive, got %r." % (max_pixels,))
        if int(max_side) < 1 or float(max_aspect) < 1 or int(max_decode_bytes) < 1:
            raise ValueError("max_side and max_decode_bytes must be positive and max_aspect at least 1.")
        return cls(
            formats=tuple(dict.fromkeys(names)),
            max_pixels=limit,
            max_side=int(max_side),
            max_aspect=float(max_aspect),
            max_decode_bytes=int(max_decode_bytes),
        )


@dataclass(frozen=True)
class Preprocessing:
    """Resize, crop and normalisation parameters of a CLIP image tower."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_open_clip(cls, cfg: dict) -> Preprocessing:
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
    """Open image bytes header-only, enforcing the format allow-list and the shape limits."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageDecodeError("expected image file bytes, got %s" % type(data).__name__)
    if not data:
        raise ImageDecodeError("empty file")
    webp_size = _webp_canvas_size(data) if "WEBP" in policy.formats else None
    if webp_size is not None:  # libwebp allocates its canvases when the file is opened: check before
        check_shape(*webp_size, policy)
        if webp_size[0] * webp_size[1] * WEBP_CANVAS_BYTES > policy.max_decode_bytes:
            raise ImageDecodeError(
                _over_budget(webp_size, "WEBP", webp_size[0] * webp_size[1] * WEBP_CANVAS_BYTES, policy)
            )
    try:
        image = Image.open(io.BytesIO(data), formats=policy.formats)
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(
            "image has too many pixels, far over the limit of %d (decompression bomb guard): %s"
            % (policy.max_pixels, exc)
        ) from exc
    except UnidentifiedImageError:
        raise ImageDecodeError(_unidentified_reason(data, policy)) from None
    except Exception as exc:  # malformed headers raise many different exception types
        raise ImageDecodeError("corrupt image header: %s" % _describe(exc)) from exc
    check_shape(*image.size, policy)
    return image


def check_shape(width: int, height: int, policy: ImagePolicy) -> None:
    """Refuse a declared size with no pixels, too many pixels, a side too long or too elongated a shape."""
    if width < 1 or height < 1:
        raise ImageDecodeError("image has no pixels (%dx%d)" % (width, height))
    if width * height > policy.max_pixels:
        raise ImageDecodeError(
            "image is %dx%d = %d pixels, over the limit of %d (decompression bomb guard)"
            % (width, height, width * height, policy.max_pixels)
        )
    if max(width, height) > policy.max_side:
        raise ImageDecodeError("image is %dx%d pixels, a side over the limit of %d" % (width, height, policy.max_side))
    if max(width, height) > policy.max_aspect * min(width, height):
        raise ImageDecodeError(
            "image is %dx%d pixels, more elongated than the limit of %g:1" % (width, height, policy.max_aspect)
        )


def decode_image(data: bytes, policy: ImagePolicy) -> Image.Image:
    """Decode untrusted bytes to an upright full-size RGB image or raise ``ImageDecodeError``."""
    image = open_checked(data, policy)
    _check_budget(image, data, image.size, policy, None)
    orientation = _load(image)
    image = flatten(image)  # rebinding releases the decoded pixels before the rotated copy is made
    image = _upright(image, orientation)
    return image if image.mode == "RGB" else image.convert("RGB")


def load_pixels(data: bytes, policy: ImagePolicy, preprocessing: Preprocessing) -> np.ndarray:
    """Decode, resize and centre-crop to a uint8 (H, W, 3) array; raises ``ImageDecodeError``.

    A JPEG at least twice the resized size (448 pixels on its short side for a
    224 model) is decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that still
    covers the resized size (``jpeg_draft_size``): an 800x800 JPEG at 400x400, a
    3000x2000 one at 375x250. On photographs the embeddings stay within a cosine
    of 0.999 of the full-size decode's (tests/ml/test_images.py, docs/benchmarks.md).
    Everything else is pixel-identical to decoding whole, flattening, rotating,
    resizing and cropping as open_clip does.
    """
    image = open_checked(data, policy)
    source_size = image.size
    if image.format in ("JPEG", "MPO"):
        image.draft(None, jpeg_draft_size(preprocessing, *source_size))
    _check_budget(image, data, source_size, policy, preprocessing)
    orientation = _load(image)
    image = flatten(image)  # rebinding releases the decoded pixels before the rotated copy is made
    image = _upright(image, orientation)
    width, height = preprocessing.resized_size(*image.size)
    resample = Image.Resampling.BICUBIC if preprocessing.interpolation == "bicubic" else Image.Resampling.BILINEAR
    image = image.resize((width, height), resample)
    left, top = preprocessing.crop_origin(width, height)
    target_h, target_w = preprocessing.size
    image = image.crop((left, top, left + target_w, top + target_h))
    return np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def jpeg_draft_size(preprocessing: Preprocessing, width: int, height: int) -> tuple[int, int]:
    """The least (width, height) a ``width`` x ``height`` JPEG may be decoded at: its resized size.

    Taken in both orientations, since the EXIF orientation is applied after decoding.
    ``Image.draft`` then picks the largest reduction whose result is at least this size.
    """
    upright_w, upright_h = preprocessing.resized_size(width, height)
    turned_w, turned_h = preprocessing.resized_size(height, width)
    return max(upright_w, turned_h), max(upright_h, turned_w)


def flatten(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit "L" (grey, bilevel, 16-bit, float) or "RGB"; transparency is composited on white."""
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in HIGH_DEPTH_MODES:
        return _high_depth_to_grey(image)
    if mode == "1":
        return image.convert("L")
    if mode in ("RGBA", "LA") or _needs_rgba(image):
        rgba = image if mode in ("RGBA", "LA") else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, WHITE)
        flat.paste(rgba, mask=rgba)  # the mask is the alpha band
        return flat
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageDecodeError("unsupported colour mode %s" % mode) from exc


def estimated_decode_bytes(
    image: Image.Image, data: bytes, source_size: tuple[int, int], preprocessing: Preprocessing | None = None
) -> int:
    """Upper estimate of the memory decoding an opened (not yet loaded) image holds at once, in bytes.

    ``image.size`` is the size to be decoded (after any JPEG draft), ``source_size``
    the size in the file. The peak is the largest of the steps: decoding (pixels
    plus the decoder's buffers), flattening to 8 bits, the EXIF-rotated copy
    (always counted: a PNG may name its orientation after the pixels) and, with
    ``preprocessing``, the two resize passes (without it, the full-size RGB copy
    ``decode_image`` returns). Metadata already read (text chunks, profiles) is
    added on top.
    """
    width, height = image.size
    pixels = width * height
    decoded = pixels * _bytes_per_pixel(image.mode)
    held, transient = _decoder_buffers(image, data, source_size)
    flat = pixels * (1 if image.mode in GREY_MODES else 4)
    if image.mode in ("RGB", "L"):
        converting, after_flatten = 0, decoded + held
    elif image.mode in HIGH_DEPTH_MODES:
        band = GREY_BAND_PIXELS * (3 * _bytes_per_pixel(image.mode) + 6)  # crop, its bytes, float32 and uint8 copies
        converting, after_flatten = flat + band, flat
    elif image.mode not in ("RGBA", "LA") and _needs_rgba(image):
        converting, after_flatten = 4 * pixels + flat, flat
    else:
        converting, after_flatten = flat, flat
    steps = [decoded + held + transient, decoded + held + converting, after_flatten + flat]
    if preprocessing is None and image.mode in GREY_MODES:  # decode_image turns the whole grey image to RGB
        steps.append(flat + 4 * pixels)
    if preprocessing is not None:
        per_pixel = flat // pixels
        steps.append(
            after_flatten
            + per_pixel
            * max(_resize_pixels(preprocessing, width, height), _resize_pixels(preprocessing, height, width))
        )
    return max(steps) + _metadata_bytes(image)


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
    decode_pool: str = "threads",
) -> Iterator[PixelBatch]:
    """Yield normalised pixel batches on ``device``, decoding the next batch while this one is used.

    ``workers`` threads or processes (``decode_pool``) decode. With a CUDA ``device``
    and ``gpu_jpeg``, JPEGs that pass the header checks are decoded with nvJPEG on
    the GPU; everything else goes through PIL.
    """
    if not images:
        return
    prepare = _prepare_for_gpu if gpu_jpeg and device.type == "cuda" else _prepare_on_cpu
    starts = range(0, len(images), batch_size)
    with Decoder(decode_pool, workers or default_decode_workers()) as decoder:

        def submit(start: int) -> list[Callable[[], object]]:
            return [decoder.submit(prepare, data, policy, preprocessing) for data in images[start : start + batch_size]]

        pending = submit(starts[0])
        for position, start in enumerate(starts):
            current = pending
            pending = submit(starts[position + 1]) if position + 1 < len(starts) else []
            yield _assemble(start, current, images, policy, preprocessing, device, decoder)


def default_decode_workers() -> int:
    """Decode threads or processes used when none are configured: one per CPU, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def check_decode_pool(name: str) -> str:
    """``name`` if it is one of ``DECODE_POOLS``, else ``ValueError``."""
    if name not in DECODE_POOLS:
        raise ValueError("decode_pool must be one of %s, got %r." % (", ".join(DECODE_POOLS), name))
    return name


class Decoder:
    """Runs decode jobs in a thread pool made for one call, or in this process's shared process pool.

    ``submit`` starts a job and returns a function that waits for its result. Processes
    suit many cores, where threads stop scaling: the Python between Pillow's GIL-free
    decode and resize runs one thread at a time. When a decode process dies (the OOM killer, a codec crash), the jobs it broke are
    submitted again one at a time, each waited for; an image whose job breaks the new
    pool too is reported as an ``ImageDecodeError``, never raised.
    """

    def __init__(self, kind: str, workers: int):
        self.workers = workers
        threaded = check_decode_pool(kind) == "threads"
        self.threads = ThreadPoolExecutor(workers, thread_name_prefix="ragrec-decode") if threaded else None

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.threads is not None:
            self.threads.shutdown(wait=True)

    def submit(self, job: Callable, data, *args) -> Callable[[], object]:
        """Start ``job(data, *args)``; return a function that waits for and returns its result."""
        if self.threads is not None:
            return self.threads.submit(job, data, *args).result
        data = bytes(data) if isinstance(data, memoryview) else data  # a memoryview cannot be pickled
        pool = shared_process_pool(self.workers)
        try:
            future = pool.submit(job, data, *args)
        except BrokenProcessPool:  # a process died in an earlier batch: start again
            discard_process_pool(pool)
            pool = shared_process_pool(self.workers)
            future = pool.submit(job, data, *args)

        def result():
            try:
                return future.result()
            except BrokenProcessPool:
                discard_process_pool(pool)
                return self._again(job, data, *args)
            except Exception as exc:  # e.g. an input that cannot be pickled: it must not fail its batch
                return ImageDecodeError("cannot preprocess image: %s" % _describe(exc))

        return result

    def _again(self, job: Callable, data, *args):
        pool = shared_process_pool(self.workers)
        try:
            return pool.submit(job, data, *args).result()
        except BrokenProcessPool:
            discard_process_pool(pool)
            return ImageDecodeError("the process decoding this image died (out of memory, or a crash in the codec)")


class _GpuJpeg:
    """Marker: these bytes passed the checks and will be decoded by nvJPEG."""

    def __reduce__(self):
        return "_GPU_JPEG"  # the one marker, also when it comes back from a decode process


_GPU_JPEG = _GpuJpeg()


def _prepare_on_cpu(data: bytes, policy: ImagePolicy, preprocessing: Preprocessing) -> np.ndarray | ImageDecodeError:
    try:
        return load_pixels(data, policy, preprocessing)
    except ImageDecodeError as exc:
        return exc
    except Exception as exc:  # one image must never fail its batch
        return ImageDecodeError("cannot preprocess image: %s" % _describe(exc))


def _prepare_for_gpu(data: bytes, policy: ImagePolicy, preprocessing: Preprocessing):
    """Send plain, complete, upright RGB/grey JPEGs to nvJPEG; decode the rest on the CPU.

    nvJPEG decodes at full size and resizes in float32 (``NVJPEG_BYTES_PER_PIXEL``
    of GPU memory); a JPEG too large for ``max_decode_bytes`` that way is decoded
    on the CPU, at a reduced DCT scale.
    """
    try:
        image = open_checked(data, policy)
    except ImageDecodeError as exc:
        return exc
    try:
        upright = image.getexif().get(EXIF_ORIENTATION, 1) == 1
    except Exception:  # unreadable EXIF: let the CPU path decide
        upright = False
    complete = bytes(data[-1024:]).rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    small = image.width * image.height * NVJPEG_BYTES_PER_PIXEL <= policy.max_decode_bytes
    if image.format in ("JPEG", "MPO") and image.mode in ("RGB", "L") and upright and complete and small:
        return _GPU_JPEG
    return _prepare_on_cpu(data, policy, preprocessing)


def _assemble(
    start: int,
    results: list[Callable[[], object]],
    images: Sequence[bytes],
    policy: ImagePolicy,
    preprocessing: Preprocessing,
    device: torch.device,
    decoder: Decoder,
) -> PixelBatch:
    prepared = {start + offset: result() for offset, result in enumerate(results)}
    gpu_indices = [i for i, item in prepared.items() if item is _GPU_JPEG]
    if gpu_indices:
        decoded = _decode_jpegs_on_gpu([images[i] for i in gpu_indices], preprocessing, device)
        if decoded is None:  # nvJPEG rejected the batch: let PIL decode and report each image
            retry = [decoder.submit(_prepare_on_cpu, images[i], policy, preprocessing) for i in gpu_indices]
            prepared.update(zip(gpu_indices, (result() for result in retry), strict=True))
        else:
            prepared.update(zip(gpu_indices, decoded, strict=True))
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


def _load(image: Image.Image) -> int:
    """Decode the pixels; return the EXIF orientation (1 when there is none)."""
    try:
        image.load()
        return image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as exc:
        raise ImageDecodeError("truncated or corrupt %s image: %s" % (image.format, _describe(exc))) from exc


def _upright(image: Image.Image, orientation: int) -> Image.Image:
    transpose = ORIENTATION_TRANSPOSES.get(orientation)
    return image.transpose(transpose) if transpose is not None else image


def _check_budget(
    image: Image.Image,
    data: bytes,
    source_size: tuple[int, int],
    policy: ImagePolicy,
    preprocessing: Preprocessing | None,
) -> None:
    cost = estimated_decode_bytes(image, data, source_size, preprocessing)
    if cost > policy.max_decode_bytes:
        raise ImageDecodeError(_over_budget(image.size, "%s %s" % (image.mode, image.format), cost, policy))


def _over_budget(size: tuple[int, int], kind: str, cost: int, policy: ImagePolicy) -> str:
    return "decoding this %dx%d %s image would take about %d MB of memory, over the limit of %d MB" % (
        size[0],
        size[1],
        kind,
        -(-cost // MB),
        policy.max_decode_bytes // MB,
    )


def _high_depth_to_grey(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float greyscale -> 8-bit "L", scaling instead of clipping, in bands of rows.

    Values above 255 (and every 16-bit image) are divided by 257; a float image
    whose values stay within [0, 1] is multiplied by 255; the rest is clipped.
    """
    peak = max((band.max(initial=0) for _, band in _float_bands(image)), default=0)
    divide = image.mode.startswith("I;16") or peak > 255
    multiply = not divide and image.mode == "F" and peak <= 1.0
    grey = Image.new("L", image.size)
    for top, band in _float_bands(image):
        if divide:
            band /= 257.0
        elif multiply:
            band *= 255.0
        np.rint(band, out=band)
        np.clip(band, 0, 255, out=band)
        grey.paste(Image.fromarray(band.astype(np.uint8)), (0, top))
    return grey


def _float_bands(image: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """(top row, float32 copy) of successive bands of about ``GREY_BAND_PIXELS`` pixels."""
    width, height = image.size
    rows = max(1, GREY_BAND_PIXELS // width)
    for top in range(0, height, rows):
        yield top, np.array(image.crop((0, top, width, min(height, top + rows))), dtype=np.float32)


def _needs_rgba(image: Image.Image) -> bool:
    """Modes whose transparency must go through RGBA before it is composited on white."""
    return image.mode in ("PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)


def _bytes_per_pixel(mode: str) -> int:
    """Bytes per pixel of ``mode`` in PIL's memory (RGB is stored in 4 bytes)."""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def _decoder_buffers(image: Image.Image, data: bytes, source_size: tuple[int, int]) -> tuple[int, int]:
    """(bytes the decoder keeps while the image lives, bytes it holds only while decoding)."""
    width, height = source_size
    if image.format == "WEBP":  # two RGBA canvases in libwebp, and each frame is handed over as bytes
        return width * height * WEBP_CANVAS_BYTES, width * height * 4
    if image.format in ("JPEG", "MPO") and bytes(data).count(b"\xff\xda") > 1:
        return 0, _jpeg_coefficient_bytes(image, width, height)  # progressive or multi-scan: all coefficients
    if image.format == "TIFF":  # PIL rotates a TIFF by its orientation as it loads, while the strip is held
        rotated = width * height * _bytes_per_pixel(image.mode) if image.tag_v2.get(EXIF_ORIENTATION, 1) != 1 else 0
        return 0, _tiff_block_bytes(image) + rotated
    if image.format == "BMP" and image.info.get("compression") in (BMP_RLE8, BMP_RLE4):
        return 0, 3 * width * height  # PIL's RLE decoder grows a bytearray, then copies it to bytes
    return 0, 0


def _jpeg_coefficient_bytes(image: Image.Image, width: int, height: int) -> int:
    """A multi-scan JPEG's whole-image buffer of DCT coefficients (2 bytes each), at its size in the file."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    h_max = max(layer[1] for layer in layers)
    v_max = max(layer[2] for layer in layers)
    blocks_wide = -(-width // (8 * h_max))
    blocks_high = -(-height // (8 * v_max))
    return sum(blocks_wide * h * blocks_high * v * 64 * 2 for _, h, v, _ in layers)


def _tiff_block_bytes(image: Image.Image) -> int:
    """libtiff's buffer for one strip or tile of raw samples (a one-strip TIFF buffers the whole image)."""
    tags = image.tag_v2
    width, height = image.size
    samples = int(tags.get(TIFF_SAMPLES_PER_PIXEL, 1))
    bits = tags.get(TIFF_BITS_PER_SAMPLE, (8,))
    bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
    bits_per_pixel = sum(int(b) for b in bits) if len(bits) == samples else int(bits[0]) * samples
    bytes_per_pixel = max(-(-bits_per_pixel // 8), 4)  # JPEG-in-TIFF is read through an RGBA buffer
    if TIFF_TILE_WIDTH in tags:
        return int(tags[TIFF_TILE_WIDTH]) * int(tags.get(TIFF_TILE_LENGTH, 1)) * bytes_per_pixel
    rows = min(int(tags.get(TIFF_ROWS_PER_STRIP, height)), height)
    return rows * width * bytes_per_pixel


def _resize_pixels(preprocessing: Preprocessing, width: int, height: int) -> int:
    """Pixels of PIL's horizontal pass, the resized image and the crop, for an upright ``width`` x ``height``."""
    resized_w, resized_h = preprocessing.resized_size(width, height)
    target_h, target_w = preprocessing.size
    return resized_w * height + resized_w * resized_h + target_w * target_h


def _metadata_bytes(image: Image.Image) -> int:
    """Text, profiles and EXIF already read from the header (PNG text chunks may inflate up to 64 MB)."""
    return sum(len(value) for value in image.info.values() if isinstance(value, (str, bytes)))


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file declares (RIFF header, then a VP8, VP8L or VP8X chunk), or None."""
    head = bytes(data[:30])
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


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


def encode_image_bytes(
    images,
    *,
    encode,
    dimension: int,
    batch_size: int,
    policy,
    preprocessing,
    device,
    dtype,
    workers=None,
    decode_pool: str = "threads",
):
    """Decode, preprocess and encode raw image bytes in batches with a model's image tower.

    ``encode(pixels) -> (n, dimension) tensor`` runs under inference mode and
    autocast to ``dtype`` (off for float32), in OOM-halving chunks; vectors are
    L2-normalised. Undecodable inputs are reported by index, never raised. ``workers``
    threads or processes (``decode_pool``) decode, one batch ahead.
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
        batches = iter_pixel_batches(
            images, batch_size, policy, preprocessing, device, workers, decode_pool=decode_pool
        )
        for batch in batches:
            errors.update(batch.errors)
            if batch.indices:
                with autocast(device, dtype):
                    encoded = backoff.run(lambda pixels: F.normalize(encode(pixels).float(), dim=-1), batch.pixels)
                vectors[batch.indices] = encoded.cpu().numpy()
    return ImageBatchResult(vectors=vectors, errors=dict(sorted(errors.items())))
