"""Recording events: validation with per-event errors, all-or-nothing batches, idempotency keys."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ragrec_django.models import Interaction, Item
from ragrec_django.services.events import MAX_BATCH, EventError, EventInput, record_events
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    category = Category.objects.create(name="Mugs", slug="mugs")
    return Product.objects.create(title="Red mug", slug="red-mug", category=category, price=5, stock=1)


def test_events_are_stored_and_unmirrored_items_are_mirrored(product):
    result = record_events([EventInput(event="view", item=str(product.pk), session_key="s1"),
                            EventInput(event="search", query="red mug", session_key="s1")])
    assert (result.accepted, result.stored, result.duplicates) == (2, 2, 0)
    assert Item.objects.get(key=str(product.pk)).title == "Red mug"
    assert Interaction.objects.filter(event="view", item__key=str(product.pk)).count() == 1


def test_retried_posts_do_not_double_count(product):
    batch = [EventInput(event="purchase", item=str(product.pk), session_key="s1", order_id="o1", idempotency_key="k-1"),
             EventInput(event="view", item=str(product.pk), session_key="s1", idempotency_key="k-2")]
    assert record_events(batch).stored == 2
    again = record_events(batch + [EventInput(event="view", item=str(product.pk), session_key="s1", idempotency_key="k-3")])
    assert (again.accepted, again.stored, again.duplicates) == (3, 1, 2)
    assert Interaction.objects.count() == 3
    same_key_twice = [EventInput(event="view", item=str(product.pk), session_key="s", idempotency_key="k-9")] * 2
    assert record_events(same_key_twice).stored == 1


@pytest.mark.parametrize(
    "event, message",
    [
        (EventInput(event="like", item="1", session_key="s"), "event must be one of"),
        (EventInput(event="view", session_key="s"), "a view event needs an item"),
        (EventInput(event="search", session_key="s"), "a search event needs a query"),
        (EventInput(event="view", item="1"), "give a user or a session_key"),
        (EventInput(event="view", item="1", session_key="s", quantity=0), "quantity must be between"),
        (EventInput(event="view", item="1", session_key="s", created_at=timezone.now() + timedelta(days=1)), "in the future"),
        (EventInput(event="view", item="424242", session_key="s"), "unknown item '424242'"),
        (EventInput(event="view", item="abc", session_key="s"), "unknown item 'abc'"),
        (EventInput(event="view", item="1", user_id=987654), "unknown user 987654"),
    ],
)
def test_a_bad_event_refuses_the_whole_batch_with_its_index(product, event, message):
    good = EventInput(event="view", item=str(product.pk), session_key="s")
    if event.item == "1":
        event.item = str(product.pk)
    with pytest.raises(EventError) as caught:
        record_events([good, event])
    assert list(caught.value.errors) == [1]
    assert message in " ".join(caught.value.errors[1])
    assert Interaction.objects.count() == 0


def test_empty_and_oversized_batches_are_refused(product):
    with pytest.raises(EventError, match="empty"):
        record_events([])
    with pytest.raises(EventError, match="at most"):
        record_events([EventInput(event="view", item=str(product.pk), session_key="s")] * (MAX_BATCH + 1))
