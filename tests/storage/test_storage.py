"""pgvector storage against the real database: ANN queries, validation, generations."""

import numpy as np
import pytest
from django.db import connection, transaction

from ragrec_django import storage
from ragrec_django.ml.base import DimensionMismatch
from ragrec_django.models import Embedding, Item, SpaceGeneration
from ragrec_django.registry import SpaceConfig
from ragrec_django.storage import ann

pytestmark = pytest.mark.django_db

SPACE = SpaceConfig(name="text", encoder_alias="minilm", modality="text")


def unit(*values):
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def small_set():
    """Five items on a 4-d sphere: two near the x axis, two near y, one on z."""
    vectors = {
        "x1": unit(1, 0.05, 0, 0),
        "x2": unit(1, 0.2, 0.1, 0),
        "y1": unit(0.05, 1, 0, 0),
        "y2": unit(0.1, 1, 0.3, 0),
        "z1": unit(0, 0, 1, 0.1),
    }
    items = {key: Item.objects.create(key=key, title=key) for key in vectors}
    generation = storage.write_generation(SPACE, version="v1", dimension=4)
    storage.upsert_embeddings(
        generation, [items[k].id for k in vectors], np.stack(list(vectors.values())), ["h-" + k for k in vectors]
    )
    return items, generation


def keys(neighbours):
    return [Item.objects.get(id=n.item_id).key for n in neighbours]


def test_nearest_returns_the_right_items_in_order(small_set):
    result = storage.nearest("text", unit(1, 0, 0, 0), k=3)
    assert keys(result) == ["x1", "x2", "y2"]
    assert result[0].distance < result[1].distance < result[2].distance
    assert keys(storage.nearest("text", unit(0, 0.9, 0.2, 0), k=2)) == ["y2", "y1"]


def test_ann_matches_exact_search_and_excludes(small_set):
    items, _ = small_set
    query = unit(0.7, 0.55, 0.1, 0)
    assert keys(storage.nearest("text", query, k=5)) == keys(storage.nearest("text", query, k=5, exact=True))
    excluded = storage.nearest(
        "text", unit(1, 0, 0, 0), k=2, filters=storage.ItemFilter(exclude_ids=frozenset([items["x1"].id]))
    )
    assert keys(excluded) == ["x2", "y2"]


def test_query_uses_the_generation_hnsw_index(small_set):
    _, generation = small_set
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [generation.index_name])
        (definition,) = cursor.fetchone()
        assert "hnsw" in definition and "halfvec(4)" in definition and "halfvec_cosine_ops" in definition
        cursor.execute("SET enable_seqscan = off")
        cursor.execute(
            "EXPLAIN SELECT item_id FROM ragrec_django_embedding WHERE generation_id = %s "
            "ORDER BY (vector::halfvec(4)) <=> '[1,0,0,0]'::halfvec(4) LIMIT 3",
            [generation.pk],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert generation.index_name in plan


def test_upsert_is_idempotent_and_updates_in_place(small_set):
    items, generation = small_set
    before = Embedding.objects.count()
    storage.upsert_embeddings(generation, [items["z1"].id], unit(0, 0, 0, 1).reshape(1, -1), ["h-new"])
    assert Embedding.objects.count() == before
    row = Embedding.objects.get(item=items["z1"], generation=generation)
    assert row.content_hash == "h-new"
    assert np.allclose(row.vector, [0, 0, 0, 1], atol=1e-3)


def test_upsert_writes_each_vector_as_its_float16_and_batches_of_one_transaction_stay_apart(small_set):
    """The binary COPY path: every value arrives exactly as float16 (signs, tiny and large magnitudes), and a second
    batch in the same transaction writes only its own rows (the staging table is emptied after each batch)."""
    rng = np.random.default_rng(5)
    extra = [Item.objects.create(key="w%d" % n, title="w%d" % n) for n in range(300)]
    vectors = rng.normal(size=(300, 4)).astype(np.float32) * np.array([1e-3, 1.0, 300.0, -2.0], dtype=np.float32)
    hashes = ["%064x" % n for n in range(300)]
    _, generation = small_set
    with transaction.atomic():
        storage.upsert_embeddings(generation, [i.id for i in extra[:200]], vectors[:200], hashes[:200])
        storage.upsert_embeddings(generation, [i.id for i in extra[200:]], vectors[200:], ["second"] * 100)
    stored = storage.vectors_for_items("text", [i.id for i in extra])
    expected = vectors.astype(np.float16).astype(np.float32)
    assert np.array_equal(np.stack([stored[i.id] for i in extra]), expected)
    by_item = dict(Embedding.objects.filter(item__in=extra).values_list("item__key", "content_hash"))
    assert [by_item["w%d" % n] for n in range(200)] == hashes[:200]
    assert {by_item["w%d" % n] for n in range(200, 300)} == {"second"}


def test_an_item_twice_in_one_batch_is_refused_and_nothing_is_written(small_set):
    items, generation = small_set
    before = list(Embedding.objects.order_by("id").values_list("id", "content_hash"))
    with pytest.raises(ValueError, match="more than once"):
        storage.upsert_embeddings(
            generation, [items["x1"].id, items["y1"].id, items["x1"].id], np.eye(4, dtype=np.float32)[:3], ["a"] * 3
        )
    assert list(Embedding.objects.order_by("id").values_list("id", "content_hash")) == before


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.ones((1, 3), dtype=np.float32), DimensionMismatch),
        (np.ones(4, dtype=np.float32), DimensionMismatch),
        (np.array([[np.nan, 1, 0, 0]], dtype=np.float32), ValueError),
        (np.zeros((1, 4), dtype=np.float32), ValueError),
    ],
)
def test_bad_vectors_are_refused_and_nothing_is_written(small_set, bad, error):
    items, generation = small_set
    before = list(Embedding.objects.order_by("id").values_list("id", "content_hash"))
    with pytest.raises(error):
        storage.upsert_embeddings(
            generation, [items["x1"].id] * len(np.atleast_2d(bad)), bad, ["h"] * len(np.atleast_2d(bad))
        )
    assert list(Embedding.objects.order_by("id").values_list("id", "content_hash")) == before


