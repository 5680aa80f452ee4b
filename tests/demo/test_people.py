"""Demo people: the history plan (no database) and the seed_people command."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import F, Max

from ragrec_django.models import Interaction
from shop_demo.catalog.people import (
    ANONYMOUS_SHOPPERS,
    DEMO_PASSWORD,
    KEY_PREFIX,
    SHOPPERS,
    STAFF,
    CatalogueProduct,
    plan_history,
)
from shop_demo.catalog.seeding import CATEGORIES, generate

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def catalogue(count=240):
    return [
        CatalogueProduct(key=str(i), slug=s.slug, category=s.category.slug, colour=s.colour, in_stock=s.stock > 0)
        for i, s in enumerate(generate(count), 1)
    ]


def test_plan_is_deterministic_with_unique_keys():
    products = catalogue()
    first, second = plan_history(products, now=NOW), plan_history(products, now=NOW)
    assert first == second and len(first) > 1000
    assert len({e.key for e in first}) == len(first) and all(e.key.startswith(KEY_PREFIX) for e in first)
    assert plan_history(products, now=NOW, seed=8) != first
    later = plan_history(products, now=NOW + timedelta(days=3))  # times are relative to now, keys are not
    assert [e.key for e in later] == [e.key for e in first]


def test_plan_spreads_events_over_the_period_with_more_recently():
    events = plan_history(catalogue(), now=NOW, days=60)
    ages = [(NOW - e.at).total_seconds() / 86400 for e in events]
    assert min(ages) > 0 and max(ages) <= 61
    assert sum(age < 20 for age in ages) > sum(age >= 40 for age in ages)  # recent weeks are busier
    assert {e.event for e in events} == {"view", "click", "add_to_cart", "purchase", "search"}
    assert all(e.query for e in events if e.event == "search") and all(e.item for e in events if e.event != "search")


def test_every_shopper_has_a_history_that_follows_their_tastes():
    products = {p.key: p for p in catalogue()}
    events = plan_history(list(products.values()), now=NOW)
    by_user = defaultdict(list)
    for e in events:
        by_user[e.username].append(e)
    assert set(by_user) == {s.username for s in SHOPPERS} | {None}
    for shopper in SHOPPERS:
        viewed = Counter(products[e.item].category for e in by_user[shopper.username] if e.event == "view")
        liked = sum(viewed[c] for c in shopper.likes)
        assert liked > sum(viewed.values()) / 2, shopper.username
    anonymous = {e.session_key for e in by_user[None]}
    assert len(anonymous) == ANONYMOUS_SHOPPERS and all(not e.session_key for e in events if e.username)


def test_orders_are_baskets_with_co_purchases():
    products = {p.key: p for p in catalogue()}
    events = plan_history(list(products.values()), now=NOW)
    orders = defaultdict(list)
    for e in events:
        if e.event == "purchase":
            orders[e.order_id].append(e)
    assert all(order for order in orders) and len(orders) > 60
    for lines in orders.values():  # one visitor and one checkout per order, in-stock products only
        assert len({(e.username, e.session_key) for e in lines}) == 1
        assert all(products[e.item].in_stock for e in lines)
    baskets = [sorted({e.item for e in lines}) for lines in orders.values()]
    assert sum(len(b) > 1 for b in baskets) > len(baskets) / 2
    pairs = Counter((a, b) for basket in baskets for i, a in enumerate(basket) for b in basket[i + 1 :])
    (a, b), count = pairs.most_common(1)[0]
    assert count >= 3  # a product and its partner are bought together again and again
    assert products[a].category != products[b].category


def test_an_empty_catalogue_has_no_history():
    assert plan_history([], now=NOW) == []


@pytest.mark.django_db
def test_seed_people_creates_people_and_history_once(seed):
    seed(count=len(CATEGORIES) * 5)
    out = io.StringIO()
    call_command("seed_people", stdout=out)
    User = get_user_model()
    assert User.objects.filter(username__in=[s.username for s in SHOPPERS], is_staff=False).count() == len(SHOPPERS)
    alice = User.objects.get(username="alice")
    assert alice.check_password(DEMO_PASSWORD) and alice.email == "alice@demo.invalid" and not alice.is_superuser

    reviewer, manager = User.objects.get(username="reviewer"), User.objects.get(username="manager")
    assert reviewer.is_staff and manager.is_staff and not reviewer.is_superuser and not manager.is_superuser
    assert reviewer.has_perm("ragrec_django.review_descriptiondraft")
    assert not reviewer.has_perm("ragrec_django.publish_descriptiondraft")
    assert manager.has_perm("ragrec_django.review_descriptiondraft")
    assert manager.has_perm("ragrec_django.publish_descriptiondraft")
    assert manager.has_perm("catalog.change_product") and manager.has_perm("ragrec_django.change_complementpair")
    assert not alice.has_perm("ragrec_django.review_descriptiondraft")

    stored = Interaction.objects.filter(idempotency_key__startswith=KEY_PREFIX)
    count = stored.count()
    assert count > 1000 and "%d new events" % count in out.getvalue()
    assert stored.filter(user=alice).exists() and stored.filter(user=None).exclude(session_key="").exists()
    assert stored.filter(event="purchase").exclude(order_id="").exists()
    assert not stored.filter(user__in=[reviewer, manager]).exists()

    again = io.StringIO()
    call_command("seed_people", stdout=again)
    assert stored.count() == count and User.objects.filter(username__in=["alice", "manager"]).count() == 2
    assert "(0 new); history: 0 new events" in again.getvalue()


@pytest.mark.django_db
def test_seed_people_moves_an_old_history_forward(seed):
    seed(count=len(CATEGORIES) * 3)
    call_command("seed_people", stdout=io.StringIO())
    stored = Interaction.objects.filter(idempotency_key__startswith=KEY_PREFIX)
    stored.update(created_at=F("created_at") - timedelta(days=10))
    out = io.StringIO()
    call_command("seed_people", stdout=out)
    newest = stored.aggregate(newest=Max("created_at"))["newest"]
    assert "forward" in out.getvalue() and datetime.now(timezone.utc) - newest < timedelta(hours=1)


@pytest.mark.django_db
def test_seed_people_without_products_creates_only_people():
    out = io.StringIO()
    call_command("seed_people", stdout=out)
    assert "run seed_catalog first" in out.getvalue()
    assert get_user_model().objects.filter(username__in=[s.username for s in STAFF]).count() == len(STAFF)
    assert not Interaction.objects.exists()
