"""The demo's image space without pretrained CLIP weights: the settings switch, and prepare_demo training a
LiT checkpoint on the demo catalogue, reusing it, and the photo and text->image search it then serves."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from ragrec_django import registry, storage
from ragrec_django.ml.finetune import train_clip
from ragrec_django.ml.locked_clip import LockedTextClipEncoder, read_manifest
from ragrec_django.models import Item, SpaceGeneration
from ragrec_django.services import recommend
from shop_demo import democlip
from shop_demo.catalog.models import Product
from tests.finetune.helpers import TINY_LIT_CONFIG, shape_pairs

ROOT = Path(__file__).resolve().parents[2]
NO_CLIP_ENV = {"RAGREC_CLIP_PRETRAINED": "", "RAGREC_CLIP_CHECKPOINT": ""}

#: prepare_demo's training options in these tests: the tiny image tower, a fixed number of epochs (no time budget
#: decides, so the run is the same on a busy machine), otherwise what SHOP_DEMO_CLIP_TRAINING sets.
TINY_DEMO_TRAINING = {
    "lock_text": "minilm",
    "from_config": TINY_LIT_CONFIG,
    "epochs": 40,
    "batch_size": 32,
    "lr": 3e-3,
    "patience": 0,
    "seed": 0,
    "name": "demo-lit",
    "device": "cpu",
    "plot": False,
}


@pytest.fixture(scope="module")
def lit_checkpoint(tmp_path_factory) -> str:
    """A real (briefly trained) LiT checkpoint folder."""
    result = train_clip(
        shape_pairs(styles=1),
        tmp_path_factory.mktemp("lit"),
        lock_text="minilm",
        from_config=TINY_LIT_CONFIG,
        epochs=1,
        batch_size=16,
        device="cpu",
        progress=False,
        plot=False,
    )
    return result.checkpoint


def demo_dir_with(checkpoint: str, root: Path) -> Path:
    """A demo checkpoint folder (var/models/demo-lit) holding a copy of ``checkpoint`` as the current one."""
    directory = root / "models" / "demo-lit"
    directory.mkdir(parents=True)
    copy = directory / Path(checkpoint).name
    shutil.copytree(checkpoint, copy)
    democlip.record_demo_checkpoint(directory, copy, minutes=1)
    return directory


# ---------------------------------------------------------------- the settings switch


def test_without_weights_or_checkpoint_there_is_no_clip_space(tmp_path):
    choice = democlip.choose_clip(NO_CLIP_ENV, tmp_path / "models" / "demo-lit")
    assert (choice.source, choice.encoder, choice.spaces) == ("none", None, {})


def test_pretrained_weights_keep_the_open_clip_encoder_and_both_spaces(tmp_path, lit_checkpoint):
    env = {
        "RAGREC_CLIP_PRETRAINED": "laion2b_s34b_b79k",
        "RAGREC_CLIP_MODEL": "ViT-B-16",
        "RAGREC_CLIP_CHECKPOINT": lit_checkpoint,
    }
    choice = democlip.choose_clip(env, demo_dir_with(lit_checkpoint, tmp_path))
    assert choice.source == "pretrained"
    assert choice.encoder == {
        "BACKEND": "ragrec_django.ml.clip.OpenClipEncoder",
        "OPTIONS": {"model": "ViT-B-16", "pretrained": "laion2b_s34b_b79k", "config": None, "device": "auto"},
    }
    assert choice.spaces == {
        "image": {"ENCODER": "clip", "MODALITY": "image"},
        "clip-text": {"ENCODER": "clip", "MODALITY": "text"},
    }


def test_a_named_checkpoint_selects_the_locked_text_encoder(tmp_path, lit_checkpoint, settings):
    choice = democlip.choose_clip({"RAGREC_CLIP_CHECKPOINT": lit_checkpoint}, tmp_path / "nothing-here")
    assert choice.source == "checkpoint" and choice.checkpoint == lit_checkpoint
    assert choice.encoder == {
        "BACKEND": "ragrec_django.ml.locked_clip.LockedTextClipEncoder",
        "OPTIONS": {"checkpoint": lit_checkpoint, "device": "auto"},
    }
    assert choice.spaces == {"image": {"ENCODER": "clip", "MODALITY": "image"}}  # no clip-text: a map of the text space

    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {**settings.RAGREC["ENCODERS"], "clip": choice.encoder},
        "SPACES": {**settings.RAGREC["SPACES"], **choice.spaces},
    }
    encoder = registry.get_space("image").encoder
    assert isinstance(encoder, LockedTextClipEncoder) and encoder.checkpoint == lit_checkpoint
    assert encoder.dimension == TINY_LIT_CONFIG["embed_dim"]


def test_the_trained_demo_checkpoint_is_the_default_and_off_turns_it_off(tmp_path, lit_checkpoint):
    directory = demo_dir_with(lit_checkpoint, tmp_path)
    choice = democlip.choose_clip(NO_CLIP_ENV, directory)
    assert choice.source == "demo-checkpoint" and choice.checkpoint == str(directory / Path(lit_checkpoint).name)
    assert choice.encoder["BACKEND"] == "ragrec_django.ml.locked_clip.LockedTextClipEncoder"
    assert democlip.choose_clip({"RAGREC_CLIP_CHECKPOINT": "off"}, directory).encoder is None

    # A pointer to a folder that is gone (or was never completed) is ignored.
    shutil.rmtree(directory / Path(lit_checkpoint).name)
    assert democlip.choose_clip(NO_CLIP_ENV, directory).source == "none"


def test_a_named_checkpoint_that_is_not_one_is_an_error(tmp_path):
    with pytest.raises(democlip.ClipSettingError, match="not a ragrec CLIP checkpoint directory"):
        democlip.choose_clip({"RAGREC_CLIP_CHECKPOINT": str(tmp_path)}, tmp_path)


def test_the_demo_settings_module_serves_the_demo_checkpoint(tmp_path, lit_checkpoint):
    """The real shop_demo.settings in a fresh process: its image space is the LiT checkpoint under VAR_DIR."""
    directory = demo_dir_with(lit_checkpoint, tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAGREC_CLIP_")}
    env.update(
        DATABASE_URL="postgres://unused/db",
        SHOP_DEMO_VAR_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
    )
    script = (
        "import django, json; django.setup()\n"
        "from ragrec_django import registry\n"
        "encoder = registry.get_space('image').encoder\n"
        "print(json.dumps([type(encoder).__name__, encoder.checkpoint, sorted(registry.get_spaces())]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    name, checkpoint, spaces = json.loads(done.stdout.strip().splitlines()[-1])
    assert name == "LockedTextClipEncoder" and checkpoint == str(directory / Path(lit_checkpoint).name)
    assert spaces == ["image", "text"]


# ---------------------------------------------------------------- prepare_demo --clip-only


def prepare(**options) -> str:
    out = io.StringIO()
    call_command("prepare_demo", stdout=out, clip_only=True, **options)
    return out.getvalue()


@pytest.mark.django_db
def test_prepare_demo_trains_once_then_photo_and_text_to_image_search_work(seed, settings, tmp_path, monkeypatch):
    for name in ("RAGREC_CLIP_PRETRAINED", "RAGREC_CLIP_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    seed(count=120)
    directory = tmp_path / "models" / "demo-lit"
    settings.SHOP_DEMO_CLIP_DIR = directory
    settings.SHOP_DEMO_CLIP_TRAINING = TINY_DEMO_TRAINING

    assert "training is skipped" in prepare(skip_clip_training=True) and not directory.exists()

    output = prepare(clip_minutes=10)
    assert "Training the image model on the demo catalogue" in output
    assert "training starts (untrained model: held-out text->image R@1" in output and "ETA" in output
    assert output.count("  epoch ") == 40 and "epoch 40: loss" in output
    checkpoint = democlip.demo_checkpoint(directory)
    assert checkpoint is not None and read_manifest(checkpoint)["name"] == "demo-lit"
    record = democlip.read_record(directory)
    assert record["products"] == 120 and record["holdout_products"] == 24 and record["epochs_run"] == 40
    assert "held-out text->image recall@10 %.2f" % record["text_to_image_after"]["recall@10"] in output
    assert record["text_to_image_after"]["mrr"] > record["text_to_image_before"]["mrr"]

    # A second run reuses the cached checkpoint: nothing is trained or written.
    folders = sorted(p.name for p in directory.iterdir())
    again = prepare(clip_minutes=10)
    assert "reusing the demo checkpoint %s" % checkpoint in again and "epoch" not in again
    assert sorted(p.name for p in directory.iterdir()) == folders

    # What the settings then configure (no CLIP variables set): the image space on the LiT checkpoint,
    # encoded through the normal encoding path.
    choice = democlip.choose_clip(os.environ, directory)
    assert choice.source == "demo-checkpoint"
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {**settings.RAGREC["ENCODERS"], "clip": choice.encoder},
        "SPACES": {**settings.RAGREC["SPACES"], **choice.spaces},
    }
    call_command("ragrec_reindex", "--sync", "--space", "image", stdout=io.StringIO(), stderr=io.StringIO())
    generation = storage.active_generation("image")
    assert generation.encoder_version == LockedTextClipEncoder(checkpoint=str(checkpoint)).version
    assert generation.embeddings.count() == 120

    products = list(Product.objects.select_related("category").order_by("pk"))
    by_key = {str(p.pk): p for p in products}
    by_item = {item_id: by_key[key] for item_id, key in Item.objects.values_list("id", "key")}

    # Search by photo: a product's own picture finds that product (or a variant of it) near the top, the first
    # result has its colour, and the results are mostly of its category (chance: 1/12 categories, 1/14 colours).
    found_itself, same_colour_first, same_category = [], [], []
    for product in products[::6]:
        with product.image.open("rb") as handle:
            photo = handle.read()
        found = [by_key[r.item.key] for r in recommend.search_by_image(photo, k=5)]
        family = {product.pk, product.parent_id} - {None}
        found_itself.append(any(p.pk in family or p.parent_id in family for p in found))
        same_colour_first.append(found[0].colour == product.colour)
        same_category.append(np.mean([p.category_id == product.category_id for p in found]))
    photo_figures = (np.mean(found_itself), np.mean(same_colour_first), np.mean(same_category))
    print("photo search: itself in top 5 %.2f, same colour first %.2f, same category in top 5 %.2f" % photo_figures)
    assert photo_figures[0] >= 0.9 and photo_figures[1] >= 0.7 and photo_figures[2] >= 0.3, photo_figures

    # Text -> image: "<colour> <noun>" queries, encoded by the image space's text side (MiniLM + projection),
    # find pictures of that category, and of that colour, far above chance (1/12 categories, 1/14 colours).
    combos = Counter((p.colour, p.category.name) for p in products)
    queries = [(colour, category) for (colour, category), n in combos.most_common() if n >= 2][:8]
    nouns = {p.category.name: p.title.split()[-1] for p in products}
    category_hits, colour_hits = [], []
    for colour, category in queries:
        vector = recommend.query_cache.get("image", "%s %s" % (colour, nouns[category].lower()))
        found = [by_item[n.item_id] for n in storage.nearest("image", vector, 5)]
        category_hits.append(np.mean([p.category.name == category for p in found]))
        colour_hits.append(np.mean([p.colour == colour for p in found]))
    print("text->image: category %.2f, colour %.2f in the top 5" % (np.mean(category_hits), np.mean(colour_hits)))
    assert np.mean(category_hits) >= 0.25, category_hits
    assert np.mean(colour_hits) >= 0.4, colour_hits


@pytest.mark.django_db
def test_a_new_checkpoint_starts_a_switch_of_the_image_space_and_prepare_demo_promotes_it(
    seed, settings, tmp_path, lit_checkpoint, monkeypatch
):
    """Image vectors of another model in the database: the new checkpoint goes through switch -> reindex -> promote."""
    for name in ("RAGREC_CLIP_PRETRAINED", "RAGREC_CLIP_CHECKPOINT"):
        monkeypatch.delenv(name, raising=False)
    seed(count=12)
    old = train_clip(
        shape_pairs(styles=1),
        tmp_path / "old",
        lock_text="minilm",
        from_config=TINY_LIT_CONFIG,
        epochs=1,
        batch_size=16,
        seed=1,
        device="cpu",
        progress=False,
        plot=False,
    ).checkpoint

    def use(checkpoint):
        choice = democlip.choose_clip({"RAGREC_CLIP_CHECKPOINT": checkpoint}, tmp_path)
        settings.RAGREC = {
            **settings.RAGREC,
            "ENCODERS": {**settings.RAGREC["ENCODERS"], "clip": choice.encoder},
            "SPACES": {**settings.RAGREC["SPACES"], **choice.spaces},
        }

    use(old)
    call_command("ragrec_reindex", "--sync", "--space", "image", stdout=io.StringIO(), stderr=io.StringIO())
    first = storage.active_generation("image")

    directory = demo_dir_with(lit_checkpoint, tmp_path / "var")
    settings.SHOP_DEMO_CLIP_DIR = directory
    output = prepare()
    assert "reusing the demo checkpoint" in output and "holds vectors of another model" in output
    building = storage.building_generation("image")
    current = democlip.demo_checkpoint(directory)
    assert building.encoder_version == LockedTextClipEncoder(checkpoint=str(current)).version
    assert storage.active_generation("image") == first  # searches keep the old vectors meanwhile

    use(str(current))  # the worker and the next commands start with the new setting
    call_command("ragrec_reindex", "--sync", "--stale", "--space", "image", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    call_command("prepare_demo", stdout=out, no_complements=True, drafts=0)
    assert "the image space now uses the demo checkpoint" in out.getvalue()
    assert storage.active_generation("image").pk == building.pk
    assert SpaceGeneration.objects.get(pk=first.pk).status == "retired"