def test_query_of_wrong_dimension_is_a_clear_error(small_set):
    with pytest.raises(DimensionMismatch, match="dimension 3 but the space stores 4"):
        storage.nearest("text", np.ones(3, dtype=np.float32), k=2)


def test_space_without_vectors_is_not_ready():
    with pytest.raises(storage.SpaceNotReady):
        storage.nearest("image", np.ones(4, dtype=np.float32), k=2)


def test_switching_to_another_dimension_builds_then_swaps_generations(small_set):
    items, first = small_set
    with pytest.raises(storage.SpaceMismatch, match="ragrec_spaces switch text"):
        storage.write_generation(SPACE, version="v2", dimension=3)

    building = storage.start_switch(SPACE, version="v2", dimension=3)
    assert building.status == SpaceGeneration.Status.BUILDING
    assert storage.write_generation(SPACE, version="v2", dimension=3) == building
    storage.upsert_embeddings(building, [items["x1"].id], unit(0, 1, 0).reshape(1, -1), ["h"])
    # Queries still read the complete old generation, with its dimension.
    assert len(storage.nearest("text", unit(1, 0, 0, 0), k=5)) == 5

    storage.promote("text")
    first.refresh_from_db()
    assert first.status == SpaceGeneration.Status.RETIRED
    assert keys(storage.nearest("text", unit(0, 1, 0), k=5)) == ["x1"]

    restored = storage.rollback("text")
    assert restored == first
    assert len(storage.nearest("text", unit(1, 0, 0, 0), k=5)) == 5


def test_drop_generation_removes_vectors_and_index(small_set):
    _, generation = small_set
    index_name = generation.index_name
    storage.drop_generation(generation)
    assert not Embedding.objects.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", [index_name])
        assert cursor.fetchone()[0] == 0


def test_failures_are_recorded_and_cleared_by_success(small_set):
    items, generation = small_set
    storage.record_failures(generation, [(items["x1"].id, "h", "bad image: truncated")])
    storage.record_failures(generation, [(items["x1"].id, "h", "bad image: truncated")])
    failure = generation.failures.get()
    assert failure.attempts == 2
    assert not Embedding.objects.filter(item=items["x1"], generation=generation).exists()
    storage.upsert_embeddings(generation, [items["x1"].id], unit(1, 0, 0, 0).reshape(1, -1), ["h"])
    assert not generation.failures.exists()


