import io
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from ragrec_django.ml import batching
from ragrec_django.ml import images as images_module
from ragrec_django.ml.images import (
    MAX_DECODE_BYTES,
    MAX_IMAGE_ASPECT,
    MAX_IMAGE_SIDE,
    Decoder,
    ImageDecodeError,
    ImagePolicy,
    Preprocessing,
    decode_image,
    iter_pixel_batches,
    jpeg_draft_size,
    load_pixels,
    normalize,
)
from ragrec_django.ml.testing import installed_sample_photos, photo_jpeg

from .samples import encode, noise, photo_like

POLICY = ImagePolicy.build()
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pixel(image, xy):
    return np.array(image.getpixel(xy), dtype=int)


def assert_colour(image, xy, expected, tolerance=12):
    assert np.abs(pixel(image, xy) - np.array(expected)).max() <= tolerance, (xy, image.getpixel(xy), expected)


def decode_error(data, policy=POLICY) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, policy)
    assert info.value.reason == str(info.value)
    return info.value.reason


def test_exif_orientation_is_applied(samples):
    plain = decode_image(samples.red_blue_jpeg, POLICY)
    rotated = decode_image(samples.exif_rotated_jpeg, POLICY)
    assert plain.size == (40, 20)
    assert rotated.size == (20, 40)
    # Orientation 6 turns the image 90 degrees clockwise: the red left half ends on top.
    assert_colour(rotated, (10, 5), (255, 0, 0))
    assert_colour(rotated, (10, 35), (0, 0, 255))
    expected = np.asarray(plain.transpose(Image.Transpose.ROTATE_270))
    assert np.abs(np.asarray(rotated).astype(int) - expected).max() <= 2


def test_cmyk_jpeg_becomes_rgb(samples):
    image = decode_image(samples.cmyk_jpeg, POLICY)
    assert image.mode == "RGB"
    assert_colour(image, (8, 8), (255, 0, 0))


def test_palette_png_transparency_is_composited_on_white(samples):
    image = decode_image(samples.palette_png, POLICY)
    assert image.mode == "RGB"
    assert_colour(image, (5, 5), (255, 255, 255), tolerance=0)
    assert_colour(image, (30, 5), (0, 200, 0), tolerance=0)


def test_rgba_alpha_is_composited_on_white(samples):
    image = decode_image(samples.rgba_png, POLICY)
    assert image.mode == "RGB"
    assert_colour(image, (5, 5), (255, 0, 0), tolerance=0)
    assert_colour(image, (15, 5), (255, 255, 255), tolerance=0)
    assert_colour(image, (25, 5), (127, 127, 127), tolerance=1)


def test_transparent_grey_alpha_png_is_white(samples):
    assert_colour(decode_image(samples.la_png, POLICY), (4, 4), (255, 255, 255), tolerance=0)


def test_16_bit_png_is_scaled_not_clipped(samples):
    image = decode_image(samples.png16, POLICY)
    assert image.mode == "RGB"
    assert_colour(image, (4, 4), (128, 128, 128), tolerance=0)


@pytest.mark.parametrize("name", ["gif", "webp", "bmp", "tiff", "png_with_html_payload"])
def test_other_allowed_formats_decode(samples, name):
    image = decode_image(getattr(samples, name), POLICY)
    assert image.mode == "RGB" and image.size == (40, 20)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("truncated_jpeg", "truncated or corrupt JPEG"),
        ("random_bytes", "not a recognised image"),
        ("pdf", "not a recognised image"),
        ("text", "not a recognised image"),
        ("svg", "not a recognised image"),
        ("bomb_png", "too many pixels, far over the limit of 40000000"),
        ("over_limit_png", "7000x7000 = 49000000 pixels, over the limit of 40000000"),
        ("ppm", "image format PPM is not allowed"),
    ],
)
def test_bad_inputs_raise_a_named_reason(samples, name, expected):
    assert expected in decode_error(getattr(samples, name))


def test_script_polyglot_with_gif_magic_is_rejected(samples):
    assert decode_error(samples.gif_js_polyglot).startswith("not a recognised image file")


def test_empty_and_non_bytes_inputs_are_rejected():
    assert decode_error(b"") == "empty file"
    assert "got str" in decode_error("photo.jpg")


