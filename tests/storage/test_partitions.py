"""Partitioned embeddings (by generation) and events (by month) on the real database: partitions made and dropped
with generations, the queries still on each partition's index, months made on demand, retention, idempotency across
months, and the migration converting tables that hold rows."""

import io
from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from django.core import checks
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from ragrec_django import storage
from ragrec_django.exceptions import IdempotencyConflict
from ragrec_django.models import Embedding, EventClaim, Impression, Interaction, Item, SpaceGeneration
from ragrec_django.registry import SpaceConfig
from ragrec_django.services import events as event_service
from ragrec_django.services import spaces
from ragrec_django.services.events import EventInput, record_events
from ragrec_django.services.partitions import maintain_event_partitions
from ragrec_django.storage.generations import binary_index_name

SPACE = SpaceConfig(name="text", encoder_alias="minilm", modality="text")
EVENTS = Interaction._meta.db_table


def utc(*parts):
    return datetime(*parts, tzinfo=timezone.utc)


def relation_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return cursor.fetchone()[0]


def rows_in(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute('SELECT count(*) FROM "%s"' % table)
        return cursor.fetchone()[0]


def partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute('SELECT tableoid::regclass::text FROM "%s" WHERE id = %%s' % EVENTS, [event_id])
        return cursor.fetchone()[0]


def vectors(count: int, dimension: int = 4, seed: int = 0) -> np.ndarray:
    found = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return found / np.linalg.norm(found, axis=1, keepdims=True)


@pytest.fixture
def items(db):
    return [Item.objects.create(key="i%d" % n, title="item %d" % n) for n in range(6)]


def encode(generation, items, seed=0):
    storage.upsert_embeddings(generation, [i.id for i in items], vectors(len(items), seed=seed), ["h"] * len(items))


# ---------------------------------------------------------------- embeddings


def test_each_generation_has_its_partition_and_index_and_dropping_it_drops_them(items):
    first = storage.write_generation(SPACE, version="v1", dimension=4)
    encode(first, items)
    old_partition = storage.generation_partition(first)
    assert rows_in(old_partition) == len(items) and rows_in(Embedding._meta.db_table + "_default") == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename, indexdef FROM pg_indexes WHERE indexname = %s", [first.index_name])
        assert [(table, "hnsw" in definition) for table, definition in cursor.fetchall()] == [(old_partition, True)]

    second = storage.start_switch(SPACE, version="v2", dimension=4)
    encode(second, items, seed=1)
    assert rows_in(storage.generation_partition(second)) == len(items)
    spaces.promote("text")
    assert [g.number for g in spaces.drop_retired("text")] == [1]

    assert not relation_exists(old_partition) and not relation_exists(first.index_name)
    assert not Embedding.objects.filter(generation_id=first.pk).exists()
    assert Embedding.objects.filter(generation=second).count() == len(items)
    assert relation_exists(second.index_name)
    assert [n.item_id for n in storage.nearest("text", vectors(1, seed=1)[0], k=3)] == [
        n.item_id for n in storage.nearest("text", vectors(1, seed=1)[0], k=3, exact=True)
    ]


def test_a_generation_being_built_is_filled_without_an_index_and_indexed_with_the_spaces_type_when_promoted(
    items, settings
):
    first = storage.write_generation(SPACE, version="v1", dimension=4)
    encode(first, items)
    settings.RAGREC = {
        **settings.RAGREC,
        "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text", "INDEX": "binary"}},
    }
    building = storage.start_switch(SPACE, version="v2", dimension=4)
    encode(building, items, seed=1)
    assert rows_in(storage.generation_partition(building)) == len(items)
    assert not relation_exists(building.index_name) and not relation_exists(binary_index_name(building))
    query = vectors(1, seed=1)[0]
    spaces.promote("text")
    assert relation_exists(binary_index_name(building)) and not relation_exists(building.index_name)
    assert storage.active_generation("text").pk == building.pk
    after = [n.item_id for n in storage.nearest("text", query, k=3)]
    assert after == [n.item_id for n in storage.nearest("text", query, k=3, exact=True)]
    assert relation_exists(first.index_name)  # the retired generation keeps its index for a rollback


