"""ragrec_finetune_clip, finetune_clip_task and the zero-downtime switch of a space to a fine-tuned checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from django.core import checks
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import CommandError

from ragrec_django import registry, storage
from ragrec_django.ml.finetune import train_clip
from ragrec_django.ml.locked_clip import LOCKED_BACKEND, LockedTextClipEncoder
from ragrec_django.models import Embedding, SpaceGeneration
from ragrec_django.services import encoding
from shop_demo.catalog.models import Category, Product

from .conftest import TINY_LIT_OPTIONS
from .helpers import TINY_LIT_CONFIG

pytestmark = pytest.mark.django_db


@pytest.fixture
def products(pairs):
    """Products with pictures: every other synthetic pair, titled by its caption; plus one without a picture."""
    category = Category.objects.create(name="Things", slug="things")
    made = []
    for pair in pairs[::2]:
        product = Product(title=pair.text.capitalize(), slug=pair.key, category=category, price="10.00", stock=3)
        product.image.save("%s.jpg" % pair.key, ContentFile(pair.image), save=False)
        product.save()
        made.append(product)
    Product.objects.create(title="A mystery box", slug="mystery", category=category, price="5.00", stock=1)
    return made


@pytest.fixture
def tiny_config_file(tmp_path):
    path = tmp_path / "tiny-lit.json"
    path.write_text(json.dumps(TINY_LIT_CONFIG))
    return str(path)


def test_command_trains_writes_the_checkpoint_and_prints_options_and_switch_steps(
    products, tiny_config_file, tmp_path, capsys
):
    out = tmp_path / "checkpoints"
    call_command(
        "ragrec_finetune_clip",
        "--out",
        str(out),
        "--from-config",
        tiny_config_file,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--lr",
        "0.002",
        "--device",
        "cpu",
        "--no-progress",
        "--no-plot",
        "--switch",
        "--activate",
        "image",
        "clip-text",
    )
    printed = capsys.readouterr().out
    (checkpoint,) = [os.path.join(out, name) for name in os.listdir(out)]
    report = json.loads(Path(checkpoint, "report.json").read_text(encoding="utf-8"))
    assert report["data"]["usable_pairs"] == len(products) and report["data"]["holdout_products"] == round(
        len(products) * 0.2
    )
    assert report["config"]["lock_text"] == "minilm"  # auto: no pretrained CLIP given
    assert "1 item(s) without image/text" in printed
    assert "| text->image recall@1 |" in printed
    assert "Checkpoint: %s" % checkpoint in printed
    assert "'BACKEND': '%s'" % LOCKED_BACKEND in printed and "'checkpoint': '%s'" % checkpoint in printed
    assert 'RAGREC["SPACES"][\'clip-text\'] = {"ENCODER": "clip", "MODALITY": "text"}' in printed
    steps = [line.strip() for line in printed.splitlines() if line.strip()[:2] in {"%d." % i for i in range(1, 10)}]
    assert [step.split("#")[0].split("   ")[0].split(".", 1)[1].strip() for step in steps] == [
        "manage.py ragrec_spaces switch image",
        "manage.py ragrec_spaces switch clip-text",
        "manage.py ragrec_reindex --space image --wait",
        "manage.py ragrec_reindex --space clip-text --wait",
        "manage.py ragrec_spaces promote image",
        "manage.py ragrec_spaces promote clip-text",
        "manage.py ragrec_spaces rollback image",
        "manage.py ragrec_spaces rollback clip-text",
    ]


def test_command_refuses_a_missing_config_file(products, tmp_path):
    with pytest.raises(CommandError, match="--from-config"):
        call_command("ragrec_finetune_clip", "--out", str(tmp_path), "--from-config", "nope.json", "--no-progress")


def test_celery_task_wraps_the_same_entry_point(products, tiny_config_file, tmp_path):
    from ragrec_django.tasks import finetune_clip_task

    result = finetune_clip_task.apply(
        args=(str(tmp_path),),
        kwargs={
            "from_config": tiny_config_file,
            "epochs": 1,
            "max_steps": 1,
            "batch_size": 16,
            "device": "cpu",
            "plot": False,
            "text_field": "title",
        },
    ).get()
    assert os.path.isdir(result["checkpoint"]) and result["encoder"]["BACKEND"] == LOCKED_BACKEND
    assert set(result["after"]) >= {"text_to_image", "image_to_text", "mean_mrr"}
    json.dumps(result)  # serialisable for any result backend


# ----------------------------------------------------------------------------- the zero-downtime switch


@pytest.fixture(scope="module")
def second_checkpoint(pairs, tmp_path_factory):
    """Another real tiny LiT checkpoint (other seed, shorter training): the "new model" of the switch."""
    return train_clip(
        pairs, tmp_path_factory.mktemp("lit-b"), **dict(TINY_LIT_OPTIONS, seed=1, epochs=1, max_steps=3, plot=False)
    ).checkpoint


def _use_checkpoint(settings, checkpoint):
    """What deploying the printed setting does: the space's encoder now serves ``checkpoint``."""
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {"clip": {"BACKEND": LOCKED_BACKEND, "OPTIONS": {"checkpoint": checkpoint, "device": "cpu"}}},
        "SPACES": {"image": {"ENCODER": "clip", "MODALITY": "image"}},
    }


