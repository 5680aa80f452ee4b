"""The process's vector cache for exact ranking under selective filters (``storage/vector_cache.py``)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from ragrec_django import storage
from ragrec_django.models import Embedding, Item
from ragrec_django.registry import SpaceConfig, get_spaces
from ragrec_django.storage import vector_cache

pytestmark = pytest.mark.django_db

SPACE = SpaceConfig(name="text", encoder_alias="fake", modality="text")


@pytest.fixture
def catalogue(settings):
    """60 items in categories a/b/c with random 8-d vectors (one item of "a" without a vector)."""
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EXACT_CACHE_ROWS": 1000, "EXACT_CACHE_SECONDS": 60}}
    rng = np.random.default_rng(7)
    items = [
        Item.objects.create(
            key="i%d" % i, title="i%d" % i, category="abc"[i % 3], price=Decimal(i), group_key="g%d" % (i % 4)
        )
        for i in range(60)
    ]
    encoded = items[1:]
    vectors = rng.standard_normal((len(encoded), 8)).astype(np.float32)
    generation = storage.write_generation(SPACE, version="v1", dimension=8)
    storage.upsert_embeddings(generation, [i.id for i in encoded], vectors, ["h%d" % i.id for i in encoded])
    return items, generation, rng


def other_process_writes(generation, item, vector, *, stamped=None) -> None:
    """A write by another process (``upsert_embeddings`` there): the row changes, this process forgets nothing."""
    Embedding.objects.filter(generation=generation, item_id=item.id).update(vector=vector, updated_at=stamped or Now())


def reads(captured) -> int:
    return sum("TO STDOUT (FORMAT BINARY)" in q["sql"] for q in captured.captured_queries)


FILTERS = [
    storage.ItemFilter(categories=("a",)),
    storage.ItemFilter(categories=("a", "b"), max_price=Decimal(40)),
    storage.ItemFilter(categories=("c",), exclude_group_keys=("g1",), min_price=Decimal(5)),
]


@pytest.mark.parametrize("filters", FILTERS)
def test_the_cached_ranking_is_postgresql_s_exact_ranking(catalogue, filters):
    """Same items, same order, same distances (to float32 rounding) as pgvector's exact scan, for every k."""
    items, _, rng = catalogue
    for query in rng.standard_normal((5, 8)).astype(np.float32):
        for k in (1, 5, 40):
            cached = storage.nearest("text", query, k, filters=filters)
            exact = storage.nearest("text", query, k, filters=filters, exact=True)
            assert [n.item_id for n in cached] == [n.item_id for n in exact]
            np.testing.assert_allclose([n.distance for n in cached], [n.distance for n in exact], atol=1e-5)


def test_vectors_are_read_once_then_served_from_the_process(catalogue):
    _, _, rng = catalogue
    only_a = storage.ItemFilter(categories=("a",))
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", rng.standard_normal(8), 5, filters=only_a)
    assert reads(captured) == 1
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", rng.standard_normal(8), 5, filters=only_a)  # the item without a vector is known
        storage.nearest("text", rng.standard_normal(8), 5, filters=storage.ItemFilter(categories=("a",), max_price=9))
    assert reads(captured) == 0


def test_writes_in_this_process_are_seen_at_once(catalogue):
    items, generation, _ = catalogue
    only_a = storage.ItemFilter(categories=("a",))
    target = np.eye(8, dtype=np.float32)[3]
    before = storage.nearest("text", target, 1, filters=only_a)
    moved = items[3]  # category "a"
    assert before[0].item_id != moved.id or before[0].distance > 0.01
    storage.upsert_embeddings(generation, [moved.id], target[None, :], ["new"])
    assert [(n.item_id, round(n.distance, 4)) for n in storage.nearest("text", target, 1, filters=only_a)] == [
        (moved.id, 0.0)
    ]
    # The item that had no vector gets one: found at once too.
    storage.upsert_embeddings(generation, [items[0].id], -target[None, :], ["first"])
    assert storage.nearest("text", -target, 1, filters=only_a)[0].item_id == items[0].id
    # A failure removes the vector: no longer ranked.
    storage.record_failures(generation, [(items[0].id, "x", "broken image")])
    assert items[0].id not in [n.item_id for n in storage.nearest("text", -target, 30, filters=only_a)]


