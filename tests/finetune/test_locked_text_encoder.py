"""LockedTextClipEncoder: the Encoder interface over a locked-text (LiT) checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from ragrec_django.ml.base import Encoder, EncoderError
from ragrec_django.ml.finetune import retrieval_metrics, split_by_product
from ragrec_django.ml.loading import file_fingerprint
from ragrec_django.ml.locked_clip import LockedTextClipEncoder, encoder_setting, read_manifest
from ragrec_django.ml.text import TransformerTextEncoder


@pytest.fixture(scope="module")
def encoder(trained_lit):
    return LockedTextClipEncoder(checkpoint=trained_lit.checkpoint, device="cpu")


def test_interface_dimension_and_version(encoder, trained_lit):
    assert isinstance(encoder, Encoder) and encoder.modalities == {"text", "image"}
    assert encoder.dimension == 32
    weights = os.path.join(trained_lit.checkpoint, "model.safetensors")
    assert encoder.version.startswith("locked_text_clip:lit-minilm-custom-")
    assert ":sha256:%s:" % file_fingerprint(weights) in encoder.version
    assert len(encoder.version) < 255  # SpaceGeneration.encoder_version
    assert LockedTextClipEncoder(checkpoint=trained_lit.checkpoint, device="cpu").version == encoder.version


def test_text_tower_is_minilm_projected(encoder, trained_lit):
    texts = ["a red mug", "a purple umbrella", "A blue lamp for the desk, with a linen shade."]
    state = load_file(os.path.join(trained_lit.checkpoint, "model.safetensors"))
    weight, bias = state["text_projection.weight"], state["text_projection.bias"]
    minilm = TransformerTextEncoder(
        device="cpu", max_length=read_manifest(trained_lit.checkpoint)["text"]["max_length"]
    )
    projected = minilm.encode_texts(texts) @ weight.T + bias
    expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)

    vectors = encoder.encode_texts(texts)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert encoder.encode_texts([]).shape == (0, 32)
    with pytest.raises(TypeError):
        encoder.encode_texts([b"bytes"])


def test_images_go_through_the_defensive_path(encoder, pairs):
    result = encoder.encode_images([pairs[0].image, b"not an image", b"", pairs[1].image])
    assert set(result.errors) == {1, 2} and "not a recognised image" in result.errors[1]
    assert result.ok_indices == [0, 3]
    np.testing.assert_allclose(np.linalg.norm(result.vectors[[0, 3]], axis=1), 1.0, atol=1e-5)
    assert not result.vectors[[1, 2]].any()
    assert encoder.encode_images([]).vectors.shape == (0, 32)


def test_encoder_reproduces_the_held_out_figures_of_the_report(encoder, trained_lit, pairs):
    """Inference (decode, preprocess, towers) is the path the training evaluation measured."""
    _, held = split_by_product(pairs, 0.2, 0)
    first = {}
    for pair in sorted(held, key=lambda p: p.key):
        first.setdefault(pair.key, pair)
    held = list(first.values())
    images = encoder.encode_images([p.image for p in held])
    metrics = retrieval_metrics(encoder.encode_texts([p.text for p in held]), images.vectors)
    after = trained_lit.report["after"]
    for direction in ("text_to_image", "image_to_text"):
        for name, value in after[direction].items():
            assert metrics[direction][name] == pytest.approx(value, abs=1e-6), (direction, name)


def test_bad_checkpoints_are_refused(tmp_path, trained_lit):
    with pytest.raises(EncoderError, match="not a ragrec CLIP checkpoint"):
        LockedTextClipEncoder(checkpoint=str(tmp_path))
    with pytest.raises(EncoderError, match="device"):
        LockedTextClipEncoder(checkpoint=trained_lit.checkpoint, device="gpu")

    copy = tmp_path / "copy"
    shutil.copytree(trained_lit.checkpoint, copy)
    manifest = json.loads((copy / "ragrec_clip.json").read_text())
    manifest["text"]["weights_sha256"] = "0" * 16
    (copy / "ragrec_clip.json").write_text(json.dumps(manifest))
    changed = LockedTextClipEncoder(checkpoint=str(copy), device="cpu")
    assert changed.version != LockedTextClipEncoder(checkpoint=trained_lit.checkpoint).version
    with pytest.raises(EncoderError, match="not the one this checkpoint's projection was trained on"):
        changed.encode_texts(["a red mug"])

    (copy / "model.safetensors").unlink()
    with pytest.raises(EncoderError, match="no weights file"):
        LockedTextClipEncoder(checkpoint=str(copy))
    (copy / "ragrec_clip.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EncoderError, match="no known"):
        LockedTextClipEncoder(checkpoint=str(copy))


SCRIPT = """
import sys
from ragrec_django.ml.locked_clip import LockedTextClipEncoder, encoder_setting

