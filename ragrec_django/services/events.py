"""Recording shopper events: validated, batched, idempotent, with the provenance popularity needs.

A batch is all-or-nothing: if one event is invalid nothing is stored and every problem is reported with
its index. Text fields are checked like every shopper text (``services.inputs``: no NUL, no lone
surrogate, limits of ``ragrec_django.limits``).

Idempotency keys (as Stripe's): a key belongs to one visitor, the event's user (``user:<id>``) or else its
session (``session:<key>``), so two visitors never share or pre-empt each other's keys. An event whose key
this visitor used before for the same event (same fields) is a replay: accepted, not stored again
(``duplicates``). The same key for a different event (another item, event type, quantity...) is refused
with ``IdempotencyConflict`` (the REST API answers 409): a key names one event, never a newer one.

A click may name the recommendation list it was shown in (``impression_id``, see
``services.experiments``): the impression must exist and must have shown the item, or the batch is
refused; a click without a ``source`` gets the impression's recommender. At most one click per
(impression, item) is stored (a database constraint): a replayed click is a duplicate.

Provenance. ``origin`` is a keyed hash of the client address an event came from (``request_origin``);
trending and co-purchases count at most ``RAGREC["POPULARITY_MAX_PER_SOURCE"]`` visitors or orders per
item from one origin. ``verify_sessions=True`` (the REST API, whose clients are anonymous) marks an
anonymous event ``verified`` only when its session key is a live session of Django's session store, one
the server issued; unverified events are stored (they are that visitor's history) but count toward no
one else's recommendations (trending, co-purchases).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from .. import limits, storage
from ..exceptions import EventError, IdempotencyConflict
from ..models import EventClaim, Impression, Interaction, Item
from .encoding import sync_host_items
from .inputs import text_problem

EVENTS = set(Interaction.Event.values)
MAX_BATCH = limits.EVENT_BATCH_MAX
MAX_CLOCK_SKEW = timedelta(minutes=limits.EVENT_CLOCK_SKEW_MINUTES)
#: Text fields of an event and their limits.
TEXT_LIMITS = {
    "item": limits.ITEM_KEY_MAX_CHARS,
    "session_key": limits.SESSION_KEY_MAX_CHARS,
    "order_id": limits.ORDER_ID_MAX_CHARS,
    "query": limits.EVENT_QUERY_MAX_CHARS,
    "source": limits.EVENT_SOURCE_MAX_CHARS,
    "idempotency_key": limits.IDEMPOTENCY_KEY_MAX_CHARS,
}
ORIGIN_CHARS = 16


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
    origin: str = ""  # request_origin() of the request that reported it; empty when not from a request

    @property
    def scope(self) -> str:
        """Whose idempotency keys this event's key is among: ``user:<id>``, else ``session:<key>``."""
        return "user:%s" % self.user_id if self.user_id is not None else "session:%s" % self.session_key

    def fingerprint(self) -> str:
        """sha256 of what the client said (not of defaults the server filled in): equal for a replay."""
        said = [
            self.event,
            self.item or "",
            self.user_id,
            self.session_key,
            self.order_id,
            self.quantity,
            self.query,
            self.source,
            str(self.impression_id or ""),
            self.created_at.isoformat() if self.created_at else "",
        ]
        return hashlib.sha256(json.dumps(said, separators=(",", ":")).encode()).hexdigest()


@dataclass
class EventResult:
    accepted: int = 0
    stored: int = 0
    duplicates: int = 0
    ids: list[int] = field(default_factory=list)