def _generation_vectors(generation) -> dict[int, np.ndarray]:
    rows = Embedding.objects.filter(generation=generation).values_list("item_id", "vector")
    return {item_id: np.asarray(vector, dtype=np.float32) for item_id, vector in rows}


def _assert_served_by(generation, encoder, anchor_id, texts=("a red mug", "a blue lamp", "a black sneaker")):
    """Every query result comes from ``generation`` alone, queried with the encoder that built it.

    Queries: text->image (query vector from ``encoder``'s text tower) and item->item (the anchor's stored
    vector, as similar_items does). Each returned distance must be the cosine distance to that item's vector
    *in this generation*, and every item of the generation must be there (it is complete).
    """
    active = storage.active_generation("image")
    assert active.pk == generation.pk
    assert active.encoder_version == encoder.version  # query vectors and stored vectors come from one model
    vectors = _generation_vectors(generation)
    queries = list(encoder.encode_texts(list(texts))) + [storage.vectors_for_items("image", [anchor_id])[anchor_id]]
    for query in queries:
        found = storage.nearest("image", query, k=len(vectors))
        assert {n.item_id for n in found} == set(vectors)
        unit = query / np.linalg.norm(query)
        for neighbour in found:
            stored = vectors[neighbour.item_id]
            expected = 1 - float(stored @ unit / np.linalg.norm(stored))
            assert neighbour.distance == pytest.approx(expected, abs=3e-3), neighbour
    return len(queries)


def test_zero_downtime_switch_to_a_fine_tuned_checkpoint(
    settings, products, trained_lit, second_checkpoint, monkeypatch, capsys
):
    old_checkpoint, new_checkpoint = trained_lit.checkpoint, second_checkpoint
    _use_checkpoint(settings, old_checkpoint)
    call_command("ragrec_reindex", "--sync", "--space", "image")
    old = storage.active_generation("image")
    old_encoder = LockedTextClipEncoder(checkpoint=old_checkpoint, device="cpu")  # the web processes' encoder
    anchor = Product.objects.get(slug=products[0].slug)
    from ragrec_django.models import Item

    anchor_id = Item.objects.get(key=str(anchor.pk)).id
    _assert_served_by(old, old_encoder, anchor_id)

    # 1. The encoding side gets the new setting; web processes keep the old one until the promotion.
    _use_checkpoint(settings, new_checkpoint)
    new_encoder = registry.get_encoder("clip")
    assert new_encoder.version != old_encoder.version and new_encoder.dimension == old_encoder.dimension
    assert any(m.id == "ragrec.W001" for m in checks.run_checks(tags=[checks.Tags.database], databases=["default"]))

    # 2. ragrec_spaces switch image: a building generation; queries still on the old one.
    call_command("ragrec_spaces", "switch", "image")
    building = storage.building_generation("image")
    assert building.encoder_version == new_encoder.version and storage.active_generation("image") == old
    with pytest.raises(CommandError, match="not encoded yet"):
        call_command("ragrec_spaces", "promote", "image")

    # 3. ragrec_reindex --space image: after every committed chunk, queries see only the complete old generation.
    real_encode_items = encoding.encode_items
    filled = []

    def encode_then_query(space, pks, **kwargs):
        report = real_encode_items(space, pks, **kwargs)
        filled.append(Embedding.objects.filter(generation=building).count())
        _assert_served_by(old, old_encoder, anchor_id)
        return report

    monkeypatch.setattr(encoding, "encode_items", encode_then_query)
    call_command("ragrec_reindex", "--sync", "--space", "image", "--chunk-size", "5")
    monkeypatch.setattr(encoding, "encode_items", real_encode_items)
    assert len(filled) >= 3 and filled == sorted(filled) and filled[0] < len(products) == filled[-1]
    assert _generation_vectors(old).keys() == _generation_vectors(building).keys()
    assert not np.allclose(_generation_vectors(old)[anchor_id], _generation_vectors(building)[anchor_id], atol=1e-2)

    # 4. ragrec_spaces promote image: one transaction; from now on only the new generation answers.
    call_command("ragrec_spaces", "promote", "image")
    assert SpaceGeneration.objects.get(pk=old.pk).status == SpaceGeneration.Status.RETIRED
    _assert_served_by(building, new_encoder, anchor_id)
    assert not any(m.id == "ragrec.W001" for m in checks.run_checks(tags=[checks.Tags.database], databases=["default"]))

    # 5. ragrec_spaces rollback image (and the old setting back): the old generation answers again, unchanged.
    call_command("ragrec_spaces", "rollback", "image")
    _use_checkpoint(settings, old_checkpoint)
    _assert_served_by(old, old_encoder, anchor_id)
    assert SpaceGeneration.objects.get(pk=building.pk).status == SpaceGeneration.Status.RETIRED
    assert "Active: image#1" in capsys.readouterr().out
