import hashlib
import json
import os

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from ragrec_django.ml import images as images_module
from ragrec_django.ml import loading
from ragrec_django.ml.base import EncoderError, EncodeResult
from ragrec_django.ml.clip import OpenClipEncoder
from ragrec_django.ml.images import ImagePolicy, Preprocessing, decode_image, iter_pixel_batches
from ragrec_django.ml.testing import TINY_CLIP_CONFIG, make_tiny_clip_checkpoint

from .samples import encode


@pytest.fixture
def create_model_calls(monkeypatch):
    """Counts models built by open_clip, starting from an empty process cache."""
    loading.clear_model_cache()
    calls = []
    real = open_clip.create_model

    def counting(*args, **kwargs):
        calls.append(args[0] if args else kwargs["model_name"])
        return real(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model", counting)
    yield calls
    loading.clear_model_cache()


@pytest.fixture
def tiny(tiny_clip_options):
    return OpenClipEncoder(**tiny_clip_options, device="cpu")


def unit_rows(vectors):
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_tiny_checkpoint_is_small_and_deterministic(tmp_path):
    first = make_tiny_clip_checkpoint(tmp_path / "a", seed=0)
    again = make_tiny_clip_checkpoint(tmp_path / "b", seed=0)
    other = make_tiny_clip_checkpoint(tmp_path / "c", seed=1)
    digest = lambda options: hashlib.sha256(open(options["pretrained"], "rb").read()).hexdigest()  # noqa: E731
    assert digest(first) == digest(again) != digest(other)
    assert first["model"] == "ragrec-tiny-clip" and first["config"] == TINY_CLIP_CONFIG
    assert os.path.getsize(first["pretrained"]) < 10_000_000


def test_construction_dimension_and_version_load_nothing(tiny_clip_options, create_model_calls):
    encoder = OpenClipEncoder(**tiny_clip_options, device="cpu")
    assert encoder.dimension == 64
    assert encoder.version.startswith("open_clip:ragrec-tiny-clip:sha256:")
    assert "image_size=32" in encoder.version
    assert create_model_calls == [] and loading.loaded_keys() == []


def test_builtin_dimension_and_version_without_weights():
    encoder = OpenClipEncoder()
    assert encoder.dimension == 512
    assert encoder.version == "open_clip:ViT-B-32:laion2b_s34b_b79k:image_size=224"
    assert OpenClipEncoder(pretrained=None).version == "open_clip:ViT-B-32:random-init:image_size=224"
    assert OpenClipEncoder(model="hf-hub:org/some-clip").version == "open_clip:hf-hub:org/some-clip"


def test_text_and_image_towers_share_one_model(tiny_clip_options, create_model_calls, samples):
    texts_encoder = OpenClipEncoder(**tiny_clip_options, device="cpu")
    images_encoder = OpenClipEncoder(**tiny_clip_options, device="cpu")
    texts = texts_encoder.encode_texts(["a red shirt", "a steel kettle"])
    images = images_encoder.encode_images([samples.jpeg, samples.red_blue_jpeg])
    assert create_model_calls == ["ragrec-tiny-clip"]
    assert texts_encoder.load() is images_encoder.load()
    assert texts.shape == images.vectors.shape == (2, 64)
    assert texts.dtype == images.vectors.dtype == np.float32
    unit_rows(texts)
    unit_rows(images.vectors)
    assert images.errors == {}


def test_checkpoint_and_config_file_options(tiny_clip_options, tmp_path, tiny):
    config_path = tmp_path / "tiny.json"
    config_path.write_text(json.dumps(tiny_clip_options["config"]))
    from_files = OpenClipEncoder(
        model="ragrec-tiny-clip",
        pretrained=None,
        checkpoint=tiny_clip_options["pretrained"],
        config=str(config_path),
        device="cpu",
    )
    assert from_files.version == tiny.version
    np.testing.assert_allclose(from_files.encode_texts(["oak table"]), tiny.encode_texts(["oak table"]), atol=1e-6)


def test_weights_come_from_the_checkpoint(tiny_clip_options, tmp_path, tiny):
    other = make_tiny_clip_checkpoint(tmp_path, seed=1)
    reseeded = OpenClipEncoder(**other, device="cpu")
    assert reseeded.version != tiny.version
    assert not np.allclose(reseeded.encode_texts(["oak table"]), tiny.encode_texts(["oak table"]), atol=1e-3)


def test_image_batch_with_every_kind_of_bad_input(tiny, samples):
    names = [
        "jpeg", "truncated_jpeg", "cmyk_jpeg", "random_bytes", "palette_png", "pdf", "png16", "text",
        "rgba_png", "svg", "exif_rotated_jpeg", "gif_js_polyglot", "bomb_png", "over_limit_png", "ppm", "webp",
    ]  # fmt: skip
    images = [getattr(samples, name) for name in names]
    result = tiny.encode_images(images, batch_size=3)
    bad = {names.index(name) for name in (
        "truncated_jpeg", "random_bytes", "pdf", "text", "svg", "gif_js_polyglot", "bomb_png", "over_limit_png", "ppm"
    )}  # fmt: skip
    assert set(result.errors) == bad
    assert "truncated" in result.errors[names.index("truncated_jpeg")]
    assert "PPM is not allowed" in result.errors[names.index("ppm")]
    assert result.ok_indices == [i for i in range(len(names)) if i not in bad]
    assert not result.vectors[sorted(bad)].any()
    unit_rows(result.vectors[result.ok_indices])
    alone = tiny.encode_images([samples.png16]).vectors[0]
    np.testing.assert_allclose(result.vectors[names.index("png16")], alone, atol=1e-5)


def test_exif_orientation_reaches_the_image_tower(tiny, samples):
    upright = decode_image(samples.red_blue_jpeg, ImagePolicy()).transpose(Image.Transpose.ROTATE_270)
    vectors = tiny.encode_images([samples.exif_rotated_jpeg, encode(upright, "PNG"), samples.red_blue_jpeg]).vectors
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)
    assert not np.allclose(vectors[0], vectors[2], atol=1e-3)


