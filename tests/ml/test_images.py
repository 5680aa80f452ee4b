import numpy as np
import pytest
import torch
from PIL import Image

from ragrec_django.ml.images import (
    ImageDecodeError,
    ImagePolicy,
    Preprocessing,
    decode_image,
    iter_pixel_batches,
    load_pixels,
    normalize,
)

from .samples import encode

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
    ours = normalize(torch.from_numpy(load_pixels(encode(image, "PNG"), POLICY, preprocessing)).permute(2, 0, 1)[None], preprocessing)
    reference = image_transform(64, is_train=False, mean=0.5, std=0.5, resize_mode="squash", interpolation="bilinear")(image)
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
    alone = normalize(torch.from_numpy(load_pixels(samples.rgba_png, POLICY, preprocessing)).permute(2, 0, 1)[None], preprocessing)
    torch.testing.assert_close(batches[0].pixels[1:2], alone)


def test_batch_of_only_bad_images_has_no_pixels(samples):
    preprocessing = Preprocessing.from_open_clip({"size": 32, "mean": CLIP_MEAN, "std": CLIP_STD})
    (batch,) = iter_pixel_batches([samples.svg, samples.text], 8, POLICY, preprocessing, torch.device("cpu"))
    assert batch.indices == [] and batch.pixels is None and sorted(batch.errors) == [0, 1]


def test_jpeg_bytes_are_decoded_from_memoryview_and_bytearray(samples):
    assert decode_image(memoryview(samples.red_blue_jpeg), POLICY).size == (40, 20)
    assert decode_image(bytearray(samples.red_blue_jpeg), POLICY).size == (40, 20)