def test_nearest_to_item_reads_the_anchor_vector_in_the_same_query(small_set, django_assert_num_queries):
    items, generation = small_set
    without_anchor = storage.ItemFilter(exclude_ids=frozenset([items["x1"].id]))
    storage.nearest("text", unit(1, 0, 0, 0), 1)  # reads the generation's index type (reused for a minute)
    # active generation, savepoint, SET LOCAL, the query, release; then the anchor's category (none here: no more)
    with django_assert_num_queries(6):
        by_item = storage.nearest_to_item("text", items["x1"].id, 3, filters=without_anchor)
    own_vector = storage.vectors_for_items("text", [items["x1"].id])[items["x1"].id]
    assert keys(by_item) == keys(storage.nearest("text", own_vector, 3, filters=without_anchor)) == ["x2", "y2", "y1"]
    assert by_item[0].distance == pytest.approx(
        storage.nearest("text", own_vector, 3, filters=without_anchor)[0].distance, abs=1e-3
    )


def test_similar_items_rank_a_small_category_of_the_anchor_exactly_beside_the_index(small_set, settings, monkeypatch):
    """An index that misses the anchor's region (a small product line far from the rest) is made good by ranking
    the anchor's own category exactly, when it is small; filters still apply; a larger category is left alone."""
    from ragrec_django.storage import ann

    items, _ = small_set
    Item.objects.filter(key__in=["x1", "x2"]).update(category="line")
    Item.objects.filter(key__in=["y1", "y2", "z1"]).update(category="rest")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE %s" % Item._meta.db_table)  # the planner's estimate of the category's size
    real = ann._run_ann_query

    def index_missing_x2(sql, params, ef_search, using):  # as many rows as asked for, x2 never among them
        rows = real(sql, [*params[:-1], params[-1] + 1], ef_search, using)
        return [row for row in rows if row[0] != items["x2"].id][: params[-1]]

    monkeypatch.setattr(ann, "_run_ann_query", index_missing_x2)
    without_anchor = storage.ItemFilter(exclude_ids=frozenset([items["x1"].id]))

    def similar(limit, filters=without_anchor):
        settings.RAGREC = {**settings.RAGREC, "HNSW": {"SMALL_CATEGORY_ROWS": limit}}
        return keys(storage.nearest_to_item("text", items["x1"].id, 3, filters=filters))

    assert similar(0) == ["y2", "y1", "z1"]  # off: the index's answer
    assert similar(5000) == ["x2", "y2", "y1"]  # the exact answer
    assert similar(1) == ["y2", "y1", "z1"]  # "line" (2 items) is larger than 1: left alone
    Item.objects.filter(key="x2").update(is_eligible=False)
    assert similar(5000) == ["y2", "y1", "z1"]  # the filters hold inside the category too
    by_category = storage.ItemFilter(exclude_ids=frozenset([items["x1"].id]), categories=("rest",))
    assert similar(5000, by_category) == ["y2", "y1", "z1"]  # a selective filter is exact already


def test_nearest_to_item_without_a_vector_is_none(small_set):
    lonely = Item.objects.create(key="no-vector", title="no vector")
    assert storage.nearest_to_item("text", lonely.id, 3) is None


def test_nearest_to_item_query_uses_the_generation_hnsw_index(small_set):
    from django.test.utils import CaptureQueriesContext

    items, generation = small_set
    with CaptureQueriesContext(connection) as captured:
        storage.nearest_to_item("text", items["x1"].id, 3)
    (query,) = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT e.item_id")]
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + query)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert generation.index_name in plan


def test_vectors_are_read_back_as_stored_halfvec(small_set):
    items, _ = small_set
    read = storage.vectors_for_items("text", [items["x2"].id, items["z1"].id])
    assert set(read) == {items["x2"].id, items["z1"].id}
    assert read[items["z1"].id].dtype == np.float32
    np.testing.assert_array_equal(read[items["z1"].id], unit(0, 0, 1, 0.1).astype(np.float16).astype(np.float32))
    assert storage.vectors_for_items("text", []) == {}


def test_generation_snapshot_reads_generations_once_and_keeps_them(small_set, django_assert_num_queries):
    _, generation = small_set
    with storage.generation_snapshot():
        with django_assert_num_queries(0):
            assert storage.active_generation("text") == generation
            assert storage.active_generation("text") == generation
        with django_assert_num_queries(1):  # a space unknown to the settings: looked up once
            assert storage.active_generation("not-configured") is None
            assert storage.active_generation("not-configured") is None
        switched = storage.start_switch(SPACE, version="v2", dimension=4)
        storage.promote("text")
        # Inside the snapshot, the call keeps reading the generation it started with.
        assert storage.active_generation("text") == generation
    assert storage.active_generation("text") == switched


