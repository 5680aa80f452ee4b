"""Partitions of the embedding and event tables (migration 0013; docs/scaling.md, "Partitioned tables").

Embeddings are LIST-partitioned by space generation: a generation's rows and its HNSW index are a table of their own,
``<table>_g<id>``, attached when the generation is created (``ensure_generation_partition``) and dropped with it
(``drop_generation_partition``: one ``DROP TABLE``, no row deleted, nothing left for vacuum). Rows of a generation
that has no partition yet (one created other than through ``storage.generations``) are kept in the default partition
and moved into the generation's own when it gets one.

Events are RANGE-partitioned by calendar month (UTC) of ``created_at``: ``<table>_pYYYYMM``. An event of a month that
has no partition goes to the default partition, so no insert fails; ``create_event_months`` creates the months asked
for and those the default partition holds rows of, moving those rows into them (copied, then the default partition
truncated). ``drop_event_months_before`` drops
whole months, and the idempotency claims (``EventClaim``) of their events.

A partition is created standalone, filled, then attached (``ATTACH PARTITION`` takes a lock on the parent that lets
reads and writes go on); attaching scans the default partition, which is empty in normal operation.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone

from django.db import connection

from ..models import Embedding, EventClaim, Interaction, SpaceGeneration

_MONTH_SUFFIX = re.compile(r"_p(\d{4})(\d{2})$")


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def _exists(cursor, name: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [_quote(name)])
    return cursor.fetchone()[0]


def _immediate_constraints(cursor) -> None:
    """PostgreSQL refuses to alter a table with deferred foreign-key checks pending in the transaction: run them."""
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _deferred_constraints(cursor) -> None:
    cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _create_standalone(cursor, parent: str, partition: str, rows_condition: str) -> None:
    """Create ``partition`` as a table of its own shaped like ``parent``, with a CHECK of ``rows_condition`` (SQL with
    literal values): the rows it will hold are known to fit its bounds, which spares the attach a scan of them."""
    cursor.execute(
        "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" % (_quote(partition), _quote(parent))
    )
    cursor.execute(
        "ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)"
        % (_quote(partition), _quote(partition + "_bounds"), rows_condition)
    )


def _attach(cursor, parent: str, partition: str, bounds: str) -> None:
    """Attach the standalone ``partition`` to ``parent`` with ``bounds`` (which checks that the default partition
    holds no row within them) and drop its CHECK."""
    cursor.execute("ALTER TABLE %s ATTACH PARTITION %s %s" % (_quote(parent), _quote(partition), bounds))
    cursor.execute("ALTER TABLE %s DROP CONSTRAINT %s" % (_quote(partition), _quote(partition + "_bounds")))


# ---------------------------------------------------------------- embeddings


def generation_partition(generation: SpaceGeneration) -> str:
    """The name of the embeddings' partition of ``generation``."""
    return "%s_g%d" % (Embedding._meta.db_table, int(generation.pk))


def ensure_generation_partition(generation: SpaceGeneration) -> bool:
    """Give ``generation`` its embeddings partition (moving its rows out of the default partition) unless it has
    one; whether it was created. Run it inside the transaction that creates the generation."""
    name = generation_partition(generation)
    with connection.cursor() as cursor:
        if _exists(cursor, name):
            return False
        _immediate_constraints(cursor)
        table, condition = Embedding._meta.db_table, "generation_id = %d" % int(generation.pk)
        _create_standalone(cursor, table, name, condition)
        cursor.execute(
            "WITH moved AS (DELETE FROM %s WHERE %s RETURNING *) INSERT INTO %s SELECT * FROM moved"
            % (_quote(table + "_default"), condition, _quote(name))
        )
        _attach(cursor, table, name, "FOR VALUES IN (%d)" % int(generation.pk))
        _deferred_constraints(cursor)
    return True


