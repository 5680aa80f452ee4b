"""Upkeep of the event table's monthly partitions: the coming months created, months past retention dropped.

``maintain_event_partitions`` is what ``manage.py ragrec_event_partitions`` and the Celery task
``maintain_event_partitions_task`` run (monthly at least; daily is harmless: it is idempotent). Events of a month
without a partition are never refused (they wait in the default partition, which the next run splits into months);
keeping the coming months ready keeps that partition empty, so creating a month never has rows to move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.db import transaction
from django.utils import timezone

from .. import storage
from ..conf import ragrec_settings

#: Months after the current one that get a partition ahead of their events.
MONTHS_AHEAD = 3


@dataclass(frozen=True)
class PartitionUpkeep:
    """What one run did: the months created and those dropped (each the first day of the month, UTC)."""

    created: list[date] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)
    kept_from: date | None = None


def maintain_event_partitions(
    *, retention_months: int | None = None, months_ahead: int = MONTHS_AHEAD, today: date | None = None
) -> PartitionUpkeep:
    """Create the partitions of the current month and ``months_ahead`` more (and of any month the default partition
    holds events of), then drop the months before the current one minus ``retention_months`` (default
    ``RAGREC["EVENT_RETENTION_MONTHS"]``; None keeps every month) with their events and idempotency claims."""
    if retention_months is None:
        retention_months = ragrec_settings.EVENT_RETENTION_MONTHS
    elif isinstance(retention_months, bool) or not isinstance(retention_months, int) or retention_months < 1:
        raise ValueError("retention_months must be a whole number >= 1, got %r." % (retention_months,))
    if months_ahead < 0:
        raise ValueError("months_ahead must be >= 0, got %r." % (months_ahead,))
    current = storage.month_start(today or timezone.now())
    with transaction.atomic():
        created = storage.create_event_months([storage.add_months(current, n) for n in range(months_ahead + 1)])
    if retention_months is None:
        return PartitionUpkeep(created=created)
    kept_from = storage.add_months(current, -retention_months)
    with transaction.atomic():
        dropped = storage.drop_event_months_before(kept_from)
    return PartitionUpkeep(created=created, dropped=dropped, kept_from=kept_from)