def test_batching_does_not_change_results(tiny, samples):
    images = [samples.jpeg, samples.gif, samples.tiff, samples.bmp, samples.webp]
    np.testing.assert_allclose(
        tiny.encode_images(images, batch_size=2).vectors, tiny.encode_images(images, batch_size=64).vectors, atol=1e-5
    )
    texts = ["red shirt", "kettle", "oak table with four chairs", ""]
    np.testing.assert_allclose(tiny.encode_texts(texts, batch_size=1), tiny.encode_texts(texts), atol=1e-5)


def test_image_oom_halves_the_batch_and_retries(tiny, samples, monkeypatch):
    images = [samples.jpeg, samples.gif, samples.tiff, samples.bmp]
    expected = tiny.encode_images(images).vectors
    model = tiny.load().model
    real = model.encode_image
    sizes = []

    def tight_memory(pixels, *args, **kwargs):
        sizes.append(len(pixels))
        if len(pixels) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(pixels, *args, **kwargs)

    monkeypatch.setattr(model, "encode_image", tight_memory)
    np.testing.assert_allclose(tiny.encode_images(images, batch_size=4).vectors, expected, atol=1e-5)
    assert sizes == [4, 2, 1, 1, 1, 1]


def test_empty_inputs(tiny):
    assert tiny.encode_texts([]).shape == (0, 64)
    result = tiny.encode_images([])
    assert result.vectors.shape == (0, 64) and result.errors == {}


def test_configuration_errors(tiny_clip_options, tmp_path):
    with pytest.raises(EncoderError, match="Unknown open_clip model"):
        OpenClipEncoder(model="no-such-architecture").dimension
    with pytest.raises(EncoderError, match="lacks"):
        OpenClipEncoder(model="half-config", config={"embed_dim": 8})
    with pytest.raises(EncoderError, match="already knows a different model"):
        OpenClipEncoder(model="ViT-B-32", pretrained=None, config=TINY_CLIP_CONFIG, device="cpu").load()
    with pytest.raises(EncoderError, match="Cannot load open_clip model"):
        OpenClipEncoder(**{**tiny_clip_options, "pretrained": str(tmp_path / "missing.pt")}, device="cpu").load()
    with pytest.raises(EncoderError, match="brings its own config and weights"):
        OpenClipEncoder(model="hf-hub:org/some-clip", checkpoint=tiny_clip_options["pretrained"])
    with pytest.raises(EncoderError, match="Unknown device"):
        OpenClipEncoder(device="gpu")
    with pytest.raises(EncoderError, match="Unknown image format"):
        OpenClipEncoder(image_formats=["NOPE"])


def test_restricted_image_formats(tiny_clip_options, samples):
    png_only = OpenClipEncoder(**tiny_clip_options, device="cpu", image_formats=["PNG"], max_image_pixels=10_000)
    result = png_only.encode_images([samples.red_blue_jpeg, samples.rgba_png, samples.noisy_png])
    assert result.errors == {
        0: "image format JPEG is not allowed (allowed formats: PNG)",
        2: "image is 128x128 = 16384 pixels, over the limit of 10000 (decompression bomb guard)",
    }


