"""Order ids are scoped by visitor wherever baskets are formed: two customers' order "1001" are two baskets
(co-purchases of the services and of the learned ranker, its popularity and event log, the evaluation)."""

from __future__ import annotations

import io
import time

import pytest
from django.contrib.auth import get_user_model

from ragrec_django import ingest, storage
from ragrec_django.evaluation import runner
from ragrec_django.models import Item
from ragrec_django.ranking.learned import EventLog
from ragrec_django.services import history
from ragrec_django.storage import ranking as ranking_store

pytestmark = pytest.mark.django_db

PRODUCTS = "id,title\nA,red mug\nB,blue saucer\nC,brass lamp\nD,desk lamp shade\nE,green tea cup\n"


@pytest.fixture
def shared_order_ids():
    """Three visitors whose orders are all numbered 1001: c1 {A, B}, c2 {C, D}, a signed-in user {A, E}."""
    user = get_user_model().objects.create(username="shopper")
    orders = (
        "session,user,item,timestamp,order\n"
        "c1,,A,2024-03-01 10:00:00,1001\nc1,,B,2024-03-01 10:00:00,1001\n"
        "c2,,C,2024-03-02 10:00:00,1001\nc2,,D,2024-03-02 10:00:00,1001\n"
        "web-session,%d,A,2024-03-03 10:00:00,1001\n,%d,E,2024-03-03 10:00:00,1001\n" % (user.pk, user.pk)
    )
    files = []
    for text, name in ((orders, "orders.csv"), (PRODUCTS, "products.csv")):
        handle = io.StringIO(text)
        handle.name = name
        files.append(handle)
    written, _, _ = ingest.import_csv(interactions=files[0], products=files[1], time_zone="UTC")
    assert written.interactions == 6
    return dict(Item.objects.values_list("key", "id"))


def test_service_co_purchases_never_merge_two_visitors_orders(shared_order_ids):
    ids = shared_order_ids
    keys = {v: k for k, v in ids.items()}
    found = storage.co_purchases({ids["A"]: 1.0}, exclude=[], limit=10, orders_per_item=None)
    assert sorted((keys[item], score, keys[seed]) for item, score, seed in found) == [("B", 1.0, "A"), ("E", 1.0, "A")]

    result = history.bought_together_for_basket(["A"], k=2)
    assert sorted((r.item.key, r.components["co_purchases"], r.reason) for r in result) == [
        ("B", 1.0, "bought with red mug"),
        ("E", 1.0, "bought with red mug"),
    ]


def test_the_learned_rankers_reads_scope_orders_by_visitor(shared_order_ids):
    ids = shared_order_ids
    keys = {v: k for k, v in ids.items()}
    [(scores, orders, strongest)] = ranking_store.co_purchases([[ids["A"]]], at=time.time(), orders_per_item=50)
    assert {keys[item]: count for item, count in scores.items()} == {"A": 2.0, "B": 1.0, "E": 1.0}
    assert orders == 2.0 and {keys[item] for item in strongest} == {"B", "E"}

    popular = {keys[item]: count for item, count in ranking_store.popular(at=time.time(), days=3650, limit=10)}
    assert popular == {"A": 2.0, "B": 1.0, "C": 1.0, "D": 1.0, "E": 1.0}

    log = EventLog.build(list(ranking_store.event_lines()))
    assert len(log.basket_times) == 3  # (c1, 1001), (c2, 1001), (user, 1001)


def test_the_evaluation_keeps_the_visitors_baskets_apart(shared_order_ids):
    data = runner.load_database()
    baskets = runner.baskets_of(data.interactions)
    assert sorted(sorted(b.items) for found in baskets.values() for b in found) == [["A", "B"], ["A", "E"], ["C", "D"]]
    # The signed-in user's lines are theirs whatever the session, as the services read them.
    assert sorted(baskets) == ["c1", "c2", "user:%d" % get_user_model().objects.get().pk]
