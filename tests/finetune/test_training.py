"""Contrastive fine-tuning without Django: learning, held-out split, metrics, reproducibility, checkpoint and report."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ragrec_django.ml import finetune_report
from ragrec_django.ml.finetune import FinetuneConfig, Pair, retrieval_metrics, split_by_product, train_clip
from ragrec_django.ml.locked_clip import LOCKED_BACKEND, LOCKED_FORMAT, MANIFEST, OPEN_CLIP_BACKEND, read_manifest

from .conftest import TINY_LIT_OPTIONS
from .helpers import TINY_LIT_CONFIG


def test_training_lowers_the_loss_and_beats_random_init_on_held_out_products(trained_lit, pairs):
    report = trained_lit.report
    losses = [row["train_loss"] for row in report["history"] if row["train_loss"] is not None]
    assert len(losses) == TINY_LIT_OPTIONS["epochs"]
    assert losses[-1] < 0.8 * losses[0]

    before, after = report["before"], report["after"]
    assert before["n"] == after["n"] == report["data"]["holdout_products"] == round(len(pairs) * 0.2)
    # Random init is near chance (MRR of a random ranking of 22 items is about 0.17).
    assert before["text_to_image"]["mrr"] < 0.3
    assert after["text_to_image"]["mrr"] > before["text_to_image"]["mrr"] + 0.2
    assert after["image_to_text"]["mrr"] > before["image_to_text"]["mrr"] + 0.1
    assert after["text_to_image"]["recall@5"] > before["text_to_image"]["recall@5"]
    assert after["mean_mrr"] == pytest.approx(max(row["holdout"]["mean_mrr"] for row in report["history"]), abs=1e-6)
    assert report["train_pairs_per_second"] > 0 and report["device"]["device"] == "cpu"
    assert report["warnings"] == [] and report["stopped"] == "completed"


def test_checkpoint_directory_and_report(trained_lit):
    checkpoint = trained_lit.checkpoint
    assert re.fullmatch(r"lit-minilm-custom-[0-9a-f]{8}-[0-9a-f]{12}", os.path.basename(checkpoint))
    manifest = read_manifest(checkpoint)
    assert manifest["format"] == LOCKED_FORMAT and manifest["embed_dim"] == 32
    assert manifest["vision_cfg"] == TINY_LIT_CONFIG["vision_cfg"]
    assert manifest["text"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["text"]["hidden_size"] == 384 and re.fullmatch(r"[0-9a-f]{16}", manifest["text"]["weights_sha256"])
    assert sorted(os.listdir(checkpoint)) == sorted(
        [MANIFEST, "model.safetensors", "report.json", "report.md"]
        + (["report.png"] if trained_lit.report["plot"] else [])
    )
    assert trained_lit.encoder == {"BACKEND": LOCKED_BACKEND, "OPTIONS": {"checkpoint": checkpoint, "device": "auto"}}

    with open(os.path.join(checkpoint, "report.json"), encoding="utf-8") as handle:
        saved = json.load(handle)
    assert saved["after"] == trained_lit.report["after"] and saved["checkpoint"] == checkpoint
    assert set(saved["before"]["text_to_image"]) == {"recall@1", "recall@5", "recall@10", "mrr", "median_rank"}
    markdown = Path(checkpoint, "report.md").read_text(encoding="utf-8")
    assert "| text->image recall@1 |" in markdown and "| image->text mrr |" in markdown
    assert LOCKED_BACKEND in markdown


def test_report_without_matplotlib_skips_the_plot_and_says_so(trained_lit, tmp_path, monkeypatch):
    real_find_spec = finetune_report.importlib.util.find_spec
    monkeypatch.setattr(
        finetune_report.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a),
    )
    report = json.loads(json.dumps(trained_lit.report))
    files = finetune_report.write_report(str(tmp_path), report)
    assert set(files) == {"json", "markdown"} and not (tmp_path / "report.png").exists()
    assert report["plot"] is None and "matplotlib is not installed" in report["plot_note"]
    assert "matplotlib is not installed" in (tmp_path / "report.md").read_text()


def test_same_seed_gives_the_same_checkpoint_and_another_seed_does_not(pairs, tmp_path):
    options = dict(TINY_LIT_OPTIONS, epochs=1, max_steps=2, batch_size=16, seed=3, plot=False)
    subset = pairs[::2]
    first = train_clip(subset, tmp_path / "a", **options)
    second = train_clip(subset, tmp_path / "b", **dict(options, pixel_cache_bytes=0))  # decodes per batch instead
    other = train_clip(subset, tmp_path / "c", **dict(options, seed=4))

    assert os.path.basename(first.checkpoint) == os.path.basename(second.checkpoint)
    weights = [Path(r.checkpoint, "model.safetensors").read_bytes() for r in (first, second, other)]
    assert weights[0] == weights[1] != weights[2]
    assert first.report["history"] == second.report["history"]
    assert first.report["after"] == second.report["after"]
    assert os.path.basename(other.checkpoint) != os.path.basename(first.checkpoint)


def test_the_held_out_split_is_by_product_seeded_and_order_independent():
    pairs = [Pair(key="p%d" % (i // 3), image=b"x", text="t%d" % i) for i in range(60)]  # 20 products, 3 pairs each
    train, held = split_by_product(pairs, holdout=0.25, seed=7)
    held_keys, train_keys = {p.key for p in held}, {p.key for p in train}
    assert len(held_keys) == 5 and len(train_keys) == 15 and not held_keys & train_keys
    assert len(held) == 15 and len(train) == 45  # every pair of a held-out product is held out
    assert {p.key for p in split_by_product(list(reversed(pairs)), 0.25, seed=7)[1]} == held_keys
    assert {p.key for p in split_by_product(pairs, 0.25, seed=8)[1]} != held_keys
    with pytest.raises(ValueError, match="at least 2 products"):
        split_by_product(pairs[:6], holdout=0.2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_by_product(pairs, holdout=1.0)


def test_retrieval_metrics():
    identity = np.eye(4)
    perfect = retrieval_metrics(identity, identity)
    assert perfect["text_to_image"] == {
        "recall@1": 1.0,
        "recall@5": 1.0,
        "recall@10": 1.0,
        "mrr": 1.0,
        "median_rank": 1.0,
    }
    assert perfect["mean_mrr"] == 1.0 and perfect["n"] == 4

    # Text i is closest to image (i + 1) % 4, its own image comes second.
    images = identity
    texts = np.array([0.6 * identity[i] + 0.8 * identity[(i + 1) % 4] for i in range(4)])
    shifted = retrieval_metrics(texts, images)
    assert shifted["text_to_image"]["recall@1"] == 0.0 and shifted["text_to_image"]["mrr"] == 0.5

    # Ties count against the model: one vector for everything ranks each right answer last.
    same = np.ones((5, 3)) / np.sqrt(3)
    collapsed = retrieval_metrics(same, same)
    assert collapsed["text_to_image"]["mrr"] == pytest.approx(1 / 5) and collapsed["image_to_text"]["recall@1"] == 0.0


def test_bad_images_are_skipped_and_reported(pairs, tmp_path):
    broken = [Pair(key="broken-%d" % i, image=b"not an image", text="a broken thing") for i in range(3)]
    result = train_clip(
        pairs[::3] + broken, tmp_path, **dict(TINY_LIT_OPTIONS, epochs=1, max_steps=1, batch_size=8, plot=False)
    )
    data = result.report["data"]
    assert data["skipped_images"] == 3 and data["usable_pairs"] == len(pairs[::3])
    assert "broken-0" in data["skipped_examples"] and "not a recognised image" in data["skipped_examples"]["broken-0"]


def test_a_time_budget_stops_training(pairs, tmp_path):
    result = train_clip(pairs[::3], tmp_path, **dict(TINY_LIT_OPTIONS, epochs=5, max_seconds=1e-3, plot=False))
    assert (result.report["stopped"], result.report["epochs_run"], result.report["steps"]) == ("time_limit", 1, 1)


def test_copy_text_model_makes_a_self_contained_checkpoint(pairs, tmp_path, trained_lit):
    from ragrec_django.ml.locked_clip import LockedTextClipEncoder

    result = train_clip(
        pairs[::3], tmp_path, **dict(TINY_LIT_OPTIONS, epochs=1, max_steps=1, copy_text_model=True, plot=False)
    )
    manifest = read_manifest(result.checkpoint)
    assert manifest["text"]["model"] == "text_model"
    assert Path(result.checkpoint, "text_model", "model.safetensors").is_file()
    encoder = LockedTextClipEncoder(checkpoint=result.checkpoint, device="cpu")
    assert encoder.text_encoder.source == os.path.join(result.checkpoint, "text_model")
    reference = LockedTextClipEncoder(checkpoint=trained_lit.checkpoint, device="cpu")
    # Same MiniLM weights, other projection: the sentence embeddings under the projections agree.
    assert np.allclose(
        encoder.text_encoder.encode_texts(["a red mug"]), reference.text_encoder.encode_texts(["a red mug"]), atol=1e-5
    )
    assert encoder.encode_texts(["a red mug"]).shape == (1, 32)


def test_bad_options_are_refused():
    with pytest.raises(TypeError, match="Unknown fine-tuning option"):
        FinetuneConfig.from_options(epoch=3)
    with pytest.raises(ValueError, match="lock_text"):
        FinetuneConfig(lock_text="bert").validated()
    with pytest.raises(ValueError, match="device"):
        FinetuneConfig(device="gpu").validated()
    default = FinetuneConfig().validated()
    assert (default.lock_text, default.from_config) == (
        "minilm",
        "small",
    )  # no pretrained CLIP: LiT from a small config
    pretrained = FinetuneConfig(pretrained="laion2b_s34b_b79k").validated()
    assert (pretrained.lock_text, pretrained.from_config) == ("none", None)


def test_open_clip_model_fine_tuned_from_a_pretrained_checkpoint_loads_with_open_clip_encoder(pairs, tmp_path):
    from ragrec_django.ml.clip import OpenClipEncoder
    from ragrec_django.ml.testing import (
        TINY_CLIP_CONFIG,
        TINY_CLIP_NAME,
        make_tiny_clip_checkpoint,
    )

    start = make_tiny_clip_checkpoint(tmp_path / "start", seed=0)
    result = train_clip(
        pairs,
        tmp_path / "out",
        lock_text="none",
        pretrained=start["pretrained"],
        model=TINY_CLIP_NAME,
        from_config=TINY_CLIP_CONFIG,
        epochs=4,
        batch_size=16,
        lr=3e-3,
        device="cpu",
        progress=False,
        plot=False,
    )
    manifest = read_manifest(result.checkpoint)
    assert manifest["format"] == "open_clip" and manifest["model"] == TINY_CLIP_NAME
    assert result.encoder["BACKEND"] == OPEN_CLIP_BACKEND
    options = dict(result.encoder["OPTIONS"], device="cpu")
    assert options["pretrained"].endswith("open_clip_model.safetensors") and options["config"].endswith(
        "open_clip_config.json"
    )

    # "before" is the starting checkpoint, evaluated through the production encoder.
    held = _held_out(pairs)
    start_encoder = OpenClipEncoder(**start, device="cpu")
    assert _metrics(start_encoder, held)["mean_mrr"] == pytest.approx(result.report["before"]["mean_mrr"], abs=1e-4)
    # "after" is what the new checkpoint gives when the shop loads it with the printed OPTIONS.
    tuned = OpenClipEncoder(**options)
    assert _metrics(tuned, held)["mean_mrr"] == pytest.approx(result.report["after"]["mean_mrr"], abs=1e-4)
    assert (
        result.report["best_epoch"] > 0
        and result.report["after"]["mean_mrr"] > result.report["before"]["mean_mrr"] + 0.1
    )
    assert tuned.dimension == 64 and tuned.version != start_encoder.version
    losses = [row["train_loss"] for row in result.report["history"][1:]]
    assert losses[-1] < losses[0]

    # The folder is also an open_clip "local-dir:" model.
    import open_clip
    from safetensors.torch import load_file

    plain = open_clip.create_model("local-dir:" + result.checkpoint)
    saved = load_file(options["pretrained"])
    assert all(plain.state_dict()[name].equal(tensor) for name, tensor in saved.items())


def test_a_run_that_never_beats_the_start_keeps_the_starting_weights_and_says_so(pairs, tmp_path):
    from safetensors.numpy import load_file

    from ragrec_django.ml.testing import (
        TINY_CLIP_CONFIG,
        TINY_CLIP_NAME,
        make_tiny_clip_checkpoint,
    )

    start = make_tiny_clip_checkpoint(tmp_path / "start", seed=0)
    result = train_clip(
        pairs[::3],
        tmp_path / "out",
        lock_text="none",
        pretrained=start["pretrained"],
        model=TINY_CLIP_NAME,
        from_config=TINY_CLIP_CONFIG,
        epochs=5,
        patience=1,
        batch_size=8,
        lr=1e-9,
        device="cpu",
        progress=False,
        plot=False,
    )
    assert (result.report["stopped"], result.report["epochs_run"]) == ("early_stopping", 1)
    assert result.report["best_epoch"] == 0 and "starting weights" in result.report["warnings"][-1]
    saved, original = load_file(result.encoder["OPTIONS"]["pretrained"]), load_file(start["pretrained"])
    assert saved.keys() == original.keys() and all((saved[k] == original[k]).all() for k in saved)
    assert "**Warning:**" in Path(result.files["markdown"]).read_text(encoding="utf-8")


def test_small_open_clip_config_trains_from_scratch(pairs, tmp_path):
    config = {
        "embed_dim": 32,
        "vision_cfg": TINY_LIT_CONFIG["vision_cfg"],
        "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    result = train_clip(
        pairs[::3],
        tmp_path,
        lock_text="none",
        from_config=config,
        epochs=1,
        max_steps=2,
        batch_size=16,
        device="cpu",
        progress=False,
        plot=False,
    )
    assert os.path.basename(result.checkpoint).startswith("ragrec-clip-")
    assert (
        result.report["stopped"] == "completed" and result.report["steps"] == 1
    )  # 24 train pairs: one full batch of 16


def _held_out(pairs, holdout=0.2, seed=0):
    """The evaluation set ``train_clip`` uses: the first pair of each held-out product, by key."""
    _, held = split_by_product(pairs, holdout, seed)
    first = {}
    for pair in sorted(held, key=lambda p: p.key):
        first.setdefault(pair.key, pair)
    return list(first.values())


def _metrics(encoder, held):
    texts = encoder.encode_texts([p.text for p in held])
    images = encoder.encode_images([p.image for p in held])
    assert not images.errors
    return retrieval_metrics(texts, images.vectors)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_mixed_precision_training_on_cuda(pairs, tmp_path, precision):
    import torch

    from ragrec_django.ml.locked_clip import LockedTextClipEncoder

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    result = train_clip(pairs, tmp_path, **dict(TINY_LIT_OPTIONS, device="cuda", precision=precision, plot=False))
    report = result.report
    assert report["device"]["device"].startswith("cuda") and report["device"]["autocast"] in ("bfloat16", "float16")
    assert report["after"]["text_to_image"]["mrr"] > report["before"]["text_to_image"]["mrr"] + 0.1
    encoder = LockedTextClipEncoder(checkpoint=result.checkpoint, device="cuda")
    images = encoder.encode_images([p.image for p in pairs[:4]])
    assert not images.errors and np.allclose(np.linalg.norm(images.vectors, axis=1), 1, atol=1e-2)


def test_locked_text_training_can_start_from_a_pretrained_image_tower(pairs, tmp_path):
    from safetensors.numpy import load_file

    from ragrec_django.ml.testing import (
        TINY_CLIP_CONFIG,
        TINY_CLIP_NAME,
        make_tiny_clip_checkpoint,
    )

    start = make_tiny_clip_checkpoint(tmp_path / "start", seed=1)
    result = train_clip(
        pairs[::3],
        tmp_path / "out",
        lock_text="minilm",
        pretrained=start["pretrained"],
        model=TINY_CLIP_NAME,
        from_config=TINY_CLIP_CONFIG,
        epochs=1,
        batch_size=8,
        lr=1e-9,
        device="cpu",
        progress=False,
        plot=False,
    )
    manifest = read_manifest(result.checkpoint)
    assert manifest["format"] == LOCKED_FORMAT and manifest["name"] == "lit-minilm-%s" % TINY_CLIP_NAME
    assert manifest["embed_dim"] == 64 and manifest["vision_cfg"] == TINY_CLIP_CONFIG["vision_cfg"]
    assert manifest["preprocess"]["size"] == [32, 32]
    saved, pretrained = load_file(os.path.join(result.checkpoint, "model.safetensors")), load_file(start["pretrained"])
    visual = [name for name in pretrained if name.startswith("visual.")]
    assert visual and all((saved[name] == pretrained[name]).all() for name in visual)  # best epoch 0: the start
