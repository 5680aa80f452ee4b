"""The binary-quantized HNSW index option (a space's "INDEX": "binary") against the real database."""

from decimal import Decimal

import numpy as np
import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ragrec_django import registry, storage
from ragrec_django.models import Item
from ragrec_django.registry import SpaceConfig
from ragrec_django.storage import ann
from ragrec_django.storage.ann import rebuild_index
from ragrec_django.storage.generations import binary_index_name

pytestmark = pytest.mark.django_db

DIM = 32
N = 300
BINARY_SPACE = SpaceConfig(name="text", encoder_alias="minilm", modality="text", index="binary")


@pytest.fixture
def catalogue():
    """300 items with random 32-d vectors, prices 1..300 and every third out of stock, in a binary-indexed generation."""
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = Item.objects.bulk_create(
        Item(key="i%d" % n, title="item %d" % n, price=Decimal(n + 1), in_stock=n % 3 != 0) for n in range(N)
    )
    generation = storage.write_generation(BINARY_SPACE, version="v1", dimension=DIM)
    storage.upsert_embeddings(generation, [item.id for item in items], vectors, ["h%d" % n for n in range(N)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ragrec_django_embedding")
    return items, generation, rng


def ids(neighbours):
    return [n.item_id for n in neighbours]


def test_a_binary_space_gets_only_the_bit_index(catalogue):
    _, generation, _ = catalogue
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE %s", [generation.index_name + "%"]
        )
        indexes = dict(cursor.fetchall())
    assert list(indexes) == [binary_index_name(generation)]
    definition = indexes[binary_index_name(generation)]
    assert "hnsw" in definition and "binary_quantize(vector)" in definition and "bit_hamming_ops" in definition
    assert "bit(%d)" % DIM in definition and "generation_id = %d" % generation.pk in definition


@pytest.mark.parametrize(
    "filters",
    [
        storage.NO_FILTER,
        storage.ItemFilter(),
        storage.ItemFilter(in_stock_only=True),
        storage.ItemFilter(min_price=Decimal(50), max_price=Decimal(120)),
    ],
    ids=["none", "eligible", "in stock", "price range"],
)
def test_binary_index_with_full_rerank_depth_equals_exact_search_under_filters(catalogue, filters):
    items, _, rng = catalogue
    by_id = {item.id: item for item in items}
    for query in rng.normal(size=(5, DIM)).astype(np.float32):
        found = storage.nearest("text", query, 10, filters=filters, rerank_depth=N)
        expected = storage.nearest("text", query, 10, filters=filters, exact=True)
        assert ids(found) == ids(expected)
        assert [n.distance for n in found] == pytest.approx([n.distance for n in expected], abs=1e-6)
        for neighbour in found:
            item = by_id[neighbour.item_id]
            assert filters.in_stock_only <= item.in_stock
            assert (filters.min_price or 0) <= item.price <= (filters.max_price or item.price)


def test_binary_index_keeps_exclusions_and_reranks_by_exact_distance(catalogue):
    items, _, rng = catalogue
    query = rng.normal(size=DIM).astype(np.float32)
    nearest_ten = ids(storage.nearest("text", query, 10, exact=True))
    excluded = frozenset(nearest_ten[:3])
    found = storage.nearest("text", query, 10, filters=storage.ItemFilter(exclude_ids=excluded), rerank_depth=N)
    assert not excluded & set(ids(found))
    distances = [n.distance for n in found]
    assert distances == sorted(distances)
    # A shallow re-rank still answers k distinct items, ordered by their exact distance.
    shallow = storage.nearest("text", query, 10, rerank_depth=10)
    assert len(set(ids(shallow))) == 10 and [n.distance for n in shallow] == sorted(n.distance for n in shallow)


def test_nearest_to_item_through_the_binary_index(catalogue):
    items, _, _ = catalogue
    anchor = items[7]
    own = storage.vectors_for_items("text", [anchor.id])[anchor.id]
    without_anchor = storage.ItemFilter(exclude_ids=frozenset([anchor.id]))
    by_item = storage.nearest_to_item("text", anchor.id, 5, filters=without_anchor, rerank_depth=N)
    assert ids(by_item) == ids(storage.nearest("text", own, 5, filters=without_anchor, exact=True))
    lonely = Item.objects.create(key="no-vector", title="no vector")
    assert storage.nearest_to_item("text", lonely.id, 3) is None


def test_the_query_uses_the_bit_index(catalogue):
    _, generation, rng = catalogue
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", rng.normal(size=DIM), 10, filters=storage.ItemFilter(in_stock_only=True))
    (query,) = [q["sql"] for q in captured.captured_queries if "<~>" in q["sql"]]
    with connection.cursor() as cursor:
        # 300 rows: the planner would rather sort them all; at scale it picks the index on its own
        # (benchmarks/query.py, phase "binary", reports the plan).
        cursor.execute("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
        cursor.execute("EXPLAIN " + query)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan; RESET enable_bitmapscan; RESET enable_sort")
    assert "Index Scan using %s" % binary_index_name(generation) in plan


def test_the_active_generation_keeps_its_halfvec_index_when_the_setting_changes(catalogue, settings):
    """A halfvec generation is queried through its halfvec index whatever the space's INDEX says now."""
    _, binary_generation, rng = catalogue
    storage.drop_generation(binary_generation)
    settings.RAGREC = {
        **settings.RAGREC,
        "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text", "INDEX": "binary"}},
    }
    halfvec_space = SpaceConfig(name="text", encoder_alias="minilm", modality="text")
    generation = storage.write_generation(halfvec_space, version="v2", dimension=DIM)
    items = list(Item.objects.all())
    storage.upsert_embeddings(generation, [i.id for i in items], rng.normal(size=(len(items), DIM)), ["h"] * len(items))
    with CaptureQueriesContext(connection) as captured:
        found = storage.nearest("text", rng.normal(size=DIM), 10)
    assert len(found) == 10
    assert not any("<~>" in q["sql"] for q in captured.captured_queries)
    assert registry.get_space("text").index == "binary"  # the next generation built gets the bit index