def test_another_process_s_writes_are_seen_after_exact_cache_seconds(catalogue, monkeypatch):
    items, generation, _ = catalogue
    only_a = storage.ItemFilter(categories=("a",))
    target = np.eye(8, dtype=np.float32)[5]
    storage.nearest("text", target, 1, filters=only_a)
    # Another process (an encoding worker) writes, stamping updated_at: this process's cache does not know.
    other_process_writes(generation, items[6], [0, 0, 0, 0, 0, 1, 0, 0])
    clock = vector_cache.time.monotonic()
    stale = storage.nearest("text", target, 1, filters=only_a)
    assert stale[0].item_id != items[6].id or stale[0].distance > 0.001
    monkeypatch.setattr(vector_cache.time, "monotonic", lambda: clock + 61)
    fresh = storage.nearest("text", target, 1, filters=only_a)
    assert fresh[0].item_id == items[6].id and fresh[0].distance == pytest.approx(0.0, abs=1e-4)


def test_the_filter_is_always_fresh(catalogue):
    """Only vectors are cached: an item leaving the category, the stock or eligibility leaves the results at once."""
    items, _, rng = catalogue
    only_a = storage.ItemFilter(categories=("a",))
    query = rng.standard_normal(8).astype(np.float32)
    first = storage.nearest("text", query, 1, filters=only_a)[0].item_id
    Item.objects.filter(id=first).update(category="b")
    assert first not in [n.item_id for n in storage.nearest("text", query, 30, filters=only_a)]
    second = storage.nearest("text", query, 1, filters=only_a)[0].item_id
    Item.objects.filter(id=second).update(is_eligible=False)
    assert second not in [n.item_id for n in storage.nearest("text", query, 30, filters=only_a)]


def test_similar_items_under_a_selective_filter(catalogue):
    items, _, _ = catalogue
    only_b = storage.ItemFilter(categories=("b",), exclude_ids=frozenset([items[1].id]))
    cached = storage.nearest_to_item("text", items[1].id, 5, filters=only_b)
    vector = storage.vectors_for_items("text", [items[1].id])[items[1].id]
    assert [n.item_id for n in cached] == [
        n.item_id for n in storage.nearest("text", vector, 5, filters=only_b, exact=True)
    ]
    assert storage.nearest_to_item("text", items[0].id, 5, filters=only_b) is None  # no vector of its own


def test_a_filter_larger_than_the_cache_is_ranked_in_postgresql(catalogue, settings):
    _, _, rng = catalogue
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EXACT_CACHE_ROWS": 10}}
    with CaptureQueriesContext(connection) as captured:
        found = storage.nearest("text", rng.standard_normal(8), 3, filters=storage.ItemFilter(categories=("a",)))
    assert len(found) == 3
    assert reads(captured) == 0 and any("OFFSET 0" in q["sql"] for q in captured.captured_queries)


@pytest.mark.parametrize(
    "hnsw, message",
    [
        ({"EXACT_CACHE_ROWS": -1}, "EXACT_CACHE_ROWS"),
        ({"EXACT_CACHE_ROWS": "many"}, "EXACT_CACHE_ROWS"),
        ({"EXACT_CACHE_ROWS": True}, "EXACT_CACHE_ROWS"),
        ({"EXACT_CACHE_SECONDS": 0}, "EXACT_CACHE_SECONDS"),
        ({"EXACT_CACHE_SECONDS": "1m"}, "EXACT_CACHE_SECONDS"),
        ({"SMALL_CATEGORY_ROWS": -5}, "SMALL_CATEGORY_ROWS"),
        ({"QUERY_CATEGORIES": -1}, "QUERY_CATEGORIES"),
        ({"QUERY_CATEGORIES": "2"}, "QUERY_CATEGORIES"),
        ({"SMALL_CATEGORY_ROWS": 2.5}, "SMALL_CATEGORY_ROWS"),
    ],
)
def test_bad_cache_settings_are_named(settings, hnsw, message):
    from django.core import checks

    settings.RAGREC = {**settings.RAGREC, "HNSW": hnsw}
    with pytest.raises(ImproperlyConfigured, match=message):
        get_spaces()
    errors = [e for e in checks.run_checks() if e.id == "ragrec.E005"]
    assert errors and message in errors[0].msg


