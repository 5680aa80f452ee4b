"""Facts about the database server, and which database the heavy reads use (``RAGREC["READ_DATABASE"]``).

The heavy reads (ANN, keyword search, trending, co-purchases, A/B statistics) run on ``read_alias()``:
a healthy read replica named by ``READ_DATABASE``, else the primary ("default"). A replica is healthy
when it answers and lags at most ``READ_DATABASE_MAX_LAG_SECONDS`` behind; each process checks each
replica at most every ``REPLICA_CHECK_SECONDS`` and logs a warning when it skips one. Every write, and
every read of a visitor's own events (read-your-writes), stays on the primary (docs/scaling.md).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models.sql import InsertQuery

from ..conf import ragrec_settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a replica's health (up, lag) is reused by a process before it is checked again.
REPLICA_CHECK_SECONDS = 5.0

#: A replica's lag in seconds: 0 when it has replayed all the WAL it received (an idle primary writes no
#: transactions, so the last replayed one grows old without any lag), else the age of the last replayed
#: transaction. A server that is not in recovery (no replica at all) lags 0.
LAG_SQL = (
    "SELECT CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 'Infinity') END"
)

_health: dict[str, tuple[float, bool]] = {}
_health_lock = threading.Lock()


def server_version() -> str:
    """PostgreSQL's version, as ``SHOW server_version`` reports it (e.g. "16.4")."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]


def extension_version(name: str, *, using: str = "default") -> str | None:
    """The installed version of the PostgreSQL extension ``name`` in database ``using``; None when not installed."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = %s", [name])
        row = cursor.fetchone()
    return row[0] if row else None


#: Extensions that scale vector search past one pgvector HNSW index (docs/scaling.md, "Capacity plan").
SCALE_EXTENSIONS = ("vectorscale", "vchord", "citus")


def scale_extensions(*, using: str = "default") -> dict[str, str | None]:
    """Of ``SCALE_EXTENSIONS``, those the server offers: {name: installed version, or None if only available}."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT name, installed_version FROM pg_available_extensions WHERE name = ANY(%s)", [list(SCALE_EXTENSIONS)]
        )
        return dict(cursor.fetchall())


def missing_text_search_configurations(names, *, using: str = "default") -> list[str]:
    """Of ``names`` (text-search configurations as ``regconfig`` reads them: "german", "public.my_config"), those
    database ``using`` does not have (a name without a schema must be visible on the search path)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT name FROM unnest(%s::text[]) WITH ORDINALITY AS v(name, n) WHERE NOT EXISTS ("
            "SELECT 1 FROM pg_ts_config c JOIN pg_namespace s ON s.oid = c.cfgnamespace WHERE "
            "(strpos(v.name, '.') = 0 AND c.cfgname = lower(v.name) AND pg_ts_config_is_visible(c.oid)) "
            "OR s.nspname || '.' || c.cfgname = lower(v.name)) ORDER BY n",
            [list(dict.fromkeys(str(name) for name in names))],
        )
        return [row[0] for row in cursor.fetchall()]


def unapplied_migrations(app_label: str = "ragrec_django", *, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The migrations (``app.name``) that ``app_label``'s latest migration still needs on database ``using``:
    all of them on an empty database, none once ``manage.py migrate`` has run."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[using])
    targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] == app_label]
    return ["%s.%s" % (m.app_label, m.name) for m, backwards in executor.migration_plan(targets) if not backwards]


# ---------------------------------------------------------------- read replicas


def read_aliases() -> tuple[str, ...]:
    """The replica aliases of ``RAGREC["READ_DATABASE"]`` (an alias or a list of them; None: none)."""
    value = ragrec_settings.READ_DATABASE
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def read_database_problems() -> list[str]:
    """What is wrong with ``RAGREC["READ_DATABASE"]`` (reported by the system check ragrec.E016)."""
    value = ragrec_settings.READ_DATABASE
    if (
        value is not None
        and not isinstance(value, str)
        and (not isinstance(value, (list, tuple)) or not all(isinstance(alias, str) for alias in value))
    ):
        return ['RAGREC["READ_DATABASE"] must be None, an alias of DATABASES or a list of aliases, got %r.' % (value,)]
    problems = []
    for alias in read_aliases():
        if alias not in connections.settings:
            problems.append('RAGREC["READ_DATABASE"] names %r, which is not in DATABASES.' % alias)
        elif connections[alias].vendor != "postgresql":
            problems.append(
                'RAGREC["READ_DATABASE"] names %r, a %s database: read replicas must be PostgreSQL replicas of '
                '"default".' % (alias, connections[alias].vendor)
            )
    lag = ragrec_settings.READ_DATABASE_MAX_LAG_SECONDS
    if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not lag > 0:
        problems.append('RAGREC["READ_DATABASE_MAX_LAG_SECONDS"] must be a number of seconds > 0, got %r.' % (lag,))
    return problems


def read_alias() -> str:
    """The alias the heavy reads use now: a healthy replica of ``READ_DATABASE`` (one at random when
    several are), else "default"."""
    healthy = [alias for alias in read_aliases() if alias == DEFAULT_DB_ALIAS or _is_healthy(alias)]
    return random.choice(healthy) if healthy else DEFAULT_DB_ALIAS


def on_read_database(read: Callable[[str], T]) -> T:
    """``read(alias)`` on ``read_alias()``; should a replica fail mid-read (it went down, a query was
    cancelled by a recovery conflict), the replica is skipped for ``REPLICA_CHECK_SECONDS`` and
    ``read("default")`` answers instead: a replica never turns a request into an error."""
    alias = read_alias()
    if alias == DEFAULT_DB_ALIAS:
        return read(alias)
    try:
        return read(alias)
    except (OperationalError, InterfaceError) as exc:
        logger.warning("Read database %r failed (%s); reading from the primary instead.", alias, exc)
        _set_health(alias, False)
        _close(alias)
        return read(DEFAULT_DB_ALIAS)


def rows_from_read_database(sql: str, params) -> list[tuple]:
    """Every row of one heavy read statement, run with ``on_read_database``."""

    def fetch(alias: str) -> list[tuple]:
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return on_read_database(fetch)


def replica_lag(alias: str) -> float:
    """Seconds database ``alias`` lags behind its primary (``LAG_SQL``); raises ``DatabaseError`` when down."""
    with connections[alias].cursor() as cursor:
        cursor.execute(LAG_SQL)
        return float(cursor.fetchone()[0])


def forget_replica_health() -> None:
    """Check every replica again at its next use (tests; after a failover)."""
    with _health_lock:
        _health.clear()


def _is_healthy(alias: str) -> bool:
    now = time.monotonic()
    with _health_lock:
        cached = _health.get(alias)
    if cached is not None and now - cached[0] < REPLICA_CHECK_SECONDS:
        return cached[1]
    bound = float(ragrec_settings.READ_DATABASE_MAX_LAG_SECONDS)
    try:
        lag = replica_lag(alias)
    except DatabaseError as exc:
        logger.warning("Read database %r is unreachable (%s); reading from the primary.", alias, exc)
        _close(alias)
        healthy = False
    else:
        healthy = lag <= bound
        if not healthy:
            logger.warning(
                "Read database %r lags %.1f s behind (bound %g s); reading from the primary.", alias, lag, bound
            )
        elif cached is not None and not cached[1]:
            logger.info("Read database %r is back (lag %.1f s); reading from it again.", alias, lag)
    _set_health(alias, healthy, now)
    return healthy


def _set_health(alias: str, healthy: bool, at: float | None = None) -> None:
    with _health_lock:
        _health[alias] = (time.monotonic() if at is None else at, healthy)


def _close(alias: str) -> None:
    """Drop a replica connection that failed, so its next use connects afresh."""
    with suppress(DatabaseError):
        connections[alias].close()


def close_all_connections() -> None:
    """Close this process's database connections (a process about to fork must not hand them to its children)."""
    connections.close_all()