def test_ann_and_anchor_queries_read_only_the_active_partition_through_its_index(items):
    retired = storage.write_generation(SPACE, version="v1", dimension=4)
    encode(retired, items)
    active = storage.start_switch(SPACE, version="v2", dimension=4)
    encode(active, items, seed=1)
    spaces.promote("text")
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", vectors(1)[0], k=3)
        storage.nearest_to_item("text", items[0].id, k=3)
    statements = [q["sql"] for q in captured.captured_queries if "<=>" in q["sql"]]
    assert len(statements) == 2
    for sql in statements:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert active.index_name in plan, plan
        assert storage.generation_partition(active) in plan
        assert storage.generation_partition(retired) not in plan


def test_upserts_conflict_on_generation_and_item_within_the_partition(items):
    generation = storage.write_generation(SPACE, version="v1", dimension=4)
    encode(generation, items)
    first_ids = set(Embedding.objects.values_list("id", flat=True))
    encode(generation, items, seed=5)  # ON CONFLICT (generation_id, item_id) DO UPDATE
    assert set(Embedding.objects.values_list("id", flat=True)) == first_ids
    stored = Embedding.objects.get(generation=generation, item=items[0]).vector
    assert np.allclose(stored, vectors(len(items), seed=5)[0], atol=1e-3)


def test_rows_of_a_generation_without_partition_wait_in_the_default_partition_until_it_has_one(items):
    generation = SpaceGeneration.objects.create(
        space="text", number=1, encoder="minilm", modality="text", encoder_version="v1", dimension=4, status="active"
    )
    encode(generation, items)
    default = Embedding._meta.db_table + "_default"
    assert rows_in(default) == len(items)
    ids = set(Embedding.objects.values_list("id", flat=True))

    storage.create_index(generation)

    assert rows_in(default) == 0
    assert rows_in(storage.generation_partition(generation)) == len(items)
    assert set(Embedding.objects.values_list("id", flat=True)) == ids
    assert relation_exists(generation.index_name)


# ---------------------------------------------------------------- events


def view(item, at, key=None, session="s1"):
    return EventInput(event="view", item=item.key, session_key=session, created_at=at, idempotency_key=key)


def test_an_event_of_a_month_without_partition_is_stored_then_moved_into_its_month(items):
    long_ago = utc(2003, 5, 17, 12)
    assert date(2003, 5, 1) not in storage.event_months()
    (event_id,) = record_events([view(items[0], long_ago, key="k-2003")]).ids
    assert partition_of(event_id) == EVENTS + "_default"

    upkeep = maintain_event_partitions(today=date(2026, 12, 6))

    assert date(2003, 5, 1) in upkeep.created
    assert partition_of(event_id) == EVENTS + "_p200305"
    assert rows_in(EVENTS + "_default") == 0
    assert Interaction.objects.get(pk=event_id).created_at == long_ago
    assert EventClaim.objects.filter(event_id=event_id, idempotency_key="k-2003").exists()
    again = maintain_event_partitions(today=date(2026, 12, 6))
    assert again.created == [] and again.dropped == []


