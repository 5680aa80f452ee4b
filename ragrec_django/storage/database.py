"""Facts about the database server itself."""

from __future__ import annotations

from django.db import connection


def server_version() -> str:
    """PostgreSQL's version, as ``SHOW server_version`` reports it (e.g. "16.4")."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return cursor.fetchone()[0]
