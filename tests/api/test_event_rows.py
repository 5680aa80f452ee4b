"""The events endpoint's shortcut validator returns exactly the serializer's validated data, or defers to it."""

import uuid
from datetime import UTC, datetime

import pytest

from ragrec_django import limits
from ragrec_django.api import event_rows
from ragrec_django.api.experiment_serializers import TrackedEventSerializer


def serializer_result(rows):
    serializer = TrackedEventSerializer(data=rows, many=True)
    return [dict(event) for event in serializer.validated_data] if serializer.is_valid() else None


def test_the_shortcut_covers_every_field_of_the_event_serializer():
    """A field of a kind the shortcut cannot check would turn it off for every batch (all of them through DRF)."""
    rules = event_rows._rules()
    assert rules is not None
    assert [name for name, *_ in rules] == list(TrackedEventSerializer().fields)


VALID = [
    {"event": "view", "item": "12", "session_key": "s-1"},
    {"event": "click", "item": "12", "session_key": "s-1", "source": "similar", "impression_id": str(uuid.uuid4())},
    {"event": "purchase", "item": "12", "user_id": 7, "order_id": "o-1", "quantity": 3, "idempotency_key": "k"},
    {"event": "search", "query": "  red   mug  ", "session_key": "  padded  ", "idempotency_key": None},
    {"event": "add_to_cart", "item": "", "session_key": "s", "order_id": "   ", "query": "", "source": ""},
    {
        "event": "view",
        "item": "x" * limits.ITEM_KEY_MAX_CHARS,
        "session_key": "s",
        "quantity": limits.EVENT_QUANTITY_MAX,
    },
    {"event": "view", "item": "tête-à-tête", "session_key": "s", "created_at": "2026-01-02T03:04:05+01:00"},
    {"event": "view", "item": "1", "session_key": "s", "created_at": "2026-01-02T03:04:05Z", "impression_id": None},
    {"event": "view", "item": "1", "session_key": "s", "user_id": None, "created_at": None, "extra": [1, 2]},
]


@pytest.mark.parametrize("row", VALID, ids=range(len(VALID)))
def test_valid_events_get_the_serializers_values(row):
    shortcut = event_rows.validated_rows([row])
    assert shortcut is not None
    assert shortcut == serializer_result([row])


def test_a_whole_batch_gets_the_serializers_values():
    rows = VALID * 50
    assert event_rows.validated_rows(rows) == serializer_result(rows)


UNUSUAL_OR_INVALID = [
    None,
    [],
    "view",
    {"item": "1", "session_key": "s"},  # no event
    {"event": "like", "item": "1", "session_key": "s"},
    {"event": 1, "item": "1", "session_key": "s"},
    {"event": "view", "item": 12, "session_key": "s"},  # a number DRF turns into "12": DRF decides
    {"event": "view", "item": True, "session_key": "s"},
    {"event": "view", "item": None, "session_key": "s"},
    {"event": "view", "item": "x" * (limits.ITEM_KEY_MAX_CHARS + 1), "session_key": "s"},
    {"event": "view", "item": "a\x00b", "session_key": "s"},
    {"event": "view", "item": "a\ud800b", "session_key": "s"},
    {"event": "view", "item": "1", "session_key": "s", "user_id": "7"},
    {"event": "view", "item": "1", "session_key": "s", "user_id": 0},
    {"event": "view", "item": "1", "session_key": "s", "user_id": True},
    {"event": "view", "item": "1", "session_key": "s", "quantity": 0},
    {"event": "view", "item": "1", "session_key": "s", "quantity": 2.0},
    {"event": "view", "item": "1", "session_key": "s", "quantity": None},
    {"event": "view", "item": "1", "session_key": "s", "quantity": limits.EVENT_QUANTITY_MAX + 1},
    {"event": "view", "item": "1", "session_key": "s", "created_at": "yesterday"},
    {"event": "click", "item": "1", "session_key": "s", "impression_id": "not-a-uuid"},
]


@pytest.mark.parametrize("row", UNUSUAL_OR_INVALID, ids=range(len(UNUSUAL_OR_INVALID)))
def test_anything_else_is_left_to_the_serializer(row):
    """The shortcut defers (None) to the serializer, which accepts or refuses in DRF's own words."""
    assert event_rows.validated_rows([VALID[0], row]) is None


def test_dates_are_the_serializers_aware_datetimes():
    (event,) = event_rows.validated_rows(
        [{"event": "view", "item": "1", "session_key": "s", "created_at": "2026-01-02T03:04:05Z"}]
    )
    assert event["created_at"] == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
