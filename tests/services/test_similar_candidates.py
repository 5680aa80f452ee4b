"""The "similar items" candidate stage from the database: each source's list as storage ranks it, point in time."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from ragrec_django import storage
from ragrec_django.models import Interaction, Item
from ragrec_django.ranking import learned
from ragrec_django.services import item_candidates

pytestmark = pytest.mark.django_db


def events(rows):
    Interaction.objects.bulk_create([Interaction(**row) for row in rows])


def test_similar_candidates_gather_every_source_with_its_rank_and_read_nothing_after_at(catalogue):
    ids = list(Item.objects.order_by("id").values_list("id", flat=True))
    anchor, x, y, z, w, late = ids[:6]
    now = timezone.now()
    day = timedelta(days=1)
    at = now - 2 * day
    purchase = dict(event="purchase")
    events(
        [
            # co-purchases: x in two of the anchor's orders, y in one (another visitor's order "1" too)
            {**purchase, "item_id": anchor, "session_key": "a", "order_id": "1", "created_at": at - 9 * day},
            {**purchase, "item_id": x, "session_key": "a", "order_id": "1", "created_at": at - 9 * day},
            {**purchase, "item_id": anchor, "session_key": "b", "order_id": "1", "created_at": at - 8 * day},
            {**purchase, "item_id": x, "session_key": "b", "order_id": "1", "created_at": at - 8 * day},
            {**purchase, "item_id": y, "session_key": "b", "order_id": "1", "created_at": at - 8 * day},
            {**purchase, "item_id": y, "session_key": "c", "order_id": "1", "created_at": at - 8 * day},
            # co-views: z viewed by two of the anchor's viewers within a day of their view, w by one; w viewed
            # three days later by another viewer does not count
            {"event": "view", "item_id": anchor, "session_key": "v1", "created_at": at - 5 * day},
            {"event": "view", "item_id": z, "session_key": "v1", "created_at": at - 5 * day + timedelta(hours=1)},
            {"event": "view", "item_id": anchor, "user_id": None, "session_key": "v2", "created_at": at - 4 * day},
            {"event": "click", "item_id": z, "session_key": "v2", "created_at": at - 4 * day - timedelta(hours=2)},
            {"event": "view", "item_id": w, "session_key": "v2", "created_at": at - 4 * day + timedelta(hours=3)},
            {"event": "view", "item_id": anchor, "session_key": "v3", "created_at": at - 6 * day},
            {"event": "view", "item_id": w, "session_key": "v3", "created_at": at - 3 * day},
            {"event": "view", "item_id": z, "session_key": "v4", "created_at": at - 4 * day, "verified": False},
            # after ``at``: read by no source
            {**purchase, "item_id": anchor, "session_key": "d", "order_id": "9", "created_at": at + day},
            {**purchase, "item_id": late, "session_key": "d", "order_id": "9", "created_at": at + day},
            {"event": "view", "item_id": anchor, "session_key": "v5", "created_at": at + day},
            {"event": "view", "item_id": late, "session_key": "v5", "created_at": at + day},
        ]
    )
    neighbours = learned.ItemFactors(
        np.asarray(ids, dtype=np.int64),
        np.zeros((len(ids), 2), dtype=np.float32),
        0.1,
        1.0,
        neighbours=np.asarray([[4, 3, -1]] + [[-1, -1, -1]] * (len(ids) - 1), dtype=np.int32),
        similarities=np.asarray([[0.5, 0.25, 0.0]] + [[0.0] * 3] * (len(ids) - 1), dtype=np.float32),
    )
    got = item_candidates.similar_candidates(anchor, at=at.timestamp(), factors=neighbours)
    position = {item: i for i, item in enumerate(got.items.tolist())}
    assert anchor not in position  # ``late`` is a candidate of the spaces alone: the behaviour lists below
    assert got.sources == ["space:text", "space:image", "co_purchase", "co_view", "knn"]

    def ranked(source):
        listed = [(got.ranks[source][i], item) for item, i in position.items() if not np.isnan(got.ranks[source][i])]
        return [(item, got.scores[source][position[item]]) for _, item in sorted(listed)]

    assert ranked("co_purchase") == [(x, 2.0), (y, 1.0)]
    assert ranked("co_view") == [(z, 2.0), (w, 1.0)]
    assert ranked("knn") == [(ids[4], 0.5), (ids[3], 0.25)]
    for space in ("text", "image"):
        found = storage.nearest_to_item(space, anchor, 60, filters=storage.ItemFilter(exclude_ids=frozenset({anchor})))
        want = [(n.item_id, pytest.approx(1.0 - n.distance, rel=1e-5)) for n in found]
        assert ranked("space:" + space) == want[: len(ranked("space:" + space))] and ranked("space:" + space)
    counts = got.found({x, z, late})  # the stage's candidate recall, per source: x bought with it, z viewed with it
    assert (counts["co_purchase"], counts["co_view"], counts["knn"]) == (1, 1, 1)
    assert counts["total"] == len({x, z, late} & set(position))
