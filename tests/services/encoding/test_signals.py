"""signals.embeddings_updated: one send per written batch of vectors, after commit, with the documented arguments."""

import pytest

from ragrec_django import signals
from ragrec_django.models import Embedding, Item, SpaceGeneration
from ragrec_django.services import encoding

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    calls = []

    def receiver(sender, signal, **kwargs):
        calls.append({"sender": sender, **kwargs})

    signals.embeddings_updated.connect(receiver)
    yield calls
    signals.embeddings_updated.disconnect(receiver)


def test_each_written_batch_is_announced_after_commit(
    ragrec_encoders, make_products, received, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(encoding, "WRITE_BATCH", 2)
    products = make_products(
        [("Red mug", "red", None), ("Blue mug", "blue", None), ("Green mug", "green", None), ("Plain mug", None, None)]
    )  # no image: a failure, not announced
    with django_capture_on_commit_callbacks(execute=True):
        report = encoding.encode_items("image", [p.pk for p in products])
        assert received == []  # nothing before the transaction commits
    assert report.encoded == 3 and len(report.failed) == 1

    generation = SpaceGeneration.objects.get(space="image", status="active")
    keys = [str(p.pk) for p in products[:3]]
    assert [(call["sender"], call["space"], call["generation"]) for call in received] == [
        (Embedding, "image", generation)
    ] * 2
    assert [len(call["item_keys"]) for call in received] == [2, 1]
    assert sorted(key for call in received for key in call["item_keys"]) == sorted(keys)
    ids = dict(Item.objects.values_list("key", "id"))
    assert all(call["item_ids"] == [ids[key] for key in call["item_keys"]] for call in received)  # same order

    with django_capture_on_commit_callbacks(execute=True):
        assert encoding.encode_items("image", [p.pk for p in products]).skipped == 3
    assert len(received) == 2  # nothing written, nothing announced
