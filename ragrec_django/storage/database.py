"""Facts about the database server itself."""

from __future__ import annotations

from django.db import connection, connections


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