def drop_generation_partition(generation: SpaceGeneration) -> bool:
    """Drop ``generation``'s embeddings partition with its rows and indexes (instant: no row is deleted one by one);
    whether there was one."""
    name = generation_partition(generation)
    with connection.cursor() as cursor:
        if not _exists(cursor, name):
            return False
        _immediate_constraints(cursor)
        cursor.execute("DROP TABLE %s" % _quote(name))
        _deferred_constraints(cursor)
    return True


# ---------------------------------------------------------------- events


def month_start(moment: date | datetime) -> date:
    """The first day of the calendar month (UTC) holding ``moment``."""
    if isinstance(moment, datetime):
        moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment
    return date(moment.year, moment.month, 1)


def add_months(month: date, count: int) -> date:
    """The first day of the month ``count`` months after ``month`` (before it when negative)."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def _utc_literal(month: date) -> str:
    """The first instant of ``month`` (UTC) as a SQL literal."""
    return "'%04d-%02d-01 00:00:00+00'::timestamptz" % (month.year, month.month)


def event_month_partition(month: date) -> str:
    """The name of the events' partition of ``month``."""
    return "%s_p%04d%02d" % (Interaction._meta.db_table, month.year, month.month)


def event_months() -> list[date]:
    """The months that have an event partition, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [_quote(Interaction._meta.db_table)],
        )
        names = [row[0] for row in cursor.fetchall()]
    months = []
    for name in names:
        found = _MONTH_SUFFIX.search(name)
        if found and name == event_month_partition(date(int(found.group(1)), int(found.group(2)), 1)):
            months.append(date(int(found.group(1)), int(found.group(2)), 1))
    return sorted(months)


def default_event_months() -> list[date]:
    """The months of the events kept in the default partition (months without a partition of their own)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date FROM %s ORDER BY 1"
            % _quote(Interaction._meta.db_table + "_default")
        )
        return [row[0] for row in cursor.fetchall()]


def create_event_months(months) -> list[date]:
    """Create the partitions of ``months`` and of every month the default partition holds events of, moving those
    events into them; the months created. Idempotent; run it in a transaction (the default partition is locked
    against inserts while its rows move, normally none)."""
    table = Interaction._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE" % _quote(table + "_default"))
    waiting = set(default_event_months())
    wanted = ({month_start(m) for m in months} | waiting) - set(event_months())
    if not wanted:
        return []
    default = _quote(table + "_default")
    with connection.cursor() as cursor:
        _immediate_constraints(cursor)
        for month in sorted(wanted):
            start, end = (_utc_literal(m) for m in (month, add_months(month, 1)))
            condition = "created_at >= %s AND created_at < %s" % (start, end)
            _create_standalone(cursor, table, event_month_partition(month), condition)
            cursor.execute(
                "INSERT INTO %s SELECT * FROM %s WHERE %s" % (_quote(event_month_partition(month)), default, condition)
            )
        if waiting:
            # Every row of the default partition was in a month copied above. TRUNCATE, not DELETE: a deleted event's
            # trigger would release its idempotency claim, and the attach below scans an empty table.
            cursor.execute("TRUNCATE %s" % default)
        for month in sorted(wanted):
            start, end = (_utc_literal(m) for m in (month, add_months(month, 1)))
            _attach(cursor, table, event_month_partition(month), "FOR VALUES FROM (%s) TO (%s)" % (start, end))
        _deferred_constraints(cursor)
    return sorted(wanted)


def drop_event_months_before(month: date) -> list[date]:
    """Drop the event partitions of the months before ``month`` with their events, and the claims of events before
    it; the months dropped. Run it after ``create_event_months`` (which empties the default partition)."""
    cutoff = month_start(month)
    dropped = [m for m in event_months() if m < cutoff]
    with connection.cursor() as cursor:
        _immediate_constraints(cursor)
        for old in dropped:
            cursor.execute("DROP TABLE %s" % _quote(event_month_partition(old)))
        cursor.execute(
            "DELETE FROM %s WHERE created_at < %%s" % _quote(EventClaim._meta.db_table),
            [datetime(cutoff.year, cutoff.month, 1, tzinfo=timezone.utc)],
        )
        _deferred_constraints(cursor)
    return dropped
