"""The offline evaluation's writes when it runs in place on the configured database (``ragrec_evaluate
--database-live`` on the data already there): always inside a transaction that is rolled back at the end."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from ..models import Interaction, Item
from .interactions import table_name


def set_aside_events(*, keep_eligible: Sequence[str]) -> None:
    """Delete every event (the evaluation writes back the training part) and make every item outside
    ``keep_eligible`` (item keys: the evaluated catalogue) ineligible, so the services see what they
    would see on a scratch database. Refused outside a transaction."""
    if not connection.in_atomic_block:
        raise RuntimeError("set_aside_events runs only inside a transaction that is rolled back.")
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table_name(Interaction)}")
        cursor.execute(
            f"UPDATE {table_name(Item)} SET is_eligible = false WHERE is_eligible AND NOT (key = ANY(%s))",
            [list(keep_eligible)],
        )
