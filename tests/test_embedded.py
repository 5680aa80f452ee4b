"""Database configuration: DATABASE_URL when set, embedded PostgreSQL otherwise."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from ragrec_django.embedded import database_settings


def test_database_url_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "postgres://shop:secret@db.internal:6543/shopdb")
    config = database_settings(tmp_path / "unused")
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == ("db.internal", 6543, "shopdb", "shop")
    assert not (tmp_path / "unused").exists()


def test_non_postgres_url_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", "sqlite:///db.sqlite3")
    with pytest.raises(ImproperlyConfigured, match="must point at PostgreSQL"):
        database_settings(tmp_path)


def test_embedded_server_has_pgvector(monkeypatch, tmp_path):
    import psycopg

    monkeypatch.delenv("DATABASE_URL", raising=False)
    config = database_settings(tmp_path / "pg")
    with psycopg.connect(host=config["HOST"], dbname=config["NAME"], user=config["USER"], autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        assert conn.execute("SELECT '[1,2]'::halfvec <=> '[2,4]'::halfvec").fetchone()[0] == pytest.approx(
            0.0, abs=1e-3
        )
        # A new server is tuned once (TUNED_SETTINGS), then started with those settings.
        assert conn.execute("SHOW shared_buffers").fetchone()[0] == "512MB"
        assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == "256MB"
    assert database_settings(tmp_path / "pg")["HOST"] == config["HOST"]  # attaching again changes nothing
    from ragrec_django.embedded import stop_embedded_postgres

    assert stop_embedded_postgres(tmp_path / "pg") is True