def test_pixel_limit_and_format_list_are_configurable(samples):
    assert "over the limit of 100" in decode_error(samples.red_blue_jpeg, ImagePolicy.build(max_pixels=100))
    png_only = ImagePolicy.build(formats=["png"])
    assert png_only.formats == ("PNG",)
    assert "image format JPEG is not allowed (allowed formats: PNG)" in decode_error(samples.red_blue_jpeg, png_only)
    assert ImagePolicy.build(formats=["jpg", "TIF"]).formats == ("JPEG", "TIFF")
    with pytest.raises(ValueError, match="Unknown image format 'heic-ish'"):
        ImagePolicy.build(formats=["heic-ish"])
    with pytest.raises(ValueError):
        ImagePolicy.build(max_pixels=0)


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (97, 411)])
def test_preprocessing_matches_open_clip_transform(size):
    from open_clip.transform import image_transform

    rng = np.random.default_rng(size[0])
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    data = encode(image, "PNG")
    preprocessing = Preprocessing.from_open_clip({"size": 224, "mean": CLIP_MEAN, "std": CLIP_STD})
    ours = normalize(torch.from_numpy(load_pixels(data, POLICY, preprocessing)).permute(2, 0, 1)[None], preprocessing)
    reference = image_transform(224, is_train=False, mean=CLIP_MEAN, std=CLIP_STD)(image)
    assert ours.shape == (1, 3, 224, 224) and ours.dtype == torch.float32
    torch.testing.assert_close(ours[0], reference, atol=1e-5, rtol=0)


def test_squash_preprocessing_matches_open_clip_transform():
    from open_clip.transform import image_transform

    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 160, 3), dtype=np.uint8))
    cfg = {"size": (64, 64), "mean": 0.5, "std": 0.5, "resize_mode": "squash", "interpolation": "bilinear"}
    preprocessing = Preprocessing.from_open_clip(cfg)
    ours = normalize(
        torch.from_numpy(load_pixels(encode(image, "PNG"), POLICY, preprocessing)).permute(2, 0, 1)[None], preprocessing
    )
    reference = image_transform(64, is_train=False, mean=0.5, std=0.5, resize_mode="squash", interpolation="bilinear")(
        image
    )
    torch.testing.assert_close(ours[0], reference, atol=1e-5, rtol=0)


def test_unsupported_preprocessing_is_refused():
    with pytest.raises(ValueError, match="resize_mode"):
        Preprocessing.from_open_clip({"size": 224, "mean": CLIP_MEAN, "std": CLIP_STD, "resize_mode": "longest"})


def test_batches_report_bad_images_by_index_and_keep_the_rest(samples):
    preprocessing = Preprocessing.from_open_clip({"size": 32, "mean": CLIP_MEAN, "std": CLIP_STD})
    images = [samples.jpeg, samples.pdf, samples.rgba_png, samples.truncated_jpeg, samples.bomb_png, samples.gif]
    batches = list(iter_pixel_batches(images, 4, POLICY, preprocessing, torch.device("cpu"), workers=2))
    assert [batch.indices for batch in batches] == [[0, 2], [5]]
    errors = {index: reason for batch in batches for index, reason in batch.errors.items()}
    assert sorted(errors) == [1, 3, 4]
    assert "truncated" in errors[3] and "too many pixels" in errors[4]
    assert batches[0].pixels.shape == (2, 3, 32, 32) and batches[0].pixels.dtype == torch.float32
    alone = normalize(
        torch.from_numpy(load_pixels(samples.rgba_png, POLICY, preprocessing)).permute(2, 0, 1)[None], preprocessing
    )
    torch.testing.assert_close(batches[0].pixels[1:2], alone)


def test_batch_of_only_bad_images_has_no_pixels(samples):
    preprocessing = Preprocessing.from_open_clip({"size": 32, "mean": CLIP_MEAN, "std": CLIP_STD})
    (batch,) = iter_pixel_batches([samples.svg, samples.text], 8, POLICY, preprocessing, torch.device("cpu"))
    assert batch.indices == [] and batch.pixels is None and sorted(batch.errors) == [0, 1]


def test_jpeg_bytes_are_decoded_from_memoryview_and_bytearray(samples):
    assert decode_image(memoryview(samples.red_blue_jpeg), POLICY).size == (40, 20)
    assert decode_image(bytearray(samples.red_blue_jpeg), POLICY).size == (40, 20)


# ---------------------------------------------------------------- shape and memory limits (hostile corpus: tests/hardening)