def record_events(events: list[EventInput], *, verify_sessions: bool = False) -> EventResult:
    """Validate and store a batch of events; return how many were stored and how many were repeats.

    ``EventError`` (nothing stored) for an invalid event, ``IdempotencyConflict`` for a key reused for
    another event. ``verify_sessions``: anonymous events count toward popularity only when their session
    key is a live session the server issued (see the module's docstring).
    """
    if not events:
        raise EventError({0: ["the batch is empty"]})
    if len(events) > MAX_BATCH:
        raise EventError({MAX_BATCH: ["at most %d events per batch" % MAX_BATCH]})
    errors, unusable = _validate(events)
    usable = [e for index, e in enumerate(events) if index not in unusable]  # no NUL... reaches the queries below
    items = _resolve_items({e.item for e in usable if e.item})
    users = _existing_users({e.user_id for e in usable if e.user_id is not None})
    impressions = _impressions({e.impression_id for e in usable if e.impression_id is not None})
    for index, event in enumerate(events):
        if index in unusable:
            continue
        if event.item and event.item not in items:
            errors.setdefault(index, []).append("unknown item %r" % event.item)
        if event.user_id is not None and event.user_id not in users:
            errors.setdefault(index, []).append("unknown user %r" % event.user_id)
        if event.impression_id is not None:
            impression = impressions.get(event.impression_id)
            if impression is None:
                errors.setdefault(index, []).append("unknown impression %s" % event.impression_id)
            elif event.item and event.item not in impression.item_keys:
                errors.setdefault(index, []).append(
                    "item %r was not shown in impression %s" % (event.item, event.impression_id)
                )
    if errors:
        raise EventError(errors)

    issued = (
        issued_sessions({e.session_key for e in events if e.user_id is None and e.session_key})
        if verify_sessions
        else None
    )
    now = timezone.now()
    rows = [  # storage.EVENT_COLUMNS
        (
            e.event,
            items.get(e.item) if e.item else None,
            e.user_id,
            e.session_key,
            e.order_id,
            e.quantity,
            e.query,
            e.source or (impressions[e.impression_id].recommender if e.impression_id else ""),
            e.idempotency_key or None,
            e.scope if e.idempotency_key else "",
            e.fingerprint() if e.idempotency_key else "",
            e.impression_id,
            e.origin[:ORIGIN_CHARS],
            issued is None or e.user_id is not None or e.session_key in issued,
            e.created_at or now,
        )
        for e in events
    ]
    ids = _store(rows)
    return EventResult(accepted=len(rows), stored=len(ids), duplicates=len(rows) - len(ids), ids=ids)


KEY, SCOPE, FINGERPRINT = (
    storage.EVENT_COLUMNS.index(name) for name in ("idempotency_key", "idempotency_scope", "payload_hash")
)


def _store(rows: list[tuple]) -> list[int]:
    """Insert ``rows`` (``storage.EVENT_COLUMNS`` tuples) all-or-nothing in one statement; return the ids stored.

    The rows the insert leaves out are repeats: a replay (a visitor's key stored before with the same event, or
    earlier in the batch) or a click already stored for its impression and item. A key that comes back with
    another event (stored before, by a concurrent request, or earlier in the batch) is ``IdempotencyConflict``,
    and nothing of the batch is stored.
    """
    first = {}  # (scope, key) -> fingerprint of its first event in the batch: the one a key names
    conflicts = {}
    for index, row in enumerate(rows):
        if row[KEY] is not None and first.setdefault((row[SCOPE], row[KEY]), row[FINGERPRINT]) != row[FINGERPRINT]:
            conflicts[index] = [_conflict_message(row[KEY])]
    if conflicts:
        raise IdempotencyConflict(conflicts)
    with transaction.atomic():
        inserted = storage.insert_events(rows)
        if len(inserted) < len(rows):
            _refuse_reused_keys(rows, {(scope, key) for _, scope, key in inserted if key is not None})
    return [pk for pk, _, _ in inserted]