def test_the_cache_ranks_exactly_filters_too_large_for_postgresql_s_exact_scan(catalogue, settings, monkeypatch):
    """Between ``EXACT_SEARCH_MAX_ROWS`` and ``EXACT_CACHED_MAX_ROWS`` matching items: exact from the cache with it
    on, through the HNSW index with it off."""
    from ragrec_django.storage import ann

    _, _, rng = catalogue
    monkeypatch.setattr(ann, "EXACT_SEARCH_MAX_ROWS", 5)
    monkeypatch.setattr(ann, "EXACT_CACHED_MAX_ROWS", 30)
    only_a = storage.ItemFilter(categories=("a",))  # 20 items
    query = rng.standard_normal(8).astype(np.float32)
    with CaptureQueriesContext(connection) as captured:
        found = storage.nearest("text", query, 5, filters=only_a)
    assert not any("hnsw.ef_search" in q["sql"] for q in captured.captured_queries)
    exact = storage.nearest("text", query, 5, filters=only_a, exact=True)
    assert [n.item_id for n in found] == [n.item_id for n in exact]
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EXACT_CACHE_ROWS": 0}}
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", query, 5, filters=only_a)
    assert any("hnsw.ef_search" in q["sql"] for q in captured.captured_queries)


def test_a_full_cache_starts_over_without_losing_the_search_s_items(catalogue, settings):
    items, _, rng = catalogue
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EXACT_CACHE_ROWS": 30}}
    storage.nearest("text", rng.standard_normal(8), 5, filters=storage.ItemFilter(categories=("a",)))  # 19 cached
    mixed = storage.ItemFilter(
        only_ids=frozenset(
            [i.id for i in items if i.category == "a"][:10] + [i.id for i in items if i.category == "b"][:15]
        )
    )  # 10 cached + 15 read: past 30, the cache starts over
    query = rng.standard_normal(8).astype(np.float32)
    found = storage.nearest("text", query, 25, filters=mixed)
    exact = storage.nearest("text", query, 25, filters=mixed, exact=True)
    assert [n.item_id for n in found] == [n.item_id for n in exact] and len(found) == 24  # items[0] has no vector


def test_a_write_during_a_read_never_puts_the_old_vector_back(catalogue, monkeypatch):
    """The read of a search started before this process rewrote an item: that search may use what it read, but
    the cache must not keep it (the next search sees the new vector)."""
    items, generation, _ = catalogue
    target = np.eye(8, dtype=np.float32)[2]
    moved = items[6]  # category "a", not yet cached
    original = vector_cache.read_vectors

    def read_then_write(generation_, ids, using):
        rows = original(generation_, ids, using)
        storage.upsert_embeddings(generation, [moved.id], target[None, :], ["rewritten"])
        return rows

    monkeypatch.setattr(vector_cache, "read_vectors", read_then_write)
    storage.nearest("text", target, 1, filters=storage.ItemFilter(categories=("a",)))
    monkeypatch.setattr(vector_cache, "read_vectors", original)
    again = storage.nearest("text", target, 1, filters=storage.ItemFilter(categories=("a",)))
    assert again[0].item_id == moved.id and again[0].distance == pytest.approx(0.0, abs=1e-4)


def later(monkeypatch, seconds: float) -> None:
    """This process's clock moves ``seconds`` on from now."""
    clock = vector_cache.time.monotonic() + seconds
    monkeypatch.setattr(vector_cache.time, "monotonic", lambda: clock)


def encoded_long_ago(generation) -> None:
    Embedding.objects.filter(generation=generation).update(updated_at=Now() - timedelta(hours=1))