def test_side_and_elongation_limits_are_checked_from_the_header(samples):
    assert ImagePolicy().max_side == MAX_IMAGE_SIDE == 16_384 and ImagePolicy().max_aspect == MAX_IMAGE_ASPECT == 20
    assert decode_error(samples.red_blue_jpeg, ImagePolicy.build(max_side=39)) == (
        "image is 40x20 pixels, a side over the limit of 39"
    )
    assert decode_error(samples.red_blue_jpeg, ImagePolicy.build(max_aspect=1.5)) == (
        "image is 40x20 pixels, more elongated than the limit of 1.5:1"
    )
    assert decode_image(samples.red_blue_jpeg, ImagePolicy.build(max_side=40, max_aspect=2)).size == (40, 20)
    for bad in ({"max_side": 0}, {"max_aspect": 0.5}, {"max_decode_bytes": 0}):
        with pytest.raises(ValueError):
            ImagePolicy.build(**bad)


def test_the_memory_limit_counts_bytes_per_pixel():
    """Same pixels, different modes: a 16-bit image costs more than an 8-bit one, a float one more again."""
    grey8 = encode(Image.new("L", (1_000, 1_000)), "PNG")
    grey16 = encode(Image.fromarray(np.zeros((1_000, 1_000), np.uint16)), "PNG")
    floats = encode(Image.fromarray(np.zeros((1_000, 1_000), np.float32)), "TIFF")
    costs = [
        images_module.estimated_decode_bytes(Image.open(io.BytesIO(data)), data, (1_000, 1_000))
        for data in (grey8, grey16, floats)
    ]
    assert costs[0] < costs[1] < costs[2]
    tight = ImagePolicy.build(max_decode_bytes=costs[1])
    assert decode_image(grey16, tight).size == (1_000, 1_000)
    assert "of memory, over the limit of" in decode_error(floats, tight)
    assert ImagePolicy().max_decode_bytes == MAX_DECODE_BYTES == 128 * 1024 * 1024


def reference_pixels(data: bytes, size: int = 224, draft: bool = False) -> np.ndarray:
    """The documented transform done the obvious way: whole image, EXIF rotation, 8 bits, RGB, resize, crop.

    With ``draft``, a JPEG is first decoded at the reduced scale ``jpeg_draft_size`` asks for.
    """
    image = Image.open(io.BytesIO(data))
    if draft:
        preprocessing = Preprocessing.from_open_clip({"size": size, "mean": CLIP_MEAN, "std": CLIP_STD})
        image.draft(None, jpeg_draft_size(preprocessing, *image.size))
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I", "F"):
        values = np.asarray(image).astype(np.float32)
        if image.mode == "I;16" or values.max(initial=0) > 255:
            values /= 257.0
        elif image.mode == "F" and values.max(initial=0) <= 1.0:
            values *= 255.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    image = image.convert("RGB")
    width, height = image.size
    new_size = (size, int(size * height / width)) if width <= height else (int(size * width / height), size)
    image = image.resize(new_size, Image.Resampling.BICUBIC)
    left, top = round((new_size[0] - size) / 2.0), round((new_size[1] - size) / 2.0)
    return np.asarray(image.crop((left, top, left + size, top + size)))


def _odd_images():
    base = noise((300, 180), seed=4)
    alpha = Image.fromarray(np.random.default_rng(5).integers(0, 256, (180, 300), dtype=np.uint8))
    rgba = base.convert("RGBA")
    rgba.putalpha(alpha)
    grey = np.asarray(base.convert("L"))
    yield "rgba_png", encode(rgba, "PNG")
    yield "la_png", encode(rgba.convert("LA"), "PNG")
    yield "palette_transparent_png", encode(base.convert("P"), "PNG", transparency=3)
    yield "bilevel_png", encode(base.convert("1"), "PNG")
    yield "png16", encode(Image.fromarray(grey.astype(np.uint16) * 200), "PNG")
    yield "int32_tiff", encode(Image.fromarray(grey.astype(np.int32) * 3), "TIFF")
    yield "float_tiff_0_1", encode(Image.fromarray(grey.astype(np.float32) / 255), "TIFF")
    yield "float_tiff_wide", encode(Image.fromarray(grey.astype(np.float32) * 3 - 100), "TIFF")
    yield "cmyk_jpeg", encode(base.convert("CMYK"), "JPEG")
    yield "webp_rgba", encode(rgba, "WEBP")
    for orientation in range(1, 9):
        tags = Image.Exif()
        tags[0x0112] = orientation
        yield "jpeg_exif_%d" % orientation, encode(base, "JPEG", exif=tags.tobytes())
        yield "rgba_png_exif_%d" % orientation, encode(rgba, "PNG", exif=tags.tobytes())


