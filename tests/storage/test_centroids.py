"""Category centroids (``storage.centroids``) and routing a query to the small categories nearest it."""

from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ragrec_django import storage
from ragrec_django.models import CategoryCentroid, Item, SpaceGeneration
from ragrec_django.storage import ann, centroids

from .test_storage import SPACE, keys, small_set, unit  # noqa: F401  (small_set is a fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def lines(small_set):  # noqa: F811
    """small_set's items in two categories, "line" (x1, x2) and "rest" (y1, y2, z1), with their statistics."""
    items, generation = small_set
    Item.objects.filter(key__in=["x1", "x2"]).update(category="line")
    Item.objects.filter(key__in=["y1", "y2", "z1"]).update(category="rest")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE %s" % Item._meta.db_table)  # the planner's estimates of the categories' sizes
    return items, generation


def test_refresh_stores_each_category_s_mean_and_size(lines):
    items, generation = lines
    Item.objects.create(key="bare", title="no category")  # no vector: counted nowhere
    assert storage.refresh_centroids(generation) == 2
    stored = {c.category: c for c in CategoryCentroid.objects.filter(generation=generation)}
    assert {name: c.items for name, c in stored.items()} == {"line": 2, "rest": 3}
    vectors = storage.vectors_for_items("text", [i.id for i in items.values()])
    for name, members in (("line", ["x1", "x2"]), ("rest", ["y1", "y2", "z1"])):
        mean = np.mean([vectors[items[k].id] for k in members], axis=0)
        np.testing.assert_allclose(np.asarray(stored[name].centroid), mean, atol=2e-3)  # halfvec precision

    Item.objects.filter(key="z1").update(category="")  # an item leaving its category moves the mean
    assert storage.refresh_centroids(generation) == 2
    rest = CategoryCentroid.objects.get(generation=generation, category="rest")
    assert rest.items == 2
    np.testing.assert_allclose(
        np.asarray(rest.centroid), np.mean([vectors[items[k].id] for k in ["y1", "y2"]], axis=0), atol=2e-3
    )


def test_outdated_names_categories_without_a_fresh_centroid(lines):
    items, generation = lines
    x1, y1 = items["x1"].id, items["y1"].id
    assert storage.centroids_outdated(generation, [x1])
    storage.refresh_centroids(generation)
    assert not storage.centroids_outdated(generation, [x1, y1])
    Item.objects.filter(key="x1").update(category="new line")
    assert storage.centroids_outdated(generation, [x1]) and not storage.centroids_outdated(generation, [y1])
    Item.objects.filter(key="x1").update(category="")
    assert not storage.centroids_outdated(generation, [x1])  # no category, nothing to compute
    CategoryCentroid.objects.filter(category="rest").update(
        computed_at=timezone.now() - timedelta(seconds=centroids.CENTROID_MAX_AGE_SECONDS + 1)
    )
    assert storage.centroids_outdated(generation, [y1])


def test_nearest_categories_orders_centroids_by_cosine_to_the_query(lines):
    _, generation = lines
    assert storage.nearest_categories(generation, unit(1, 0, 0, 0), 2, "default") == []  # none computed yet
    storage.refresh_centroids(generation)

    def names(query, count):
        return [(name, size) for name, size, _ in storage.nearest_categories(generation, query, count, "default")]

    assert names(unit(1, 0.1, 0, 0), 2) == [("line", 2), ("rest", 3)]
    assert names(5 * unit(0, 1, 0.2, 0), 1) == [("rest", 3)]
    assert names(unit(0, 1, 0, 0), 0) == []


def test_no_vector_of_a_category_is_nearer_a_query_than_its_bound(settings):
    """The least distance ``nearest_categories`` gives a category (its centroid's angle less its radius) never
    exceeds the true distance of the category's nearest vector, for queries anywhere."""
    rng = np.random.default_rng(11)
    items = Item.objects.bulk_create(Item(key="b%d" % i, title="b%d" % i, category="c%d" % (i % 6)) for i in range(240))
    centres = rng.standard_normal((6, 16))
    vectors = centres[np.arange(240) % 6] + 0.8 * rng.standard_normal((240, 16))
    generation = storage.write_generation(SPACE, version="v1", dimension=16)
    storage.upsert_embeddings(generation, [i.id for i in items], vectors, ["h"] * 240)
    storage.refresh_centroids(generation)
    stored = storage.vectors_for_items("text", [i.id for i in items])
    for query in rng.standard_normal((50, 16)):
        unit_query = query / np.linalg.norm(query)
        for name, size, least in storage.nearest_categories(generation, query, 6, "default"):
            members = np.stack([stored[i.id] for i in items if i.category == name])
            true_least = 1 - (members @ unit_query / np.linalg.norm(members, axis=1)).max()
            assert size == 40 and least <= true_least + 1e-6