@pytest.mark.parametrize("cache_rows", [0, 1000])
def test_selective_filters_are_searched_exactly(small_set, settings, cache_rows):
    """In PostgreSQL (``OFFSET 0``: no index) with the vector cache off, from the cached vectors with it on;
    never through the HNSW index."""
    from django.test.utils import CaptureQueriesContext

    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EXACT_CACHE_ROWS": cache_rows}}
    items, _ = small_set
    Item.objects.filter(key__in=["y1", "y2"]).update(category="far")
    far_only = storage.ItemFilter(categories=("far",))
    with CaptureQueriesContext(connection) as captured:
        found = storage.nearest("text", unit(1, 0, 0, 0), 2, filters=far_only)
    assert keys(found) == ["y2", "y1"]
    assert any("OFFSET 0" in q["sql"] for q in captured.captured_queries) == (cache_rows == 0)
    assert any("TO STDOUT (FORMAT BINARY)" in q["sql"] for q in captured.captured_queries) == (cache_rows > 0)
    assert not any("hnsw.ef_search" in q["sql"] for q in captured.captured_queries)
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", unit(1, 0, 0, 0), 2)
    assert not any("OFFSET 0" in q["sql"] for q in captured.captured_queries)


def test_a_filter_is_read_once_per_generation_snapshot(small_set):
    """A search queries each space under the same filter: the items passing it are read once per call."""
    from django.test.utils import CaptureQueriesContext

    Item.objects.filter(key__in=["y1", "y2"]).update(category="far")
    far_only = storage.ItemFilter(categories=("far",))

    def counts(captured) -> int:
        return sum(q["sql"].startswith("SELECT i.id FROM") for q in captured.captured_queries)

    with CaptureQueriesContext(connection) as captured, storage.generation_snapshot():
        first = storage.nearest("text", unit(1, 0, 0, 0), 2, filters=far_only)
        again = storage.nearest("text", unit(0, 1, 0, 0), 2, filters=far_only)
        storage.nearest("text", unit(1, 0, 0, 0), 2, filters=storage.ItemFilter(categories=("far", "mugs")))
    assert keys(first) == ["y2", "y1"] and sorted(keys(again)) == ["y1", "y2"]
    assert counts(captured) == 2  # one per distinct filter
    Item.objects.filter(key="y1").update(category="near")
    with CaptureQueriesContext(connection) as captured:  # a new call counts again
        assert keys(storage.nearest("text", unit(1, 0, 0, 0), 2, filters=far_only)) == ["y2"]
    assert counts(captured) == 1
    assert not any("JOIN" in q["sql"] for q in captured.captured_queries)  # exact over the ids read


def test_the_exact_scan_over_the_filter_ids_matches_the_joined_exact_scan():
    """Under a selective filter (with exclusions and a price bound), the scan over the ids read first returns
    what the exact scan joined with the items returns."""
    from decimal import Decimal

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [
        Item.objects.create(
            key="r%d" % i, title="r%d" % i, category="ab"[i % 2], price=Decimal(i), group_key="g%d" % (i % 5)
        )
        for i in range(40)
    ]
    generation = storage.write_generation(SPACE, version="v1", dimension=4)
    storage.upsert_embeddings(generation, [item.id for item in items], vectors, ["h%d" % i for i in range(40)])
    filters = storage.ItemFilter(
        categories=("a",), max_price=Decimal(30), exclude_ids=frozenset([items[0].id]), exclude_group_keys=("g2",)
    )
    for query in vectors[:6]:
        found = storage.nearest("text", query, 8, filters=filters)
        assert [n.item_id for n in found] == [
            n.item_id for n in storage.nearest("text", query, 8, filters=filters, exact=True)
        ]
        assert len(found) == 8 and all(Item.objects.get(id=n.item_id).category == "a" for n in found)


def test_variant_groups_can_be_excluded(small_set):
    Item.objects.filter(key__in=["x2", "y2"]).update(group_key="mug-family")
    found = storage.nearest("text", unit(1, 0, 0, 0), 3, filters=storage.ItemFilter(exclude_group_keys=("mug-family",)))
    assert keys(found) == ["x1", "y1", "z1"]