@pytest.mark.gpu
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nvjpeg_path_matches_the_cpu_path(tiny_clip_options, samples, monkeypatch):
    images = [
        samples.photo_jpeg,
        samples.truncated_jpeg,
        samples.rgba_png,
        samples.exif_rotated_jpeg,
        samples.cmyk_jpeg,
    ]
    gpu_decoded = []
    real_gpu_decode = images_module._decode_jpegs_on_gpu

    def spy(blobs, *args):
        gpu_decoded.extend(blobs)
        return real_gpu_decode(blobs, *args)

    monkeypatch.setattr(images_module, "_decode_jpegs_on_gpu", spy)
    preprocessing = Preprocessing.from_open_clip({"size": 224, "mean": (0.5,) * 3, "std": (0.25,) * 3})
    policy = ImagePolicy.build()
    (on_gpu,) = iter_pixel_batches(images, 8, policy, preprocessing, torch.device("cuda"))
    (on_cpu,) = iter_pixel_batches(images, 8, policy, preprocessing, torch.device("cpu"))
    # Only the plain, complete, upright RGB JPEG goes to nvJPEG; the rest take the PIL path.
    assert gpu_decoded == [samples.photo_jpeg]
    assert on_gpu.indices == on_cpu.indices == [0, 2, 3, 4]
    assert set(on_gpu.errors) == set(on_cpu.errors) == {1}
    assert on_gpu.pixels.device.type == "cuda" and on_gpu.pixels.dtype == torch.float32
    difference = (on_gpu.pixels.cpu() - on_cpu.pixels).abs()
    assert difference[0].mean() < 0.05, difference[0].mean()  # nvJPEG + torch bicubic vs libjpeg + PIL bicubic
    assert difference[1:].max() < 1e-5  # same PIL pixels, moved to the GPU

    cpu = OpenClipEncoder(**tiny_clip_options, device="cpu").encode_images(images)
    for precision in ("fp32", "fp16"):
        gpu = OpenClipEncoder(**tiny_clip_options, device="cuda", precision=precision).encode_images(images)
        assert gpu.vectors.dtype == np.float32 and set(gpu.errors) == {1}
        unit_rows(gpu.vectors[gpu.ok_indices])
        assert ((gpu.vectors * cpu.vectors).sum(axis=1)[gpu.ok_indices] > 0.98).all()


@pytest.mark.parametrize("texts", [["red mug"], ["a", "a much longer product title with many more words in it"]])
def test_text_tower_without_padding_equals_open_clips_own(tiny, texts):
    from ragrec_django.ml import clip_text

    loaded = tiny.load()
    tokens = loaded.tokenizer(texts)
    assert clip_text.can_trim(loaded.model)
    assert clip_text.used_length(tokens) < tokens.shape[1]
    with torch.inference_mode():
        full = loaded.model.encode_text(tokens)
        trimmed = clip_text.encode_text(loaded.model, tokens)
    torch.testing.assert_close(trimmed, full, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        tiny.encode_texts(texts), torch.nn.functional.normalize(full, dim=-1).numpy(), rtol=1e-4, atol=1e-5
    )


def test_text_longer_than_the_context_is_encoded_whole(tiny):
    from ragrec_django.ml import clip_text

    loaded = tiny.load()
    tokens = loaded.tokenizer(["word " * 200])
    assert clip_text.used_length(tokens) == tokens.shape[1]
    with torch.inference_mode():
        torch.testing.assert_close(clip_text.encode_text(loaded.model, tokens), loaded.model.encode_text(tokens))


def test_bf16_on_the_cpu_keeps_bf16_weights_and_close_vectors(tiny_clip_options, tiny, samples):
    """bf16 on the CPU loads bf16 weights (autocast over fp32 weights re-casts them on every call),
    as a model of its own; its vectors stay within bf16 rounding of fp32's."""
    bf16 = OpenClipEncoder(**tiny_clip_options, device="cpu", precision="bf16")
    loaded = bf16.load()
    assert loaded is not tiny.load()
    assert loaded.model.transformer.get_cast_dtype() == torch.bfloat16
    assert loaded.model.visual.conv1.weight.dtype == torch.bfloat16
    assert tiny.load().model.visual.conv1.weight.dtype == torch.float32
    texts = ["red mug", "a much longer product title with many more words in it"]
    low, full = bf16.encode_texts(texts), tiny.encode_texts(texts)
    assert low.dtype == np.float32
    unit_rows(low)
    assert ((low * full).sum(axis=1) > 0.99).all()
    images = [samples.jpeg, samples.red_blue_jpeg]
    low, full = bf16.encode_images(images), tiny.encode_images(images)
    assert low.errors == {} and low.vectors.dtype == np.float32
    unit_rows(low.vectors)
    assert ((low.vectors * full.vectors).sum(axis=1) > 0.99).all()


def test_encode_returns_the_same_contract_for_both_modalities(tiny, samples):
    """``encode(modality, ...)``: vectors plus per-item errors, the same type for texts and images."""
    images = tiny.encode("image", [samples.jpeg, samples.random_bytes, samples.png16], batch_size=2)
    texts = tiny.encode("text", ["a red shirt", "a steel kettle"])
    assert isinstance(images, EncodeResult) and isinstance(texts, EncodeResult)
    assert list(images.errors) == [1] and images.ok_indices == [0, 2] and not images.vectors[1].any()
    np.testing.assert_allclose(
        images.vectors, tiny.encode_images([samples.jpeg, samples.random_bytes, samples.png16]).vectors, atol=1e-5
    )
    assert texts.errors == {} and texts.ok_indices == [0, 1]
    np.testing.assert_allclose(texts.vectors, tiny.encode_texts(["a red shirt", "a steel kettle"]), atol=1e-6)
