"""Committed writes, counted by triggers: what "written exactly once" means.

A unique constraint only says that one row is left in the end; it says nothing of how
often that row was written. These triggers log every committed insert or update of an
embedding (key ``"generation:item"``) and of an interaction (key: its idempotency key, else
``#id``) in ``audit_writes``. A write that is rolled back (a crash mid-transaction) rolls
its log row back with it, so the log holds committed writes only.

``INSTALL_SQL`` and ``REMOVE_SQL`` are plain SQL for a DB-API cursor or a psycopg
connection; ``writes(cursor, table)`` reads the counts.
"""

from __future__ import annotations

INSTALL_SQL = """
CREATE TABLE audit_writes (
    id bigserial PRIMARY KEY, tbl text NOT NULL, key text NOT NULL, op text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION audit_embedding_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_writes (tbl, key, op) VALUES ('embedding', NEW.generation_id || ':' || NEW.item_id, TG_OP);
    RETURN NULL;
END $$;
CREATE FUNCTION audit_event_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_writes (tbl, key, op) VALUES ('event', coalesce(NEW.idempotency_key, '#' || NEW.id), TG_OP);
    RETURN NULL;
END $$;
CREATE TRIGGER audit_writes AFTER INSERT OR UPDATE ON ragrec_django_embedding
    FOR EACH ROW EXECUTE FUNCTION audit_embedding_write();
CREATE TRIGGER audit_writes AFTER INSERT OR UPDATE ON ragrec_django_interaction
    FOR EACH ROW EXECUTE FUNCTION audit_event_write();
"""

REMOVE_SQL = """
DROP TRIGGER IF EXISTS audit_writes ON ragrec_django_embedding;
DROP TRIGGER IF EXISTS audit_writes ON ragrec_django_interaction;
DROP FUNCTION IF EXISTS audit_embedding_write();
DROP FUNCTION IF EXISTS audit_event_write();
DROP TABLE IF EXISTS audit_writes;
"""


def writes(cursor, table: str = "embedding") -> dict[str, int]:
    """{key: committed writes} of ``table`` ("embedding" or "event") from the audit log."""
    cursor.execute("SELECT key, count(*) FROM audit_writes WHERE tbl = %s GROUP BY key", [table])
    return dict(cursor.fetchall())