def test_retention_drops_the_months_before_it_and_nothing_else(items):
    today = date(2026, 12, 6)
    months = [date(2025, 10, 1), date(2025, 11, 1), date(2025, 12, 1), date(2026, 11, 1), date(2026, 12, 1)]
    stored = {}
    for n, month in enumerate(months):
        at = utc(month.year, month.month, 1) + timedelta(hours=n)
        stored[month] = record_events(
            [view(items[n], at, key="k%d" % n), view(items[n], at + timedelta(minutes=30))]
        ).ids
    maintain_event_partitions(today=today)  # every month gets its partition

    upkeep = maintain_event_partitions(retention_months=12, today=today)

    assert upkeep.kept_from == date(2025, 12, 1)
    assert upkeep.dropped == [date(2025, 10, 1), date(2025, 11, 1)]
    assert upkeep.created == []
    kept = sorted(i for month in months[2:] for i in stored[month])
    assert sorted(Interaction.objects.values_list("id", flat=True)) == kept
    assert sorted(EventClaim.objects.values_list("idempotency_key", flat=True)) == ["k2", "k3", "k4"]
    assert not relation_exists(EVENTS + "_p202510") and relation_exists(EVENTS + "_p202512")
    assert {date(2027, 1, 1), date(2027, 3, 1)} <= set(storage.event_months())
    assert maintain_event_partitions(retention_months=12, today=today).dropped == []


def test_a_retried_event_is_stored_once_across_a_month_boundary(items, monkeypatch):
    storage.create_event_months([date(2026, 1, 1), date(2026, 2, 1)])
    first_try, retry = utc(2026, 1, 31, 23, 59, 59), utc(2026, 2, 1, 0, 0, 1)
    # No created_at from the client: the server stamps each try with its own time, on either side of midnight.
    monkeypatch.setattr(event_service.timezone, "now", lambda: first_try)
    (event_id,) = record_events([view(items[0], None, key="retry-me")]).ids
    monkeypatch.setattr(event_service.timezone, "now", lambda: retry)
    result = record_events([view(items[0], None, key="retry-me"), view(items[1], None, key="new-key")])

    assert (result.stored, result.duplicates) == (1, 1)
    assert Interaction.objects.filter(idempotency_key="retry-me").count() == 1
    assert partition_of(event_id) == EVENTS + "_p202601"
    assert partition_of(result.ids[0]) == EVENTS + "_p202602"
    with pytest.raises(IdempotencyConflict):  # the key names the January event: another event under it is refused
        record_events([view(items[2], None, key="retry-me")])
    with pytest.raises(IntegrityError), transaction.atomic():  # a write past the service is held by the trigger
        Interaction.objects.create(
            event="view", item=items[3], session_key="s1", idempotency_key="retry-me", idempotency_scope="session:s1",
            created_at=retry,
        )  # fmt: skip
    assert Interaction.objects.filter(idempotency_key="retry-me").count() == 1


def test_one_click_per_impression_and_item_across_months_and_a_deleted_event_frees_its_key(items):
    storage.create_event_months([date(2026, 1, 1), date(2026, 2, 1)])
    impression = Impression.objects.create(recommender="similar", config="default", item_keys=[items[0].key])
    click = dict(event="click", item=items[0], impression=impression, session_key="s1")
    Interaction.objects.create(**click, created_at=utc(2026, 1, 31, 23, 59))
    with pytest.raises(IntegrityError), transaction.atomic():
        Interaction.objects.create(**click, created_at=utc(2026, 2, 1, 0, 1))
    left_out = storage.insert_events(
        [("click", items[0].id, None, "s1", "", 1, "", "", None, "", "", impression.pk, "", True, utc(2026, 2, 2))]
    )
    assert left_out == [] and Interaction.objects.filter(event="click").count() == 1

    (event_id,) = record_events([view(items[1], utc(2026, 1, 5), key="once")]).ids
    Interaction.objects.filter(pk=event_id).delete()
    assert not EventClaim.objects.filter(idempotency_key="once").exists()
    assert record_events([view(items[1], utc(2026, 2, 5), key="once")]).stored == 1


def test_the_command_creates_months_and_reports_retention(items, settings):
    settings.RAGREC = {**settings.RAGREC, "EVENT_RETENTION_MONTHS": 24}
    out = io.StringIO()
    call_command("ragrec_event_partitions", stdout=out)
    assert "Dropped month partitions before" in out.getvalue()
    assert storage.month_start(datetime.now(timezone.utc)) in storage.event_months()