@pytest.mark.parametrize("name, data", list(_odd_images()))
def test_flattening_and_rotation_before_resizing_change_no_pixel(name, data):
    """load_pixels flattens before it rotates and scales 16-bit/float images in bands: the same pixels."""
    preprocessing = Preprocessing.from_open_clip({"size": 224, "mean": CLIP_MEAN, "std": CLIP_STD})
    np.testing.assert_array_equal(load_pixels(data, POLICY, preprocessing), reference_pixels(data), err_msg=name)


# ---------------------------------------------------------------- JPEGs decoded at reduced DCT scale


@pytest.mark.parametrize(
    "source, model, decoded",
    [
        ((800, 800), 224, (400, 400)),  # 1/2: 1/4 would give 200 < 224
        ((3_000, 2_000), 224, (375, 250)),  # 1/8
        ((2_000, 3_000), 224, (250, 375)),
        ((447, 600), 224, (447, 600)),  # under twice the input: full size
        ((448, 600), 224, (224, 300)),
        ((1_791, 1_800), 224, (448, 450)),  # 1/4: 1/8 would give 223.9
        ((1_792, 1_800), 224, (224, 225)),
        ((1_200, 4_000), 224, (300, 1_000)),
        ((800, 800), 32, (100, 100)),
    ],
)
def test_jpegs_are_decoded_at_the_smallest_dct_scale_that_covers_the_resize(source, model, decoded):
    data = encode(Image.new("RGB", source, (90, 120, 200)), "JPEG")
    preprocessing = Preprocessing.from_open_clip({"size": model, "mean": CLIP_MEAN, "std": CLIP_STD})
    image = Image.open(io.BytesIO(data))
    image.draft(None, jpeg_draft_size(preprocessing, *source))
    assert image.size == decoded


def test_the_draft_size_covers_the_resize_in_either_orientation():
    """A squashed, non-square input turned by EXIF after decoding still gets enough pixels on each side."""
    squash = Preprocessing.from_open_clip({"size": (64, 256), "mean": 0.5, "std": 0.5, "resize_mode": "squash"})
    assert jpeg_draft_size(squash, 2_000, 1_000) == (256, 256)


def test_load_pixels_decodes_a_large_jpeg_at_the_draft_size():
    data = photo_jpeg(900, 700, seed=2)
    preprocessing = Preprocessing.from_open_clip({"size": 224, "mean": CLIP_MEAN, "std": CLIP_STD})
    np.testing.assert_array_equal(load_pixels(data, POLICY, preprocessing), reference_pixels(data, draft=True))
    assert not np.array_equal(reference_pixels(data, draft=True), reference_pixels(data))


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    """The real photographs installed packages ship (if any), and photo-like scenes at the benchmark's sizes."""
    found = {os.path.basename(path): open(path, "rb").read() for path in installed_sample_photos()}
    for seed, size in enumerate([(800, 800), (3_000, 2_000), (1_200, 4_000), (500, 700)]):
        found["scene %dx%d" % size] = photo_jpeg(*size, seed=seed)
    return found


def test_reduced_scale_jpegs_stay_within_a_few_levels_of_the_full_size_decode(photos):
    """Measured: 0 to 2.3 levels (of 255) on average at 224, at most 4.4 at 32; single edge pixels differ more."""
    for model in (224, 32):
        preprocessing = Preprocessing.from_open_clip({"size": model, "mean": CLIP_MEAN, "std": CLIP_STD})
        for name, data in photos.items():
            difference = np.abs(load_pixels(data, POLICY, preprocessing).astype(int) - reference_pixels(data, model))
            assert difference.mean() <= (3 if model == 224 else 6), (name, model, difference.mean())


def test_reduced_scale_jpegs_embed_like_the_full_size_decode(photos, tiny_clip_options):
    """Tiny-CLIP cosine of the reduced-scale and the full-size decode: >= 0.999 (measured >= 0.9997), and the
    two are far nearer to each other than to any other photo (random weights put all photos within a cosine
    of about 0.02 of each other, so the cosine alone says little)."""
    from ragrec_django.ml.clip import OpenClipEncoder

    tiny = OpenClipEncoder(**tiny_clip_options, device="cpu")  # 32 px input: every photo here is reduced
    reduced = tiny.encode_images(list(photos.values())).vectors
    whole = [encode(Image.fromarray(reference_pixels(data, 32)), "PNG") for data in photos.values()]
    full = tiny.encode_images(whole).vectors
    same = np.sum(reduced * full, axis=1)
    others = full @ full.T
    np.fill_diagonal(others, -1)
    assert same.min() >= 0.999, dict(zip(photos, same, strict=True))
    assert np.all(1 - same <= 0.1 * (1 - others.max(axis=1))), dict(zip(photos, same, strict=True))