def test_a_check_forgets_only_the_rows_other_processes_wrote(catalogue, monkeypatch):
    items, generation, rng = catalogue
    encoded_long_ago(generation)
    only_a = storage.ItemFilter(categories=("a",))
    target = np.eye(8, dtype=np.float32)[2]
    storage.nearest("text", target, 1, filters=only_a)
    other_process_writes(generation, items[9], target)
    later(monkeypatch, 61)
    with CaptureQueriesContext(connection) as captured:
        found = storage.nearest("text", target, 1, filters=only_a)
    assert found[0].item_id == items[9].id and found[0].distance == pytest.approx(0.0, abs=1e-4)
    changed = [q["sql"] for q in captured.captured_queries if "updated_at" in q["sql"]]
    vectors = [q["sql"] for q in captured.captured_queries if "TO STDOUT (FORMAT BINARY)" in q["sql"]]
    assert len(changed) == 1
    assert len(vectors) == 1 and "'{%d}'" % items[9].id in vectors[0]  # the rest of "a" stays cached
    with CaptureQueriesContext(connection) as captured:  # checked: nothing until EXACT_CACHE_SECONDS pass again
        storage.nearest("text", rng.standard_normal(8), 5, filters=only_a)
    assert captured.captured_queries and not any("updated_at" in q["sql"] for q in captured.captured_queries)
    assert reads(captured) == 0


def test_a_write_stamped_before_a_check_but_committed_after_it_is_seen_at_the_next(catalogue, monkeypatch):
    """``updated_at`` is taken before the writer's transaction commits: each check looks back REFRESH_OVERLAP."""
    items, generation, _ = catalogue
    encoded_long_ago(generation)
    only_a = storage.ItemFilter(categories=("a",))
    target = np.eye(8, dtype=np.float32)[4]
    storage.nearest("text", target, 1, filters=only_a)
    later(monkeypatch, 61)
    storage.nearest("text", target, 1, filters=only_a)  # a check: nothing changed
    checked = vector_cache._generations[vector_cache._key(generation, "default")].changes_since
    other_process_writes(generation, items[12], target, stamped=checked + vector_cache.REFRESH_OVERLAP / 2)
    later(monkeypatch, 122)
    found = storage.nearest("text", target, 1, filters=only_a)
    assert found[0].item_id == items[12].id and found[0].distance == pytest.approx(0.0, abs=1e-4)


def test_warming_reads_a_whole_generation_that_fits(catalogue, monkeypatch):
    items, generation, rng = catalogue
    monkeypatch.setattr(vector_cache, "_WARM_CHUNK", 16)
    with CaptureQueriesContext(connection) as captured:
        assert storage.warm_vector_cache() == {"text": 59}
    assert reads(captured) == 4  # 59 rows, 16 a statement
    with CaptureQueriesContext(connection) as captured:
        for filters in FILTERS:
            exact = storage.nearest("text", np.eye(8)[1], 5, filters=filters, exact=True)
            assert [n.item_id for n in storage.nearest("text", np.eye(8)[1], 5, filters=filters)] == [
                n.item_id for n in exact
            ]
        storage.nearest("text", rng.standard_normal(8), 5, filters=storage.ItemFilter(categories=("a",)))
    # only the item without a vector is read (to learn it has none); the exact scans are PostgreSQL's own
    assert sum("TO STDOUT (FORMAT BINARY)" in q["sql"] for q in captured.captured_queries) == 1


def test_a_generation_larger_than_the_cache_is_not_warmed(catalogue, settings):
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EXACT_CACHE_ROWS": 30, "EXACT_CACHE_SECONDS": 60}}
    with CaptureQueriesContext(connection) as captured:
        assert storage.warm_vector_cache() == {"text": 0}
    assert reads(captured) == 0


def _copy_stream(rows, dimension, *, vector_dimension=None) -> bytes:
    """A binary COPY of (item_id bigint, vector halfvec) rows as PostgreSQL writes it."""
    import struct

    parts = [b"PGCOPY\n\xff\r\n\x00", struct.pack(">ii", 0, 0)]
    for item_id, vector in rows:
        halves = np.asarray(vector, dtype=">f2")
        parts += [
            struct.pack(">hiqiHH", 2, 8, item_id, 4 + 2 * len(halves), vector_dimension or dimension, 0),
            halves.tobytes(),
        ]
    parts.append(struct.pack(">h", -1))
    return b"".join(parts)