def test_a_query_ranks_the_small_categories_nearest_it_exactly_beside_the_index(lines, settings, monkeypatch):
    """An index that misses a small region (a product line far from the rest) is made good by ranking the
    categories whose centroids are nearest the query exactly, as many as fit in SMALL_CATEGORY_ROWS; filters hold
    inside them; an excluded category and a selective filter are left alone; nothing changes before the centroids
    are computed."""
    items, generation = lines
    real = ann._run_ann_query

    def index_missing_x2(sql, params, ef_search, using):  # as many rows as asked for, x2 never among them
        rows = real(sql, [*params[:-1], params[-1] + 1], ef_search, using)
        return [row for row in rows if row[0] != items["x2"].id][: params[-1]]

    monkeypatch.setattr(ann, "_run_ann_query", index_missing_x2)
    query = unit(1, 0.25, 0.12, 0)  # nearest to x2, then x1

    def search(filters=None, exact=False, **hnsw):
        filters = filters or storage.ItemFilter()
        settings.RAGREC = {**settings.RAGREC, "HNSW": {"SMALL_CATEGORY_ROWS": 5000, "QUERY_CATEGORIES": 2, **hnsw}}
        return keys(storage.nearest("text", query, 3, filters=filters, exact=exact))

    truth = search(exact=True)
    assert truth[:2] == ["x2", "x1"]
    assert "x2" not in search()  # no centroids yet: the index's answer
    storage.refresh_centroids(generation)
    assert search() == truth
    assert "x2" not in search(QUERY_CATEGORIES=0)  # off
    assert "x2" not in search(SMALL_CATEGORY_ROWS=1)  # "line" (2 items) is larger than 1: left alone
    assert search(SMALL_CATEGORY_ROWS=2) == truth  # "line" alone fits
    with CaptureQueriesContext(connection) as captured:
        search(SMALL_CATEGORY_ROWS=5)  # "line" and "rest" together: one ranking of both
    (ranking,) = [q["sql"] for q in captured.captured_queries if "category = ANY" in q["sql"]]
    assert "{line,rest}" in ranking
    assert search(SMALL_CATEGORY_ROWS=4) == truth  # "rest" (3) no longer fits beside "line": "line" alone
    with CaptureQueriesContext(connection) as captured:  # z1 itself: no vector of "line" can be nearer
        assert keys(storage.nearest("text", unit(0, 0.2, 1, 0.1), 1)) == ["z1"]
    (ranking,) = [q["sql"] for q in captured.captured_queries if "category = ANY" in q["sql"]]
    assert "{rest}" in ranking  # z1's own category, within whose radius the query lies; "line" left out
    assert "x2" not in search(storage.ItemFilter(exclude_categories=("line",)))
    without_x1 = storage.ItemFilter(exclude_ids=frozenset([items["x1"].id]))
    assert search(without_x1) == search(without_x1, exact=True) == ["x2", "y2", "y1"]
    Item.objects.filter(key="x2").update(is_eligible=False)
    assert "x2" not in search()  # the filters hold inside the category
    Item.objects.filter(key="x2").update(is_eligible=True)
    by_ids = storage.ItemFilter(only_ids=frozenset([items["x2"].id, items["y1"].id]))
    assert search(by_ids) == ["x2", "y1"]  # a selective filter is exact already


def test_routing_reads_the_centroids_once_per_ttl(lines, settings):
    _, generation = lines
    storage.refresh_centroids(generation)
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"SMALL_CATEGORY_ROWS": 5000, "QUERY_CATEGORIES": 2}}
    storage.nearest("text", unit(1, 0, 0, 0), 2)
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", unit(1, 0, 0, 0), 2)
    assert not [q for q in captured.captured_queries if CategoryCentroid._meta.db_table in q["sql"]]


def test_promote_computes_the_new_generation_s_centroids(lines):
    _, old = lines
    storage.refresh_centroids(old)
    building = storage.start_switch(SPACE, version="v2", dimension=2)
    line = list(Item.objects.filter(category="line").values_list("id", flat=True))
    storage.upsert_embeddings(building, line, np.array([[1, 0], [1, 0.1]], dtype=np.float32), ["a", "b"])
    promoted = storage.promote("text")
    assert promoted.pk == building.pk
    assert list(CategoryCentroid.objects.filter(generation=building).values_list("category", "items")) == [("line", 2)]
    assert [c[:2] for c in storage.nearest_categories(promoted, np.array([1, 0.05]), 2, "default")] == [("line", 2)]
    assert CategoryCentroid.objects.filter(generation=old).count() == 2  # a rollback finds them too


def test_the_command_and_the_task_compute_every_active_generation_s_centroids(lines, capsys):
    from ragrec_django.tasks import refresh_centroids_task

    _, generation = lines
    call_command("ragrec_spaces", "centroids", "text")
    assert "text: 2 category centroids" in capsys.readouterr().out
    CategoryCentroid.objects.all().delete()
    assert refresh_centroids_task.run() == {"categories": {"text": 2}}
    assert refresh_centroids_task.run(generation.pk) == {"categories": 2}
    assert refresh_centroids_task.run(SpaceGeneration.objects.order_by("-pk").first().pk + 1) == {"categories": None}
    assert CategoryCentroid.objects.filter(generation=generation).count() == 2


def test_similar_items_also_rank_the_categories_nearest_the_anchor_that_fit(lines, settings, monkeypatch):
    """An anchor whose nearest neighbours lie in another small category (a product line split in several) has that
    category ranked exactly too, beside its own, when they fit in SMALL_CATEGORY_ROWS together."""
    items, generation = lines
    Item.objects.filter(key="x2").update(category="line two")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE %s" % Item._meta.db_table)
    storage.refresh_centroids(generation)
    real = ann._run_ann_query

    def index_missing_x2(sql, params, ef_search, using):
        rows = real(sql, [*params[:-1], params[-1] + 1], ef_search, using)
        return [row for row in rows if row[0] != items["x2"].id][: params[-1]]

    monkeypatch.setattr(ann, "_run_ann_query", index_missing_x2)
    without_anchor = storage.ItemFilter(exclude_ids=frozenset([items["x1"].id]))

    def similar(**hnsw):
        settings.RAGREC = {**settings.RAGREC, "HNSW": {"SMALL_CATEGORY_ROWS": 5000, "QUERY_CATEGORIES": 2, **hnsw}}
        return keys(storage.nearest_to_item("text", items["x1"].id, 3, filters=without_anchor))

    assert similar() == ["x2", "y2", "y1"]  # "line two" is the anchor's nearest other category
    assert similar(QUERY_CATEGORIES=0) == ["y2", "y1", "z1"]  # its own category alone: x2 is not in it
