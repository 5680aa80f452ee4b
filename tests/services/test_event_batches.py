"""Event batches written in one INSERT ... ON CONFLICT DO NOTHING: all-or-nothing, exactly once, also when two
requests post the same keys at the same moment (real transactions, one connection per thread)."""

import threading

import pytest
from django.db import connection

from ragrec_django.exceptions import IdempotencyConflict
from ragrec_django.models import Interaction
from ragrec_django.services.events import MAX_BATCH, EventInput, record_events
from shop_demo.catalog.models import Category, Product


@pytest.fixture
def items(db):
    category = Category.objects.create(name="Mugs", slug="mugs")
    Product.objects.bulk_create(
        Product(title="Mug %d" % i, slug="mug-%d" % i, category=category, price=5, stock=1) for i in range(20)
    )
    return [str(pk) for pk in Product.objects.order_by("pk").values_list("pk", flat=True)]


def batch(items, prefix="k", n=MAX_BATCH, event="view"):
    return [
        EventInput(
            event=event, item=items[i % len(items)], session_key="s%d" % (i % 7), idempotency_key="%s-%d" % (prefix, i)
        )
        for i in range(n)
    ]


@pytest.mark.django_db
def test_a_full_batch_is_stored_in_order_with_its_ids(items):
    events = batch(items)
    result = record_events(events)
    assert (result.accepted, result.stored, result.duplicates) == (MAX_BATCH, MAX_BATCH, 0)
    stored = dict(Interaction.objects.values_list("id", "idempotency_key"))
    assert [stored[pk] for pk in result.ids] == [e.idempotency_key for e in events]  # ids in batch order


@pytest.mark.django_db
def test_replays_and_repeats_within_and_across_batches_are_stored_once(items):
    first = batch(items, n=300)
    assert record_events(first).stored == 300
    new = batch(items, prefix="new", n=100)
    again = first[100:] + new + new  # 200 replays, 100 new events twice
    result = record_events(again)
    assert (result.accepted, result.stored, result.duplicates) == (400, 100, 300)
    assert Interaction.objects.count() == 400
    keyless = [EventInput(event="view", item=items[0], session_key="s")] * 3  # no key: three events
    assert record_events(keyless).stored == 3


@pytest.mark.django_db
def test_a_key_reused_within_the_batch_refuses_the_batch_at_the_later_event(items):
    events = batch(items, n=10)
    events.append(EventInput(event="add_to_cart", item=items[0], session_key="s0", idempotency_key="k-0"))
    with pytest.raises(IdempotencyConflict) as caught:
        record_events(events)
    assert list(caught.value.errors) == [10]
    assert not Interaction.objects.exists()


@pytest.mark.django_db
def test_a_stored_key_reused_anywhere_in_a_full_batch_stores_nothing_of_it(items):
    record_events(
        [
            EventInput(
                event="purchase", item=items[3], session_key="s%d" % (250 % 7), order_id="o", idempotency_key="k-250"
            )
        ]
    )
    with pytest.raises(IdempotencyConflict) as caught:
        record_events(batch(items))  # k-250 is a view of another item now
    assert list(caught.value.errors) == [250]
    assert Interaction.objects.count() == 1


def run_together(*calls):
    """Run the calls in threads released at once (each its own connection); their results or exceptions."""
    barrier = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def run(index, call):
        try:
            barrier.wait()
            outcomes[index] = call()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_requests_posting_the_same_keys_at_once_store_each_event_once(items):
    """A retry sent while the first request is still running: the second waits for the first, then stores nothing."""
    events = batch(items)
    outcomes = run_together(lambda: record_events(events), lambda: record_events(events))
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sorted(r.stored for r in outcomes) == [0, MAX_BATCH]
    assert [r.duplicates for r in outcomes if r.stored == 0] == [MAX_BATCH]
    assert Interaction.objects.count() == Interaction.objects.values("idempotency_key").distinct().count() == MAX_BATCH


@pytest.mark.django_db(transaction=True)
def test_two_requests_using_one_key_for_different_events_at_once_store_one_of_them(items):
    view = EventInput(event="view", item=items[0], session_key="s", idempotency_key="k")
    purchase = EventInput(event="purchase", item=items[0], session_key="s", order_id="o", idempotency_key="k")
    outcomes = run_together(lambda: record_events([view]), lambda: record_events([purchase]))
    assert sorted(type(o).__name__ for o in outcomes) == ["EventResult", "IdempotencyConflict"]
    assert Interaction.objects.count() == 1
