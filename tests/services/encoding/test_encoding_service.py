"""Encoding items into pgvector through the real encoders (bundled MiniLM, tiny CLIP checkpoint)."""

import threading

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ragrec_django import registry, storage
from ragrec_django.models import Embedding, EncodingFailure, Item, SpaceGeneration
from ragrec_django.services import encoding
from shop_demo.catalog.models import Product
from shop_demo.celery import app as celery_app

pytestmark = pytest.mark.django_db


def keys_of(neighbours):
    return [Item.objects.get(id=n.item_id).title for n in neighbours]


def test_text_space_with_real_minilm(ragrec_encoders, make_products):
    products = make_products(
        [
            ("Red ceramic coffee mug", "red", None),
            ("Blue cotton t-shirt", "blue", None),
            ("Stainless steel kettle", None, None),
        ]
    )
    report = encoding.encode_items("text", [p.pk for p in products])
    assert (report.encoded, report.skipped, report.failed) == (3, 0, {})

    generation = SpaceGeneration.objects.get(space="text", status="active")
    assert generation.dimension == 384 and generation.encoder == "minilm"
    vectors = storage.vectors_for_items("text", Item.objects.values_list("id", flat=True))
    assert all(abs(np.linalg.norm(v) - 1) < 1e-2 for v in vectors.values())  # halfvec keeps ~3 digits

    query = registry.get_encoder("minilm").encode_texts(["a cup for coffee"])[0]
    assert keys_of(storage.nearest("text", query, k=3))[0] == "Red ceramic coffee mug"
    query = registry.get_encoder("minilm").encode_texts(["shirt to wear"])[0]
    assert keys_of(storage.nearest("text", query, k=3))[0] == "Blue cotton t-shirt"


def test_unchanged_items_are_skipped_and_changed_ones_re_encoded(ragrec_encoders, make_products):
    products = make_products([("Red mug", "red", None), ("Blue mug", "blue", None)])
    pks = [p.pk for p in products]
    encoding.encode_items("text", pks)
    before = dict(Embedding.objects.values_list("item__key", "updated_at"))

    again = encoding.encode_items("text", pks)
    assert (again.encoded, again.skipped) == (0, 2)
    assert dict(Embedding.objects.values_list("item__key", "updated_at")) == before

    Product.objects.filter(pk=pks[0]).update(title="Green mug")
    changed = encoding.encode_items("text", pks)
    assert (changed.encoded, changed.skipped) == (1, 1)
    assert Item.objects.get(key=str(pks[0])).title == "Green mug"
    forced = encoding.encode_items("text", pks, force=True)
    assert forced.encoded == 2


def test_image_space_reports_bad_images_per_item(ragrec_encoders, make_products):
    products = make_products(
        [
            ("Red mug", "red", None),
            ("Blue mug", "blue", None),
            ("Broken mug", "red", b"\xff\xd8\xff\xe0 this is not really a jpeg"),
            ("Mug without photo", None, None),
        ]
    )
    report = encoding.encode_items("image", [p.pk for p in products])
    assert report.encoded == 2
    assert set(report.failed) == {str(products[2].pk), str(products[3].pk)}
    assert report.failed[str(products[2].pk)].startswith("bad image:")
    assert report.failed[str(products[3].pk)] == "no image to encode"

    generation = SpaceGeneration.objects.get(space="image")
    assert generation.dimension == registry.get_encoder("clip").dimension
    assert Embedding.objects.filter(generation=generation).count() == 2
    assert EncodingFailure.objects.filter(generation=generation).count() == 2

    # The same CLIP model embeds text into the joint space ("clip-text"), same dimension.
    encoding.encode_items("clip-text", [p.pk for p in products])
    assert SpaceGeneration.objects.get(space="clip-text").dimension == generation.dimension


def test_deleted_host_items_leave_the_index(ragrec_encoders, make_products):
    products = make_products([("Red mug", "red", None), ("Blue mug", "blue", None)])
    encoding.encode_items("text", [p.pk for p in products])
    gone = products[0].pk
    products[0].delete()
    assert not Item.objects.filter(key=str(gone)).exists()
    assert Embedding.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_finish_and_write_each_item_at_most_once_per_run(
    ragrec_encoders, many_products, committed_writes
):
    """Two runs over the same items at once: no error, every item encoded, no run writes an item twice.

    Both runs may read "not encoded yet" before either commits, so an item is written once or twice
    (an insert, then an update of the same row): the committed writes are exactly the runs' ``encoded``.
    """
    pks = many_products(40)
    errors, reports = [], []

    def run():
        try:
            reports.append(encoding.encode_items("text", pks))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [(r.encoded + r.skipped, r.failed) for r in reports] == [(40, {}), (40, {})]
    writes = committed_writes()
    generation = SpaceGeneration.objects.get(space="text")
    assert set(writes) == {"%d:%d" % (generation.pk, item_id) for item_id in Item.objects.values_list("id", flat=True)}
    assert set(writes.values()) <= {1, 2}
    assert sum(writes.values()) == sum(r.encoded for r in reports)
    assert Embedding.objects.count() == 40


