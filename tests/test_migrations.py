"""Migrations are complete and create the pgvector extension."""

import pytest
from django.core.management import call_command
from django.db import connection


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_vector_extension_is_created_by_migration():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) >= (0, 7), "halfvec needs pgvector >= 0.7"


@pytest.mark.django_db(transaction=True)
def test_migrations_reverse_and_reapply():
    call_command("migrate", "ragrec_django", "zero", verbosity=0)
    assert "ragrec_django_embedding" not in connection.introspection.table_names()
    call_command("migrate", "ragrec_django", verbosity=0)
    assert "ragrec_django_embedding" in connection.introspection.table_names()