def test_dropping_a_binary_generation_drops_its_bit_index(catalogue):
    _, generation, _ = catalogue
    name = binary_index_name(generation)
    storage.drop_generation(generation)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        assert cursor.fetchone()[0] is None
    ann._index_types.clear()


@pytest.mark.parametrize(
    "space, message",
    [
        ({"INDEX": "ivfflat"}, r'\["INDEX"\] must be one of halfvec, binary'),
        ({"INDEX": "binary", "RERANK_DEPTH": 5}, r'\["RERANK_DEPTH"\] must be an integer from 10 to 1000'),
        ({"RERANK_DEPTH": "100"}, r'\["RERANK_DEPTH"\] must be an integer'),
        ({"RERANK_DEPTH": True}, r'\["RERANK_DEPTH"\] must be an integer'),
        ({"INDEXES": "binary"}, r'optional: "INDEX", "RERANK_DEPTH"'),
    ],
)
def test_bad_index_settings_are_a_system_check_error(settings, space, message):
    settings.RAGREC = {**settings.RAGREC, "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text", **space}}}
    with pytest.raises(ImproperlyConfigured, match=message):
        registry.get_spaces()
    assert "ragrec.E005" in [m.id for m in run_checks()]


def test_a_bad_global_rerank_depth_is_a_system_check_error(settings):
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"RERANK_DEPTH": 5000}}
    with pytest.raises(ImproperlyConfigured, match=r'RAGREC\["HNSW"\]\["RERANK_DEPTH"\] must be an integer'):
        registry.get_spaces()
    assert "ragrec.E005" in [m.id for m in run_checks()]


def test_rerank_depth_comes_from_the_space_else_the_global_setting_grown_with_the_generation(catalogue, settings):
    """The global RERANK_DEPTH holds up to EF_SEARCH_SCALE_ROWS vectors and grows by (rows / that) ** 0.6 beyond, at
    most 1,000; a space's own RERANK_DEPTH is taken as it is."""
    from django.test.utils import CaptureQueriesContext

    _, generation, rng = catalogue
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE %s" % connection.ops.quote_name(storage.generation_partition(generation)))
    space = {"text": {"ENCODER": "minilm", "MODALITY": "text", "INDEX": "binary"}}
    for hnsw, depth in (
        ({}, 100),
        ({"RERANK_DEPTH": 60}, 60),
        ({"RERANK_DEPTH": 60, "EF_SEARCH_SCALE_ROWS": 30}, 239),  # 300 rows: 60 * 10 ** 0.6 = 238.9
        ({"RERANK_DEPTH": 600, "EF_SEARCH_SCALE_ROWS": 30}, 1000),
        ({"RERANK_DEPTH": 60, "EF_SEARCH_SCALE_ROWS": 0}, 60),
    ):
        ann._generation_sizes.clear()
        settings.RAGREC = {**settings.RAGREC, "SPACES": space, "HNSW": hnsw}
        assert ann._rerank_depth(generation, "default") == depth, hnsw
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", rng.normal(size=DIM).astype(np.float32), 10)
    assert any("hnsw.ef_search = 60;" in q["sql"] for q in captured.captured_queries)  # max(ef 60, depth 60)
    settings.RAGREC = {**settings.RAGREC, "SPACES": {"text": {**space["text"], "RERANK_DEPTH": 250}}}
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EF_SEARCH_SCALE_ROWS": 30}}
    assert ann._rerank_depth(generation, "default") == 250


def test_rebuild_index_switches_the_active_generation_without_a_new_one(catalogue, settings):
    from django.core.management import call_command

    items, generation, rng = catalogue
    query = rng.normal(size=DIM).astype(np.float32)
    settings.RAGREC = {**settings.RAGREC, "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text"}}}
    storage.nearest("text", query, 10)  # the binary index type is now cached: rebuild_index must forget it
    call_command("ragrec_spaces", "rebuild-index", "text")
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE %s", [generation.index_name + "%"])
        assert [row[0] for row in cursor.fetchall()] == [generation.index_name]
    with CaptureQueriesContext(connection) as captured:
        found = storage.nearest("text", query, 10)
    assert not any("<~>" in q["sql"] for q in captured.captured_queries)
    assert ids(found) == ids(storage.nearest("text", query, 10, exact=True))
    assert rebuild_index(generation, "halfvec") is False
    settings.RAGREC = {
        **settings.RAGREC,
        "SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "text", "INDEX": "binary"}},
    }
    call_command("ragrec_spaces", "rebuild-index", "text")
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", query, 10)
    assert any("<~>" in q["sql"] for q in captured.captured_queries)