def test_a_jpeg_too_large_for_nvjpeg_is_decoded_on_the_cpu_at_reduced_scale():
    preprocessing = Preprocessing.from_open_clip({"size": 32, "mean": CLIP_MEAN, "std": CLIP_STD})
    data = encode(photo_like((400, 300)), "JPEG")
    assert images_module._prepare_for_gpu(data, POLICY, preprocessing) is images_module._GPU_JPEG
    small_budget = ImagePolicy.build(max_decode_bytes=400 * 300 * images_module.NVJPEG_BYTES_PER_PIXEL - 1)
    pixels = images_module._prepare_for_gpu(data, small_budget, preprocessing)
    assert isinstance(pixels, np.ndarray) and pixels.shape == (32, 32, 3)


# ---------------------------------------------------------------- decoding in processes


def test_the_process_pool_gives_the_same_batches_as_the_thread_pool(samples):
    preprocessing = Preprocessing.from_open_clip({"size": 224, "mean": CLIP_MEAN, "std": CLIP_STD})
    images = [samples.jpeg, samples.pdf, photo_jpeg(800, 800), samples.rgba_png, samples.truncated_jpeg]
    images += [samples.bomb_png, memoryview(samples.photo_jpeg), samples.cmyk_jpeg, samples.png16, "photo.jpg"]
    by_pool = {
        kind: list(iter_pixel_batches(images, 4, POLICY, preprocessing, torch.device("cpu"), 2, decode_pool=kind))
        for kind in ("threads", "processes")
    }
    for threaded, in_processes in zip(by_pool["threads"], by_pool["processes"], strict=True):
        assert threaded.indices == in_processes.indices and threaded.errors == in_processes.errors
        torch.testing.assert_close(threaded.pixels, in_processes.pixels, atol=0, rtol=0)
    assert sorted(i for batch in by_pool["processes"] for i in batch.errors) == [1, 4, 5, 9]
    with Decoder("processes", 1) as decoder:  # an input that cannot even be pickled is an error, not a crash
        assert (
            "cannot preprocess image" in decoder.submit(images_module._prepare_on_cpu, lambda: 0, POLICY, None)().reason
        )


def test_the_process_pool_is_started_once_per_process(monkeypatch):
    pool = batching.shared_process_pool(2)
    assert batching.shared_process_pool(2) is pool
    monkeypatch.setitem(batching._process_pools, 2, (-1, pool))  # as a worker forked after the pool was made sees it
    own = batching.shared_process_pool(2)
    assert own is not pool and batching.shared_process_pool(2) is own
    own.shutdown()


def test_a_decode_process_that_dies_fails_its_image_only(samples):
    """A job that kills its process is retried once alone, then reported; the jobs it broke are decoded again."""
    preprocessing = Preprocessing.from_open_clip({"size": 32, "mean": CLIP_MEAN, "std": CLIP_STD})
    with Decoder("processes", 2) as decoder:
        before = decoder.submit(images_module._prepare_on_cpu, samples.jpeg, POLICY, preprocessing)
        dying = decoder.submit(os._exit, 1)  # the decode process ends
        after = decoder.submit(images_module._prepare_on_cpu, samples.photo_jpeg, POLICY, preprocessing)
        results = [before(), dying(), after()]
    np.testing.assert_array_equal(results[0], load_pixels(samples.jpeg, POLICY, preprocessing))
    assert isinstance(results[1], ImageDecodeError) and "process decoding this image died" in results[1].reason
    np.testing.assert_array_equal(results[2], load_pixels(samples.photo_jpeg, POLICY, preprocessing))
    with Decoder("processes", 2) as decoder:  # the broken pool was replaced
        assert isinstance(decoder.submit(images_module._prepare_on_cpu, b"", POLICY, preprocessing)(), ImageDecodeError)


def test_the_nvjpeg_marker_survives_a_decode_process():
    assert pickle.loads(pickle.dumps(images_module._GPU_JPEG)) is images_module._GPU_JPEG


def test_an_unknown_decode_pool_is_refused(tiny_clip_options):
    from ragrec_django.ml.base import EncoderError
    from ragrec_django.ml.clip import OpenClipEncoder

    with pytest.raises(ValueError, match="decode_pool must be one of threads, processes, got 'fibres'"):
        Decoder("fibres", 2)
    with pytest.raises(EncoderError, match="decode_pool"):
        OpenClipEncoder(**tiny_clip_options, decode_pool="fibres")
