# Partitioned tables (issue 16, docs/scaling.md "Partitioned tables").
#
# ragrec_django_embedding becomes LIST-partitioned by generation_id: one partition per space generation
# (<table>_g<id>) holding its rows and its HNSW index (the same name as before, without the WHERE clause), and a
# default partition for the rows of a generation that has none. ragrec_django_interaction becomes RANGE-partitioned
# by the calendar month (UTC) of created_at: a partition per month holding events (<table>_pYYYYMM) and for the
# current month and the next three, and a default partition, so an insert for any time is stored.
#
# A partitioned table's primary key and unique constraints must hold its partition key: the primary keys become
# (id, generation_id) and (id, created_at), with id still drawn from one sequence (Django's pk stays id). The events'
# two unique indexes (a visitor's idempotency key, one click per impression and item) move to EventClaim, filled
# from the existing events and kept by a trigger on the event table (storage.insert_events claims first).
#
# Existing rows are copied into the new tables within this migration's transaction (both tables are locked
# meanwhile) and the HNSW indexes of existing generations are rebuilt on their partitions with their parameters:
# on a large catalogue this takes as long as building them did (docs/scaling.md). The reverse turns both tables back
# into plain ones with their former keys and indexes.

import re
from datetime import timedelta

from django.db import migrations, models

EMBEDDINGS = "ragrec_django_embedding"
EVENTS = "ragrec_django_interaction"
CLAIMS = "ragrec_django_eventclaim"
GENERATIONS = "ragrec_django_spacegeneration"
#: Months with an event partition ahead of the current one.
MONTHS_AHEAD = 3
#: The events' unique indexes that EventClaim replaces, as they were.
EVENT_UNIQUE_INDEXES = {
    "ragrec_event_idempotency": "CREATE UNIQUE INDEX ragrec_event_idempotency ON {t} (idempotency_scope, "
    "idempotency_key) WHERE idempotency_key IS NOT NULL",
    "ragrec_event_one_click": "CREATE UNIQUE INDEX ragrec_event_one_click ON {t} (impression_id, item_id) "
    "WHERE event = 'click' AND impression_id IS NOT NULL",
}
CLAIM_SQL = """
CREATE FUNCTION ragrec_claim_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ragrec_django_eventclaim
        (event_id, created_at, idempotency_scope, idempotency_key, payload_hash, click_impression, click_item)
    VALUES (NEW.id, NEW.created_at, NEW.idempotency_scope, NEW.idempotency_key, NEW.payload_hash,
            CASE WHEN NEW.event = 'click' THEN NEW.impression_id END,
            CASE WHEN NEW.event = 'click' AND NEW.impression_id IS NOT NULL THEN NEW.item_id END)
    ON CONFLICT (event_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE FUNCTION ragrec_release_event_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ragrec_django_eventclaim WHERE event_id = OLD.id;
    RETURN NULL;
END $$;
CREATE TRIGGER ragrec_claim_event AFTER INSERT ON ragrec_django_interaction FOR EACH ROW
    WHEN (NEW.idempotency_key IS NOT NULL OR (NEW.event = 'click' AND NEW.impression_id IS NOT NULL))
    EXECUTE FUNCTION ragrec_claim_event();
CREATE TRIGGER ragrec_release_event_claim AFTER DELETE ON ragrec_django_interaction FOR EACH ROW
    WHEN (OLD.idempotency_key IS NOT NULL OR (OLD.event = 'click' AND OLD.impression_id IS NOT NULL))
    EXECUTE FUNCTION ragrec_release_event_claim();
"""
DROP_CLAIM_SQL = """
DROP TRIGGER IF EXISTS ragrec_claim_event ON ragrec_django_interaction;
DROP TRIGGER IF EXISTS ragrec_release_event_claim ON ragrec_django_interaction;
DROP FUNCTION IF EXISTS ragrec_claim_event();
DROP FUNCTION IF EXISTS ragrec_release_event_claim();
"""


def _rows(cursor, sql, params=()):
    cursor.execute(sql, params)
    return cursor.fetchall()