def _refuse_reused_keys(rows: list[tuple], inserted: set[tuple[str, str]]) -> None:
    """``IdempotencyConflict`` for the keyed rows left out whose key is stored with another event."""
    left_out = {index: (row[SCOPE], row[KEY]) for index, row in enumerate(rows) if row[KEY] is not None}
    left_out = {index: slot for index, slot in left_out.items() if slot not in inserted}
    if not left_out:
        return
    stored = {
        (scope, key): fingerprint
        for scope, key, fingerprint in EventClaim.objects.filter(
            idempotency_key__in={key for _, key in left_out.values()},
            idempotency_scope__in={scope for scope, _ in left_out.values()},
        ).values_list("idempotency_scope", "idempotency_key", "payload_hash")
    }
    conflicts = {
        index: [_conflict_message(rows[index][KEY])]
        for index, slot in left_out.items()
        if stored.get(slot) and stored[slot] != rows[index][FINGERPRINT]  # "": stored before keys had fingerprints
    }
    if conflicts:
        raise IdempotencyConflict(conflicts)


def _conflict_message(key: str) -> str:
    return (
        "idempotency key %r was already used by this visitor for a different event; a key names one event: "
        "send a new event with a new key" % key
    )


def _validate(events: list[EventInput]) -> tuple[dict[int, list[str]], set[int]]:
    """Problems of each event that need no query, and the indexes of events with unusable text."""
    errors: dict[int, list[str]] = {}
    unusable: set[int] = set()
    latest = timezone.now() + MAX_CLOCK_SKEW
    for index, e in enumerate(events):
        problems = []
        if e.event not in EVENTS:
            problems.append("event must be one of %s" % ", ".join(sorted(EVENTS)))
        for name, limit in TEXT_LIMITS.items():
            problem = text_problem(getattr(e, name) or "", limit)
            if problem:
                problems.append("%s %s" % (name, problem))
                unusable.add(index)
        if e.event == Interaction.Event.SEARCH:
            if not e.query.strip():
                problems.append("a search event needs a query")
        elif not e.item:
            problems.append("a %s event needs an item" % e.event)
        if e.user_id is None and not e.session_key:
            problems.append("give a user or a session_key")
        if not 1 <= e.quantity <= limits.EVENT_QUANTITY_MAX:
            problems.append("quantity must be between 1 and %d" % limits.EVENT_QUANTITY_MAX)
        if e.created_at is not None and e.created_at > latest:
            problems.append("created_at is in the future")
        if e.impression_id is not None and e.event != Interaction.Event.CLICK:
            problems.append("impression_id is only for click events")
        if problems:
            errors[index] = problems
    return errors, unusable


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


# ---------------------------------------------------------------- provenance


def issued_sessions(keys: set[str]) -> set[str]:
    """The keys of ``keys`` that are live sessions of Django's session store (``SESSION_ENGINE``): ones this
    server issued and that have not expired. One query with the database backends (``db``, ``cached_db``);
    one look-up per key with the others (a signed-cookie session has no key to look up: none is live)."""
    if not keys:
        return set()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if hasattr(store, "get_model_class"):
        model = store.get_model_class()
        return set(
            model.objects.filter(session_key__in=keys, expire_date__gt=timezone.now()).values_list(
                "session_key", flat=True
            )
        )
    return {key for key in keys if store().exists(key)}


def client_address(request) -> str:
    """The client's address as this server can trust it.

    ``REMOTE_ADDR`` (the peer of the connection), unless ``REST_FRAMEWORK["NUM_PROXIES"]`` says how many
    proxies of yours stand in front: then the address the outermost of them saw, read from the right of
    ``X-Forwarded-For`` as DRF reads it. Without a proxy count the header is not trusted at all: anyone
    can write it (system check ``ragrec.W003`` warns when other settings trust a proxy's headers).
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = (getattr(settings, "REST_FRAMEWORK", None) or {}).get("NUM_PROXIES")
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote
    addresses = [address.strip() for address in forwarded.split(",") if address.strip()]
    return addresses[-min(int(proxies), len(addresses))] if addresses else remote


def request_origin(request) -> str:
    """A keyed hash of ``client_address(request)`` (the address itself is never stored), for ``EventInput.origin``."""
    address = client_address(request)
    return salted_hmac("ragrec_django.events.origin", address).hexdigest()[:ORIGIN_CHARS] if address else ""