@pytest.mark.parametrize("value", [0, -3, 1.5, "12", True])
def test_an_invalid_retention_is_E020(settings, value):
    settings.RAGREC = {**settings.RAGREC, "EVENT_RETENTION_MONTHS": value}
    errors = [e for e in checks.run_checks() if e.id == "ragrec.E020"]
    assert len(errors) == 1 and "EVENT_RETENTION_MONTHS" in errors[0].msg


# ---------------------------------------------------------------- the migration


@pytest.mark.django_db(transaction=True)
def test_the_migration_partitions_tables_that_hold_rows():
    call_command("migrate", "ragrec_django", "0012", verbosity=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ragrec_django_item (key, title, category, in_stock, is_eligible, url, group_key, is_promoted,"
                " text, metadata, created_at, updated_at) VALUES ('a', 'A', '', true, true, '', '', false, '', '{}',"
                " now(), now()), ('b', 'B', '', true, true, '', '', false, '', '{}', now(), now()) RETURNING id"
            )
            item_ids = [row[0] for row in cursor.fetchall()]
            cursor.execute(
                "INSERT INTO ragrec_django_spacegeneration (space, number, encoder, modality, encoder_version, dimension,"
                " status, created_at) VALUES ('text', 1, 'minilm', 'text', 'v1', 3, 'active', now()) RETURNING id"
            )
            (generation_id,) = cursor.fetchone()
            cursor.execute(
                "INSERT INTO ragrec_django_embedding (vector, encoder_version, content_hash, updated_at, item_id,"
                " generation_id) SELECT '[1,2,3]', 'v1', 'h', now(), id, %s FROM ragrec_django_item",
                [generation_id],
            )
            cursor.execute(
                "CREATE INDEX ragrec_hnsw_g%d ON ragrec_django_embedding USING hnsw ((vector::halfvec(3))"
                " halfvec_cosine_ops) WITH (m = 8, ef_construction = 32) WHERE generation_id = %d"
                % (generation_id, generation_id)
            )
            cursor.execute(
                "INSERT INTO ragrec_django_interaction (event, session_key, order_id, quantity, query, source,"
                " idempotency_key, idempotency_scope, created_at, item_id) VALUES"
                " ('view', 's', '', 1, '', '', 'k1', 'session:s', '2024-02-29 23:00+00', %s),"
                " ('purchase', 's', 'o1', 1, '', '', NULL, '', '2019-07-01 00:00+00', %s) RETURNING id",
                item_ids,
            )
            event_ids = sorted(row[0] for row in cursor.fetchall())

        call_command("migrate", "ragrec_django", verbosity=0)

        partition = "ragrec_django_embedding_g%d" % generation_id
        assert rows_in(partition) == 2 and rows_in("ragrec_django_embedding_default") == 0
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT tablename, indexdef FROM pg_indexes WHERE indexname = %s", ["ragrec_hnsw_g%d" % generation_id]
            )
            ((table, definition),) = cursor.fetchall()
        assert table == partition and "m='8'" in definition and "ef_construction='32'" in definition
        assert sorted(Interaction.objects.values_list("id", flat=True)) == event_ids
        assert partition_of(event_ids[0]) == EVENTS + "_p202402" and partition_of(event_ids[1]) == EVENTS + "_p201907"
        assert list(EventClaim.objects.values_list("event_id", "idempotency_key")) == [(event_ids[0], "k1")]
        new = Interaction.objects.create(event="view", session_key="s", created_at=utc(2024, 3, 1))
        assert new.pk > max(event_ids)
        with pytest.raises(IntegrityError), transaction.atomic():
            Interaction.objects.create(
                event="view",
                session_key="s",
                idempotency_key="k1",
                idempotency_scope="session:s",
                created_at=utc(2024, 3, 2),
            )
    finally:
        call_command("migrate", "ragrec_django", verbosity=0)
