"""The encoding task's redelivery cap: a batch that keeps killing workers cannot loop forever."""

import pytest

from ragrec_django.models import Embedding, EncodingFailure, TaskDelivery
from ragrec_django.tasks import encode_items_task

pytestmark = pytest.mark.django_db


def run_as_redelivery(pks, task_id, previous_starts):
    """Run the task as the broker would after ``previous_starts`` deliveries died with their worker."""
    if previous_starts:
        TaskDelivery.objects.create(task_id=task_id, name=encode_items_task.name, attempts=previous_starts)
    return encode_items_task.apply(args=("text", pks), task_id=task_id).get()


def test_first_delivery_encodes_and_forgets_the_delivery(ragrec_encoders, many_products):
    pks = many_products(3)
    result = run_as_redelivery(pks, "t-first", 0)
    assert (result["encoded"], result["failed"]) == (3, {})
    assert not TaskDelivery.objects.exists()


@pytest.mark.parametrize("previous_starts", [1, 2, 3])
def test_redeliveries_within_the_cap_finish_the_batch(settings, ragrec_encoders, many_products, previous_starts):
    settings.RAGREC = {**settings.RAGREC, "MAX_REDELIVERIES": 3}
    pks = many_products(4)
    result = run_as_redelivery(pks, "t-%d" % previous_starts, previous_starts)
    assert result["encoded"] == 4
    assert Embedding.objects.count() == 4


def test_past_the_cap_missing_items_are_marked_failed(settings, ragrec_encoders, many_products):
    settings.RAGREC = {**settings.RAGREC, "MAX_REDELIVERIES": 3}
    pks = many_products(4)
    encode_items_task.apply(args=("text", pks[:1])).get()  # one item got written before the deaths
    result = run_as_redelivery(pks, "t-poison", 4)
    assert result["encoded"] == 0
    failures = EncodingFailure.objects.all()
    assert failures.count() == 3
    assert all(f.reason == "worker died 4 times while encoding this batch" for f in failures)
    assert Embedding.objects.count() == 1
    assert not TaskDelivery.objects.exists()
