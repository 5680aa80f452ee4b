"""Recording events: validation with per-event errors, all-or-nothing batches, idempotency keys per visitor,
provenance (verified sessions, origin)."""

from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from ragrec_django.exceptions import IdempotencyConflict
from ragrec_django.models import Interaction, Item
from ragrec_django.services.events import (
    MAX_BATCH,
    TEXT_LIMITS,
    EventError,
    EventInput,
    client_address,
    issued_sessions,
    record_events,
    request_origin,
)
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    category = Category.objects.create(name="Mugs", slug="mugs")
    return Product.objects.create(title="Red mug", slug="red-mug", category=category, price=5, stock=1)


def test_events_are_stored_and_unmirrored_items_are_mirrored(product):
    result = record_events(
        [
            EventInput(event="view", item=str(product.pk), session_key="s1"),
            EventInput(event="search", query="red mug", session_key="s1"),
        ]
    )
    assert (result.accepted, result.stored, result.duplicates) == (2, 2, 0)
    assert Item.objects.get(key=str(product.pk)).title == "Red mug"
    assert Interaction.objects.filter(event="view", item__key=str(product.pk)).count() == 1


def test_retried_posts_do_not_double_count(product):
    batch = [
        EventInput(event="purchase", item=str(product.pk), session_key="s1", order_id="o1", idempotency_key="k-1"),
        EventInput(event="view", item=str(product.pk), session_key="s1", idempotency_key="k-2"),
    ]
    assert record_events(batch).stored == 2
    again = record_events(
        batch + [EventInput(event="view", item=str(product.pk), session_key="s1", idempotency_key="k-3")]
    )
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
        (
            EventInput(event="view", item="1", session_key="s", created_at=timezone.now() + timedelta(days=1)),
            "in the future",
        ),
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


# ---------------------------------------------------------------- text fields (issue 19: the class of NUL 500s)


HOSTILE_TEXT = {
    "NUL": ("a\x00b", "contains a NUL character"),
    "lone surrogate": ("a\ud800b", "contains a lone surrogate"),
}


@pytest.mark.parametrize("field_name", sorted(TEXT_LIMITS))
@pytest.mark.parametrize("kind", [*HOSTILE_TEXT, "overlong"])
def test_every_text_field_refuses_what_postgresql_cannot_store(product, field_name, kind):
    """Host code calls the service directly (no serializer in front): each text field is checked here."""
    value, message = HOSTILE_TEXT.get(kind) or (
        "x" * (TEXT_LIMITS[field_name] + 1),
        "is longer than %d" % TEXT_LIMITS[field_name],
    )
    event = EventInput(
        event="search" if field_name == "query" else "view", item=str(product.pk), query="mug", session_key="s"
    )
    setattr(event, field_name, value)
    with pytest.raises(EventError) as caught:
        record_events([EventInput(event="view", item=str(product.pk), session_key="s"), event])
    assert list(caught.value.errors) == [1]
    assert "%s %s" % (field_name, message) in " ".join(caught.value.errors[1])
    assert Interaction.objects.count() == 0


# ---------------------------------------------------------------- idempotency keys per visitor


def test_a_key_is_per_visitor_and_names_one_event(product):
    view = EventInput(event="view", item=str(product.pk), session_key="s1", idempotency_key="k")
    assert record_events([view]).stored == 1
    assert (
        record_events(
            [EventInput(event="view", item=str(product.pk), session_key="s1", idempotency_key="k")]
        ).duplicates
        == 1
    )
    purchase = EventInput(event="purchase", item=str(product.pk), session_key="s1", order_id="o1", idempotency_key="k")
    with pytest.raises(IdempotencyConflict) as caught:
        record_events([purchase])
    assert isinstance(caught.value, EventError) and list(caught.value.errors) == [0]
    assert record_events([EventInput(**{**purchase.__dict__, "session_key": "s2"})]).stored == 1  # another visitor
    assert sorted(Interaction.objects.values_list("idempotency_scope", "event")) == [
        ("session:s1", "view"),
        ("session:s2", "purchase"),
    ]


def test_server_set_fields_do_not_make_a_replay_a_conflict(product):
    """The time filled in by the server and the request's origin are not what the client said."""
    event = EventInput(event="view", item=str(product.pk), session_key="s1", idempotency_key="k", origin="a")
    assert record_events([event]).stored == 1
    assert record_events([EventInput(**{**event.__dict__, "origin": "b"})]).duplicates == 1


# ---------------------------------------------------------------- provenance: verified sessions, origin


def test_only_sessions_the_server_issued_are_verified_when_asked(product, django_user_model):
    issued = SessionStore()
    issued.create()
    user = django_user_model.objects.create_user("ann")
    events = [
        EventInput(event="view", item=str(product.pk), session_key=issued.session_key),
        EventInput(event="view", item=str(product.pk), session_key="invented-by-the-client"),
        EventInput(event="view", item=str(product.pk), user_id=user.pk),
    ]
    record_events(events, verify_sessions=True)
    assert dict(Interaction.objects.values_list("session_key", "verified")) == {
        issued.session_key: True,
        "invented-by-the-client": False,
        "": True,
    }
    record_events([EventInput(event="view", item=str(product.pk), session_key="server-side")])  # host code: trusted
    assert Interaction.objects.get(session_key="server-side").verified is True
    assert issued_sessions({issued.session_key, "nope"}) == {issued.session_key}


def test_the_origin_is_a_keyed_hash_of_the_address_the_server_sees(rf, settings):
    request = rf.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert client_address(request) == "203.0.113.9"  # no proxy count: the header is anyone's to write
    origin = request_origin(request)
    assert len(origin) == 16 and "203.0.113" not in origin
    assert request_origin(rf.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.0.0.1")) == origin
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    assert (
        client_address(rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="evil, 198.51.100.1")) == "198.51.100.1"
    )
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}
    assert client_address(rf.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.1")) == "10.0.0.2"