def test_saving_a_product_enqueues_encoding_after_commit(
    settings, ragrec_encoders, make_products, django_capture_on_commit_callbacks
):
    settings.RAGREC = {**settings.RAGREC, "AUTO_ENCODE": True, "SPACES": {"text": settings.RAGREC["SPACES"]["text"]}}
    with django_capture_on_commit_callbacks() as callbacks:
        make_products([("Yellow mug", "yellow", None)])
    assert not Item.objects.exists() and not Embedding.objects.exists()  # nothing happens before commit
    celery_app.conf.task_always_eager = True
    try:
        for callback in callbacks:
            callback()
    finally:
        celery_app.conf.task_always_eager = False
    assert Item.objects.get().title == "Yellow mug"
    assert Embedding.objects.filter(item__title="Yellow mug", generation__space="text").count() == 1


def test_auto_encode_off_still_mirrors_but_does_not_encode(
    ragrec_encoders, make_products, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        make_products([("Yellow mug", "yellow", None)])
    assert Item.objects.get().title == "Yellow mug"
    assert not Embedding.objects.exists()


def test_reindex_command_sync_reports_coverage(ragrec_encoders, make_products, capsys):
    make_products([("Red mug", "red", None), ("Broken mug", "red", b"not an image"), ("Blue mug", "blue", None)])
    call_command("ragrec_reindex", "--sync", "--space", "image", "--space", "text")
    out = capsys.readouterr().out
    assert "image: 2 encoded, 0 unchanged, 1 failed" in out
    assert "text: 3 encoded, 0 unchanged, 0 failed" in out
    assert "failed item" in out and "bad image" in out

    call_command("ragrec_reindex", "--sync", "--stale", "--space", "text")
    assert "Encoding 0 item(s) into space 'text'" in capsys.readouterr().out


def test_switching_a_space_to_a_model_of_another_dimension(settings, ragrec_encoders, make_products, capsys):
    products = make_products([("Red mug", "red", None), ("Blue mug", "blue", None)])
    call_command("ragrec_reindex", "--sync", "--space", "text")
    old = SpaceGeneration.objects.get(space="text")

    # The shop points the "text" space at the CLIP text tower (another dimension).
    settings.RAGREC = {
        **settings.RAGREC,
        "SPACES": {**settings.RAGREC["SPACES"], "text": {"ENCODER": "clip", "MODALITY": "text"}},
    }
    with pytest.raises(CommandError, match="ragrec_spaces switch text"):
        call_command("ragrec_reindex", "--sync", "--space", "text")

    call_command("ragrec_spaces", "switch", "text")
    with pytest.raises(CommandError, match="not encoded yet"):
        call_command("ragrec_spaces", "promote", "text")
    call_command("ragrec_reindex", "--sync", "--space", "text")
    assert storage.active_generation("text") == old  # queries still on the complete old generation
    call_command("ragrec_spaces", "promote", "text")
    new = storage.active_generation("text")
    assert new.dimension == registry.get_encoder("clip").dimension != old.dimension
    assert len(storage.nearest("text", np.ones(new.dimension, dtype=np.float32), k=5)) == len(products)

    call_command("ragrec_spaces", "rollback", "text")
    assert storage.active_generation("text") == old
    call_command("ragrec_spaces", "status")
    assert "text#2" in capsys.readouterr().out


def test_vectors_of_a_category_without_a_centroid_queue_its_computation(
    settings, ragrec_encoders, make_products, django_capture_on_commit_callbacks
):
    """Query routing (``HNSW["QUERY_CATEGORIES"]``) needs each category's centroid: writing vectors of a category
    that has none queues ``refresh_centroids_task`` after commit; a category with a fresh one queues nothing."""
    from ragrec_django.models import CategoryCentroid

    settings.RAGREC = {**settings.RAGREC, "SPACES": {"text": settings.RAGREC["SPACES"]["text"]}}
    mugs = make_products([("Red mug", "red", None), ("Blue mug", "blue", None)])
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            encoding.encode_items("text", [p.pk for p in mugs[:1]])
        generation = SpaceGeneration.objects.get(space="text")
        first = CategoryCentroid.objects.get(generation=generation)
        assert (first.category, first.items) == ("Mugs", 1)
        with django_capture_on_commit_callbacks(execute=True):
            encoding.encode_items("text", [mugs[1].pk])
        assert CategoryCentroid.objects.get(generation=generation).computed_at == first.computed_at  # fresh: kept
        settings.RAGREC = {**settings.RAGREC, "HNSW": {"QUERY_CATEGORIES": 0}}
        CategoryCentroid.objects.all().delete()
        with django_capture_on_commit_callbacks(execute=True):
            encoding.encode_items("text", [mugs[0].pk], force=True)
        assert not CategoryCentroid.objects.exists()  # routing off: nothing computed
    finally:
        celery_app.conf.task_always_eager = False