def test_a_binary_copy_stream_is_read_in_place_and_anything_else_is_refused():
    rows = [(7, [0.5, -1.0, 2.0]), (2**40, [65504.0, 0.0, -0.25])]
    ids, vectors = vector_cache.unpack_copy(_copy_stream(rows, 3), 3)
    assert ids.tolist() == [7, 2**40] and vectors.dtype == np.float16
    assert vectors.tolist() == [[0.5, -1.0, 2.0], [65504.0, 0.0, -0.25]]
    empty_ids, empty = vector_cache.unpack_copy(_copy_stream([], 3), 3)
    assert empty_ids.shape == (0,) and empty.shape == (0, 3)
    stream = _copy_stream(rows, 3)
    for bad in (
        stream[:-3] + stream[-2:],  # a row cut short
        stream[:-2],  # no trailer
        b"COPY" + stream[4:],  # not a binary COPY
        _copy_stream(rows, 3, vector_dimension=4),  # vectors of another dimension
    ):
        with pytest.raises(ValueError):
            vector_cache.unpack_copy(bad, 3)
    with pytest.raises(ValueError):
        vector_cache.unpack_copy(stream, 4)  # read as another space's rows


def _shared_pages(array: np.ndarray) -> tuple[int, int]:
    """(pages of ``array``'s buffer that this process shares with another, pages in all), from /proc/self/pagemap
    (bit 56: the page is mapped by this process alone)."""
    import mmap
    import struct

    start = array.__array_interface__["data"][0]
    first, last = -(-start // mmap.PAGESIZE), (start + array.nbytes) // mmap.PAGESIZE  # whole pages only
    with open("/proc/self/pagemap", "rb") as pagemap:
        pagemap.seek(first * 8)
        entries = struct.unpack("<%dQ" % (last - first), pagemap.read(8 * (last - first)))
    present = [e for e in entries if e >> 63 & 1]
    return sum(not (e >> 56 & 1) for e in present), last - first


def test_a_process_forked_after_warming_ranks_from_the_rows_it_shares_with_its_parent(settings):
    """What a pre-fork server's workers inherit from a master that warmed the cache
    (``services.serving.prepare_master_process``): warming again reads nothing, ranking sends no statement and
    gives the parent's answer, and the rows' pages stay shared with the parent (only read: copy-on-write)."""
    import json
    import os
    import select
    import signal

    from django.db import connections

    from ragrec_django.ml.devices import limit_cpu_threads

    if not os.access("/proc/self/pagemap", os.R_OK):
        pytest.skip("no /proc/self/pagemap to tell shared pages on this system")
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"EXACT_CACHE_ROWS": 5000, "EXACT_CACHE_SECONDS": 3600}}
    rng = np.random.default_rng(3)
    Item.objects.bulk_create(Item(key="f%d" % i, title="f%d" % i, category="f") for i in range(3000))
    ids = list(Item.objects.filter(category="f").order_by("id").values_list("id", flat=True))
    generation = storage.write_generation(SPACE, version="v1", dimension=512)
    storage.upsert_embeddings(generation, ids, rng.standard_normal((3000, 512)), ["h"] * 3000)
    vector_cache.clear()
    assert storage.warm_vector_cache() == {"text": 3000}
    rows = vector_cache._generations[vector_cache._key(generation, "default")]
    query = rng.standard_normal(512).astype(np.float32)
    expected = vector_cache.exact_nearest(generation, query, ids, 10, "default")

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: no statement may reach the connection it shares with its parent
        try:
            limit_cpu_threads(1)  # as a worker does first (the parent's torch thread pool is not in this process)
            connections["default"].cursor = lambda *a, **k: (_ for _ in ()).throw(AssertionError("a statement"))
            outcome = {
                "warmed": vector_cache.warm(generation, "default"),
                "ranked": [
                    [int(i), float(d)] for i, d in vector_cache.exact_nearest(generation, query, ids, 10, "default")
                ],
                "pages": _shared_pages(rows.vectors[: rows.size]),
            }
        except BaseException as exc:  # noqa: BLE001
            outcome = {"error": repr(exc)}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    if not select.select([read_end], [], [], 120)[0]:  # a safety net for a stuck child, not a timing assertion
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    assert text, "the forked process answered nothing"
    outcome = json.loads(text)
    assert "error" not in outcome, outcome
    assert outcome["warmed"] == 0
    assert [i for i, _ in outcome["ranked"]] == [i for i, _ in expected]
    shared, pages = outcome["pages"]
    assert pages >= 700 and shared == pages  # 3,000 x 512 halves: 750 pages, every one still the parent's