def test_broad_filters_search_with_their_own_ef(small_set, settings):
    from django.test.utils import CaptureQueriesContext

    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EF_SEARCH": 90, "EF_SEARCH_BROAD": 50, "EF_SEARCH_MAX": 90}}
    for filters, ef in ((storage.ItemFilter(), 50), (storage.ItemFilter(in_stock_only=True), 90)):
        with CaptureQueriesContext(connection) as captured:
            storage.nearest("text", unit(1, 0, 0, 0), 2, filters=filters)
        assert any("hnsw.ef_search = %d;" % ef in q["sql"] for q in captured.captured_queries)


def test_a_bigger_generation_searches_with_ef_grown_by_the_square_root_of_its_size(small_set, settings):
    """Past EF_SEARCH_SCALE_ROWS vectors (the partition's statistics), every ef grows by sqrt(rows / that), up to
    pgvector's 1,000; at or under it, and with the scaling off (0), the values are the settings'."""
    from django.test.utils import CaptureQueriesContext

    _, generation = small_set
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE %s" % connection.ops.quote_name(storage.generation_partition(generation)))
        cursor.execute("ANALYZE %s" % connection.ops.quote_name(Item._meta.db_table))  # every item in stock: share 1
    ann._share_estimates.clear()
    hnsw = {"EF_SEARCH": 90, "EF_SEARCH_BROAD": 50, "EF_SEARCH_MAX": 900}
    in_stock_only = storage.ItemFilter(in_stock_only=True)
    for scale_rows, broad, narrow in (
        (5, 50, 90),
        (0, 50, 90),
        (2, 80, 143),
        (1, 112, 202),
    ):
        ann._generation_sizes.clear()
        settings.RAGREC = {**settings.RAGREC, "HNSW": {**hnsw, "EF_SEARCH_SCALE_ROWS": scale_rows}}
        assert storage.ef_search_for(storage.ItemFilter(), generation=generation) == broad, scale_rows
        assert storage.ef_search_for(in_stock_only, generation=generation) == narrow, scale_rows
        with CaptureQueriesContext(connection) as captured:
            storage.nearest("text", unit(1, 0, 0, 0), 2)
        assert any("hnsw.ef_search = %d;" % broad in q["sql"] for q in captured.captured_queries), scale_rows
    settings.RAGREC = {**settings.RAGREC, "HNSW": {**hnsw, "EF_SEARCH_BROAD": 600, "EF_SEARCH_SCALE_ROWS": 1}}
    ann._generation_sizes.clear()
    assert storage.ef_search_for(storage.ItemFilter(), generation=generation) == ann.PGVECTOR_MAX_EF_SEARCH


@pytest.mark.parametrize("in_stock, ef", [(5, 90), (4, 113), (1, 300)])
def test_narrow_filters_search_with_an_ef_scaled_by_the_share_they_pass(small_set, settings, in_stock, ef):
    """EF_SEARCH / (the planner's estimate of the share of items passing), at most EF_SEARCH_MAX."""
    from django.test.utils import CaptureQueriesContext

    items, _ = small_set
    Item.objects.exclude(key__in=list(items)[:in_stock]).update(in_stock=False)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE %s" % connection.ops.quote_name(Item._meta.db_table))
    ann._share_estimates.clear()
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EF_SEARCH": 90, "EF_SEARCH_BROAD": 50, "EF_SEARCH_MAX": 300}}
    in_stock_only = storage.ItemFilter(in_stock_only=True)
    assert storage.ef_search_for(in_stock_only) == ef
    with CaptureQueriesContext(connection) as captured:
        found = storage.nearest("text", unit(1, 0, 0, 0), 2, filters=in_stock_only)
    assert any("hnsw.ef_search = %d;" % ef in q["sql"] for q in captured.captured_queries)
    assert len(found) == min(2, in_stock)
    # The estimate is reused, also when the call excludes some ids of its own: no EXPLAIN the second time.
    excluding = storage.ItemFilter(in_stock_only=True, exclude_ids=frozenset({items["z1"].id}))
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", unit(1, 0, 0, 0), 2, filters=excluding)
    assert not any(q["sql"].startswith("EXPLAIN") for q in captured.captured_queries)
    assert any("hnsw.ef_search = %d;" % ef in q["sql"] for q in captured.captured_queries)
