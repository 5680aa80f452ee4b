"""Reviewing the assistant's conversations (the admin): how each ended, what each turn understood and showed,
and flagging a bad turn.

Outcome of a conversation, from its turns' feedback:

* ``basket``: the shopper added a shown product to the basket in one of its turns;
* ``abandoned``: no basket, at least one turn, and untouched for ``ABANDONED_AFTER``;
* ``other``: the rest: still going (touched within ``ABANDONED_AFTER``), or started and never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from .. import limits
from ..exceptions import BadQuery
from ..generation import dialogue
from ..models import Conversation, Item, Turn

BASKET, ABANDONED, OTHER = "basket", "abandoned", "other"
OUTCOMES = {BASKET: "ended in basket", ABANDONED: "abandoned", OTHER: "other (still going, or never used)"}
#: A conversation without a basket, untouched for this long, is abandoned.
ABANDONED_AFTER = timedelta(minutes=30)
FLAG_NOTE_MAX_CHARS = limits.TURN_FLAG_NOTE_MAX_CHARS


def with_review_counts(queryset: QuerySet[Conversation]) -> QuerySet[Conversation]:
    """``queryset`` annotated with ``turn_count``, ``flagged_count`` and ``ended_in_basket``."""
    basket = Turn.objects.filter(conversation=OuterRef("pk"), feedback__action="basket")
    return queryset.annotate(
        turn_count=Count("turns", distinct=True),
        flagged_count=Count("turns", filter=Q(turns__flagged_at__isnull=False), distinct=True),
        ended_in_basket=Exists(basket),
    )


def with_outcome(queryset: QuerySet[Conversation], outcome: str, *, now: datetime | None = None):
    """The conversations of ``queryset`` (annotated by ``with_review_counts``) with ``outcome``."""
    cutoff = (now or timezone.now()) - ABANDONED_AFTER
    if outcome == BASKET:
        return queryset.filter(ended_in_basket=True)
    abandoned = Q(ended_in_basket=False, turn_count__gt=0, updated_at__lt=cutoff)
    if outcome == ABANDONED:
        return queryset.filter(abandoned)
    if outcome == OTHER:
        return queryset.filter(ended_in_basket=False).exclude(abandoned)
    raise BadQuery("Unknown outcome %r: one of %s." % (str(outcome)[:32], ", ".join(OUTCOMES)))


def outcome_of(conversation: Conversation, *, now: datetime | None = None) -> str:
    """The outcome of a conversation annotated by ``with_review_counts``."""
    if conversation.ended_in_basket:
        return BASKET
    idle = (now or timezone.now()) - conversation.updated_at >= ABANDONED_AFTER
    return ABANDONED if conversation.turn_count and idle else OTHER


@dataclass(frozen=True)
class ShownProduct:
    position: int
    key: str
    title: str  # "" when the product left the catalogue since
    price: object


def products_shown(turn: Turn) -> list[ShownProduct]:
    """The products the turn showed, in order, with their titles and prices as the catalogue has them now."""
    items = {item.key: item for item in Item.objects.filter(key__in=turn.item_keys)}
    return [
        ShownProduct(
            position, key, items[key].title if key in items else "", items[key].price if key in items else None
        )
        for position, key in enumerate(turn.item_keys, 1)
    ]


def understood(turn: Turn) -> list[str]:
    """The state after the turn, as the shopper saw it: its chips' labels ("for dad", "up to 40", "not red")."""
    return [chip["label"] for chip in dialogue.DialogueState.from_dict(turn.state).chips()]


def flag(turn: Turn, user, note: str = "") -> Turn:
    """Flag ``turn`` as a bad one, by ``user`` (a staff member), with an optional note (``BadQuery`` if too long)."""
    note = (note or "").strip()
    if len(note) > FLAG_NOTE_MAX_CHARS:
        raise BadQuery("The note is too long: at most %d characters." % FLAG_NOTE_MAX_CHARS)
    turn.flagged_at, turn.flagged_by, turn.flag_note = timezone.now(), user, note
    turn.save(update_fields=["flagged_at", "flagged_by", "flag_note"])
    return turn


def unflag(turn: Turn) -> Turn:
    """Take the flag off ``turn``."""
    turn.flagged_at, turn.flagged_by, turn.flag_note = None, None, ""
    turn.save(update_fields=["flagged_at", "flagged_by", "flag_note"])
    return turn