def _definitions(cursor, table):
    """(constraints as (name, type, definition), indexes not backing a constraint as (name, definition))."""
    constraints = _rows(
        cursor,
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'f') ORDER BY contype DESC, conname",
        [table],
    )
    indexes = _rows(
        cursor,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass AND NOT EXISTS ("
        " SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid) ORDER BY 1",
        [table],
    )
    return constraints, indexes


def _sequence_position(cursor, table):
    (sequence,) = _rows(cursor, "SELECT pg_get_serial_sequence(%s, 'id')", [table])[0]
    return _rows(cursor, "SELECT last_value, is_called FROM %s" % sequence)[0]


def _swap(schema_editor, table, partition_by, partitions, pk_columns, fill_claims=False):
    """Copy ``table`` into a new table (partitioned by ``partition_by``, e.g. ``("LIST", "generation_id")``, with
    ``partitions``, or plain when None), drop it, and give the copy its name, keys, foreign keys and indexes (HNSW
    indexes apart)."""
    execute = schema_editor.execute
    with schema_editor.connection.cursor() as cursor:
        constraints, indexes = _definitions(cursor, table)
        last_value, is_called = _sequence_position(cursor, table)
    new = table + "_new"
    execute(
        "CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)%s"
        % (new, table, " PARTITION BY %s (%s)" % partition_by if partition_by else "")
    )
    execute("ALTER TABLE %s ALTER COLUMN id DROP DEFAULT" % new)
    for name, bounds in partitions:
        execute("CREATE TABLE %s PARTITION OF %s %s" % (name, new, bounds))
    execute("INSERT INTO %s SELECT * FROM %s" % (new, table))
    if fill_claims:
        execute(
            "INSERT INTO " + CLAIMS + " (event_id, created_at, idempotency_scope, idempotency_key, payload_hash,"
            " click_impression, click_item) SELECT id, created_at, idempotency_scope, idempotency_key, payload_hash,"
            " CASE WHEN event = 'click' THEN impression_id END,"
            " CASE WHEN event = 'click' AND impression_id IS NOT NULL THEN item_id END"
            " FROM " + table + " WHERE idempotency_key IS NOT NULL OR (event = 'click' AND impression_id IS NOT NULL)"
        )
    execute("DROP TABLE %s" % table)
    execute("ALTER TABLE %s RENAME TO %s" % (new, table))
    sequence = table + "_id_seq"
    if partition_by:
        execute("CREATE SEQUENCE %s OWNED BY %s.id" % (sequence, table))
        execute("ALTER TABLE %s ALTER COLUMN id SET DEFAULT nextval('%s'::regclass)" % (table, sequence))
    else:
        execute(
            "ALTER TABLE %s ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME %s)" % (table, sequence)
        )
    execute("SELECT setval('%s', %d, %s)" % (sequence, last_value, "true" if is_called else "false"))
    for name, kind, definition in constraints:
        if kind == "p":
            definition = "PRIMARY KEY (%s)" % ", ".join(pk_columns)
        execute("ALTER TABLE %s ADD CONSTRAINT %s %s" % (table, name, definition))
    for name, definition in indexes:
        if " USING hnsw " in definition or name in EVENT_UNIQUE_INDEXES:
            continue  # per partition (HNSW), or replaced by EventClaim
        if definition.startswith("CREATE UNIQUE") and partition_by and partition_by[1] not in definition:
            raise RuntimeError("Unique index %s of %s lacks the partition key %s." % (name, table, partition_by[1]))
        execute(definition.replace(" ON ONLY ", " ON "))


def _hnsw_indexes(cursor):
    """The HNSW indexes of the embeddings (on the table or any partition) as (name, generation id, definition)."""
    found = []
    for name, definition in _rows(
        cursor,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_am a ON a.oid = c.relam "
        "WHERE a.amname = 'hnsw' AND (t.relname = %s OR t.relname LIKE %s) ORDER BY 1",
        [EMBEDDINGS, EMBEDDINGS + "\\_g%"],
    ):
        generation = re.match(r"ragrec_hnsw_g(\d+)", name)
        if generation is not None:
            found.append((name, int(generation.group(1)), definition))
    return found


def _hnsw_on(definition, table, generation_id):
    """An HNSW index definition moved to ``table``, restricted to the generation's rows (on its partition, the
    clause lets the planner drop the queries' "generation_id = <id>" as before; storage.generations.create_index)."""
    definition = re.sub(r" ON (\S+\.)?%s\S* USING " % EMBEDDINGS, " ON %s USING " % table, definition)
    definition = re.sub(r" WHERE .*$", "", definition)
    return definition + " WHERE (generation_id = %d)" % generation_id


def _month_bounds(month):
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return "FOR VALUES FROM ('%s 00:00:00+00') TO ('%s 00:00:00+00')" % (month.isoformat(), following.isoformat())


def partition_tables(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        generations = [row[0] for row in _rows(cursor, "SELECT id FROM %s ORDER BY id" % GENERATIONS)]
        hnsw = _hnsw_indexes(cursor)
        months = {
            row[0]
            for row in _rows(
                cursor,
                "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date FROM %s "
                "UNION SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => n))::date "
                "FROM generate_series(0, %d) AS n" % (EVENTS, MONTHS_AHEAD),
            )
        }
    embedding_partitions = [("%s_g%d" % (EMBEDDINGS, g), "FOR VALUES IN (%d)" % g) for g in generations]
    _swap(
        schema_editor,
        EMBEDDINGS,
        ("LIST", "generation_id"),
        [*embedding_partitions, (EMBEDDINGS + "_default", "DEFAULT")],
        ["id", "generation_id"],
    )
    for _, generation_id, definition in hnsw:
        if generation_id in generations:
            schema_editor.execute(_hnsw_on(definition, "%s_g%d" % (EMBEDDINGS, generation_id), generation_id))
    event_partitions = [("%s_p%s" % (EVENTS, m.strftime("%Y%m")), _month_bounds(m)) for m in sorted(months)]
    _swap(
        schema_editor,
        EVENTS,
        ("RANGE", "created_at"),
        [*event_partitions, (EVENTS + "_default", "DEFAULT")],
        ["id", "created_at"],
        fill_claims=True,
    )
    schema_editor.execute(CLAIM_SQL)


def unpartition_tables(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        hnsw = _hnsw_indexes(cursor)
    schema_editor.execute(DROP_CLAIM_SQL)
    _swap(schema_editor, EMBEDDINGS, None, [], ["id"])
    for _, generation_id, definition in hnsw:
        schema_editor.execute(_hnsw_on(definition, EMBEDDINGS, generation_id))
    _swap(schema_editor, EVENTS, None, [], ["id"])
    for definition in EVENT_UNIQUE_INDEXES.values():
        schema_editor.execute(definition.format(t=EVENTS))


class Migration(migrations.Migration):
    dependencies = [
        ("ragrec_django", "0012_embedding_updated"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventClaim",
            fields=[
                (
                    "event_id",
                    models.BigIntegerField(
                        help_text="The event's id (Interaction.id).", primary_key=True, serialize=False
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(help_text="The event's time: retention drops claims with their month."),
                ),
                ("idempotency_scope", models.CharField(blank=True, default="", max_length=80)),
                ("idempotency_key", models.CharField(blank=True, max_length=128, null=True)),
                ("payload_hash", models.CharField(blank=True, default="", help_text="As on the event.", max_length=64)),
                (
                    "click_impression",
                    models.UUIDField(blank=True, help_text="For a click: the impression it was shown in.", null=True),
                ),
                (
                    "click_item",
                    models.BigIntegerField(blank=True, help_text="For a click: the item clicked (Item.id).", null=True),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["created_at"], name="ragrec_claim_time")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("idempotency_key__isnull", False)),
                        fields=("idempotency_scope", "idempotency_key"),
                        name="ragrec_claim_idempotency",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("click_impression__isnull", False)),
                        fields=("click_impression", "click_item"),
                        name="ragrec_claim_one_click",
                    ),
                ],
            },
        ),
        migrations.RunPython(partition_tables, unpartition_tables),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(model_name="interaction", name="ragrec_event_idempotency"),
                migrations.RemoveConstraint(model_name="interaction", name="ragrec_event_one_click"),
            ],
        ),
    ]