def one_round_trip(using: str) -> bool:
    """Whether statements can go to ``using`` as one simple-protocol query string (several statements, parameters
    bound by the driver): outside a transaction, with psycopg 2 or psycopg 3's default client-side binding.
    PostgreSQL runs such a string as one implicit transaction, so its ``SET LOCAL`` apply to the statements after
    them, and it costs one round trip instead of four (BEGIN, SET, the statement, COMMIT)."""
    db = connections[using]
    return not db.in_atomic_block and not db.settings_dict.get("OPTIONS", {}).get("server_side_binding")


def run_with_local_settings(settings_sql: str, sql: str, params, using: str) -> list[tuple]:
    """The rows of ``sql`` (none for a statement without results) run after ``settings_sql`` (``SET LOCAL ...;``
    statements, no parameters), both in one transaction of their own: one round trip where
    ``one_round_trip(using)``, else inside ``atomic()``."""
    if one_round_trip(using):
        with connections[using].cursor() as cursor:
            cursor.execute(settings_sql.rstrip("; ") + "; " + sql, params)
            while cursor.description is None and cursor.nextset():  # psycopg 3 stops at the first result
                pass
            return cursor.fetchall() if cursor.description is not None else []
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(settings_sql)
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


def insert_analytics_row(row) -> None:
    """Insert one analytics row (an impression, a search log entry) in a transaction (or savepoint) of its own,
    so a failure rolls back to here.

    Analytics, not orders: in a transaction of its own it does not wait for the WAL flush (a crash may lose the
    last fraction of a second of them, never corrupt them); inside a caller's transaction (a page's own writes)
    commits stay synchronous.
    """
    if one_round_trip(DEFAULT_DB_ALIAS):
        meta = row._meta
        fields = [f for f in meta.local_concrete_fields if not f.generated and (f is not meta.auto_field or row.pk)]
        query = InsertQuery(type(row))
        query.insert_values(fields, [row])
        compiler = query.get_compiler(DEFAULT_DB_ALIAS)
        returning = meta.db_returning_fields  # e.g. an auto id: set on the row, as save() does
        compiler.returning_fields = returning
        ((sql, params),) = compiler.as_sql()
        inserted = run_with_local_settings("SET LOCAL synchronous_commit = off", sql, params, DEFAULT_DB_ALIAS)
        for field, value in zip(returning, inserted[0] if returning else (), strict=True):
            setattr(row, field.attname, value)
        row._state.adding, row._state.db = False, DEFAULT_DB_ALIAS
        return
    own_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if own_transaction:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit = off")
        row.save(force_insert=True)
