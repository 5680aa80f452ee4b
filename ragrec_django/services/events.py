"""Recording shopper events: validated, batched, idempotent.

A batch is all-or-nothing: if one event is invalid nothing is stored and
every problem is reported with its index. An event whose idempotency key was
seen before is accepted again without being stored twice, so a client may
retry a post safely.

A click may name the recommendation list it was shown in (``impression_id``, see
``services.experiments``): the impression must exist and must have shown the item, or the
batch is refused; a click without a ``source`` gets the impression's recommender.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..exceptions import EventError
from ..models import Impression, Interaction, Item
from .encoding import sync_host_items

EVENTS = set(Interaction.Event.values)
MAX_BATCH = 500
MAX_CLOCK_SKEW = timedelta(minutes=10)


@dataclass
class EventInput:
    event: str
    item: str | None = None  # host item key
    user_id: int | None = None
    session_key: str = ""
    order_id: str = ""
    quantity: int = 1
    query: str = ""
    source: str = ""
    idempotency_key: str | None = None
    created_at: datetime | None = None
    impression_id: uuid.UUID | None = None  # for a click: the recommendation list it was shown in


@dataclass
class EventResult:
    accepted: int = 0
    stored: int = 0
    duplicates: int = 0
    ids: list[int] = field(default_factory=list)


def record_events(events: list[EventInput]) -> EventResult:
    """Validate and store a batch of events; return how many were stored and how many were repeats."""
    if not events:
        raise EventError({0: ["the batch is empty"]})
    if len(events) > MAX_BATCH:
        raise EventError({MAX_BATCH: ["at most %d events per batch" % MAX_BATCH]})
    errors = _validate(events)
    items = _resolve_items({e.item for e in events if e.item})
    users = _existing_users({e.user_id for e in events if e.user_id is not None})
    impressions = _impressions({e.impression_id for e in events if e.impression_id is not None})
    for index, event in enumerate(events):
        if event.item and event.item not in items:
            errors.setdefault(index, []).append("unknown item %r" % event.item)
        if event.user_id is not None and event.user_id not in users:
            errors.setdefault(index, []).append("unknown user %r" % event.user_id)
        if event.impression_id is not None:
            impression = impressions.get(event.impression_id)
            if impression is None:
                errors.setdefault(index, []).append("unknown impression %s" % event.impression_id)
            elif event.item and event.item not in impression.item_keys:
                errors.setdefault(index, []).append("item %r was not shown in impression %s" % (event.item, event.impression_id))
    if errors:
        raise EventError(errors)

    now = timezone.now()
    rows = [
        Interaction(
            event=e.event,
            item_id=items.get(e.item) if e.item else None,
            user_id=e.user_id,
            session_key=e.session_key,
            order_id=e.order_id,
            quantity=e.quantity,
            query=e.query[:500],
            source=(e.source or (impressions[e.impression_id].recommender if e.impression_id else ""))[:64],
            idempotency_key=e.idempotency_key or None,
            impression_id=e.impression_id,
            created_at=e.created_at or now,
        )
        for e in events
    ]
    keys = [r.idempotency_key for r in rows if r.idempotency_key]
    seen = set(Interaction.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))
    fresh, batch_keys = [], set()
    for row in rows:
        key = row.idempotency_key
        if key and (key in seen or key in batch_keys):
            continue
        if key:
            batch_keys.add(key)
        fresh.append(row)
    stored = _insert(fresh)
    return EventResult(accepted=len(rows), stored=len(stored), duplicates=len(rows) - len(stored), ids=[r.pk for r in stored])


def _insert(rows: list[Interaction]) -> list[Interaction]:
    """Insert in one statement; if a concurrent request stored one of the keys meanwhile, row by row."""
    try:
        with transaction.atomic():
            return Interaction.objects.bulk_create(rows)
    except IntegrityError:
        stored = []
        for row in rows:
            row.pk = None
            try:
                with transaction.atomic():
                    row.save(force_insert=True)
                stored.append(row)
            except IntegrityError:
                pass  # the same idempotency key, stored by the other request
        return stored


def _validate(events: list[EventInput]) -> dict[int, list[str]]:
    errors: dict[int, list[str]] = {}
    latest = timezone.now() + MAX_CLOCK_SKEW
    for index, e in enumerate(events):
        problems = []
        if e.event not in EVENTS:
            problems.append("event must be one of %s" % ", ".join(sorted(EVENTS)))
        if e.event == Interaction.Event.SEARCH:
            if not e.query.strip():
                problems.append("a search event needs a query")
        elif not e.item:
            problems.append("a %s event needs an item" % e.event)
        if e.user_id is None and not e.session_key:
            problems.append("give a user or a session_key")
        if not 1 <= e.quantity <= 10_000:
            problems.append("quantity must be between 1 and 10000")
        if e.created_at is not None and e.created_at > latest:
            problems.append("created_at is in the future")
        if e.impression_id is not None and e.event != Interaction.Event.CLICK:
            problems.append("impression_id is only for click events")
        if problems:
            errors[index] = problems
    return errors


def _resolve_items(keys: set[str]) -> dict[str, int]:
    """Map host item keys to mirror ids, mirroring host items seen for the first time."""
    found = dict(Item.objects.filter(key__in=keys).values_list("key", "id"))
    missing = keys - set(found)
    if missing:
        sync_host_items(sorted(missing))
        found.update(Item.objects.filter(key__in=missing).values_list("key", "id"))
    return found


def _impressions(ids: set[uuid.UUID]) -> dict[uuid.UUID, Impression]:
    if not ids:
        return {}
    return Impression.objects.only("id", "recommender", "item_keys").in_bulk(ids)


def _existing_users(ids: set[int]) -> set[int]:
    if not ids:
        return set()
    return set(get_user_model()._default_manager.filter(pk__in=ids).values_list("pk", flat=True))