encoder = LockedTextClipEncoder(checkpoint=sys.argv[1], device="cpu", precision="fp16", image_formats=["png"])
assert encoder.dimension == 32 and encoder.version.startswith("locked_text_clip:")
assert encoder_setting(sys.argv[1])["BACKEND"] == "ragrec_django.ml.locked_clip.LockedTextClipEncoder"
print(" ".join(name for name in ("torch", "torchvision", "transformers", "open_clip") if name in sys.modules))
"""


def test_building_the_encoder_imports_no_torch(trained_lit):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, trained_lit.checkpoint], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], "imported while building the encoder: %s" % result.stdout


def test_encoder_setting_of_a_checkpoint(trained_lit):
    setting = encoder_setting(trained_lit.checkpoint, device="cuda")
    assert setting == {
        "BACKEND": "ragrec_django.ml.locked_clip.LockedTextClipEncoder",
        "OPTIONS": {"checkpoint": trained_lit.checkpoint, "device": "cuda"},
    }


def test_text_side_shares_the_text_space_minilm_and_its_query_memo(trained_lit):
    """One MiniLM per process: the LiT encoder's text side is the loaded model of the "text" space."""
    from ragrec_django.ml.loading import loaded_keys

    encoder = LockedTextClipEncoder(checkpoint=trained_lit.checkpoint, device="cpu")
    text_space = TransformerTextEncoder(device="cpu")
    assert encoder.text_encoder.load() is text_space.load()
    assert sum(1 for key in loaded_keys() if key[0] == "transformers" and key[1] == text_space.source) == 1

    query = "a purple lamp, query %d" % id(encoder)
    calls = []
    handle = text_space.load().model.register_forward_hook(lambda *args: calls.append(1))
    try:
        sentence = text_space.encode_texts([query])
        projected = encoder.encode_texts([query])
    finally:
        handle.remove()
    assert len(calls) == 1  # the image space's query reused the text space's forward pass
    state = load_file(os.path.join(trained_lit.checkpoint, "model.safetensors"))
    expected = sentence @ state["text_projection.weight"].T + state["text_projection.bias"]
    np.testing.assert_allclose(projected, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


SERVING_IMPORTS = """
import sys
import ragrec_django.ml.locked_clip
import ragrec_django.ml.finetune_report
print(" ".join(name for name in ("ragrec_django.ml.finetune", "torch") if name in sys.modules))
"""


def test_serving_a_checkpoint_does_not_import_the_training_module():
    """A web process serving LiT queries imports ``locked_clip``, not the 1,000-line ``finetune``."""
    result = subprocess.run([sys.executable, "-c", SERVING_IMPORTS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], "imported: %s" % result.stdout


def test_the_old_dotted_path_still_names_the_encoder_with_a_deprecation_warning():
    from django.utils.module_loading import import_string

    with pytest.warns(DeprecationWarning, match="moved to ragrec_django.ml.locked_clip.LockedTextClipEncoder"):
        assert import_string("ragrec_django.ml.finetune.LockedTextClipEncoder") is LockedTextClipEncoder
    with pytest.raises(ImportError, match="NoSuchName"):
        import_string("ragrec_django.ml.finetune.NoSuchName")
