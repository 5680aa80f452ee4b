"""Recommenders built from interactions (``services.history``), on the real encoded catalogue:
"for you" as a fusion of its lists, repeat purchases, co-purchases, "bought together" for a
basket, trending by visitors. Scores are checked against values computed by hand."""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ragrec_django.models import ComplementPair, Item
from ragrec_django.services import history
from ragrec_django.services.events import EventInput, record_events
from ragrec_django.services.results import ItemNotFound, Visitor

pytestmark = pytest.mark.django_db


def titles(result):
    return [r.item.title for r in result]


def by_title(result):
    return {r.item.title: r for r in result}


def key(product):
    return str(product.pk)


def events(*rows, **common):
    return record_events([EventInput(**{**common, **row}) for row in rows])


def order(session, order_id, *products, days_ago=0.0, **extra):
    """One order: a purchase line per product, ``days_ago`` days ago."""
    at = timezone.now() - timedelta(days=days_ago)
    events(
        *[{"event": "purchase", "item": key(p), "order_id": order_id, "created_at": at, **extra} for p in products],
        session_key=session,
    )


@pytest.fixture
def p(catalogue):
    """Products by short name."""
    names = {
        "lamp": "Brass desk lamp",
        "floor_lamp": "Black floor lamp",
        "mug": "Red ceramic coffee mug",
        "blue_mug": "Blue ceramic coffee mug",
        "kettle": "Copper stovetop tea kettle",
        "tee": "Red cotton t-shirt",
        "cup": "White porcelain tea cup",
        "glass_kettle": "Glass kettle with tea infuser",
        "shirt": "Green linen shirt",
    }
    return type("P", (), {name: catalogue[title] for name, title in names.items()})


def weights(settings, **values):
    settings.RAGREC = {**settings.RAGREC, "FOR_YOU_WEIGHTS": values, "SIMILAR_WEIGHTS": {"text": 1.0}}


# ---------------------------------------------------------------- repeat purchases


def test_repeat_purchases_rank_by_orders_with_recency_decay(p):
    # Orders oldest to newest: o1 {lamp}, o2 {lamp}, o3 {kettle}, o4 {mug}; ages (orders since) 3, 2, 1, 0.
    order("s1", "o1", p.lamp, days_ago=30)
    order("s1", "o2", p.lamp, days_ago=20)
    order("s1", "o3", p.kettle, days_ago=10)
    order("s1", "o4", p.mug, p.mug, days_ago=1)  # the same item twice in one order counts once
    result = history.buy_again(Visitor(session_key="s1"), k=5)
    # lamp 0.5**(3/3) + 0.5**(2/3) = 1.130; mug 0.5**0 = 1; kettle 0.5**(1/3) = 0.794
    assert titles(result) == ["Brass desk lamp", "Red ceramic coffee mug", "Copper stovetop tea kettle"]
    found = by_title(result)
    assert found["Brass desk lamp"].components["repeat"] == pytest.approx(0.5 + 0.5 ** (2 / 3))
    assert found["Brass desk lamp"].components["orders"] == 2
    assert found["Copper stovetop tea kettle"].components["repeat"] == pytest.approx(0.5 ** (1 / 3))
    assert found["Brass desk lamp"].reason == "you buy this often"
    assert found["Red ceramic coffee mug"].reason == "you bought this before"


def test_repeat_purchases_are_the_visitors_own(catalogue, p, django_user_model):
    user = django_user_model.objects.create_user("ann")
    events({"event": "purchase", "item": key(p.lamp), "order_id": "u1"}, user_id=user.id)
    order("someone-else", "x1", p.mug)
    assert titles(history.buy_again(Visitor(user_id=user.id), k=5)) == ["Brass desk lamp"]
    assert len(history.buy_again(Visitor(), k=5)) == 0


# ---------------------------------------------------------------- co-purchases


def test_co_purchase_counts_are_summed_over_the_seeds_in_one_query(p):
    lamp, mug, kettle, tee, cup = (Item.objects.get(key=key(x)) for x in (p.lamp, p.mug, p.kettle, p.tee, p.cup))
    order("a", "o1", p.lamp, p.kettle)
    order("b", "o2", p.mug, p.kettle)
    order("c", "o3", p.lamp, p.tee)
    order("d", "o4", p.lamp, p.tee)
    order("e", "o5", p.lamp, p.mug, p.cup)
    order("e", "o5", p.cup)  # a repeated line in the same order counts once
    with CaptureQueriesContext(connection) as queries:
        rows = history._co_purchases({lamp.id: 1.0, mug.id: 1.0}, exclude=set(), limit=10)
    assert len(queries) == 1
    # kettle: with lamp 1 + with mug 1 = 2 (strongest seed: a tie, so the lower id); tee: with lamp 2;
    # cup: with lamp 1 + with mug 1 = 2. The seeds themselves never come back.
    scores = {item_id: score for item_id, score, _ in rows}
    assert scores == {kettle.id: 2.0, tee.id: 2.0, cup.id: 2.0}
    seeds = {item_id: seed for item_id, _, seed in rows}
    assert seeds[tee.id] == lamp.id
    assert seeds[kettle.id] == min(lamp.id, mug.id)
    # Weights scale each seed's counts; excluded items are left out.
    rows = history._co_purchases({lamp.id: 1.0, mug.id: 3.0}, exclude={cup.id}, limit=10)
    assert [(i, s) for i, s, _ in rows] == sorted([(kettle.id, 4.0), (tee.id, 2.0)], key=lambda r: -r[1])
    assert dict((i, seed) for i, _, seed in rows)[kettle.id] == mug.id


def test_co_purchase_counts_read_each_seeds_latest_orders_only(p, monkeypatch):
    lamp, kettle, tee = (Item.objects.get(key=key(x)) for x in (p.lamp, p.kettle, p.tee))
    order("a", "old1", p.lamp, p.kettle, days_ago=30)
    order("b", "old2", p.lamp, p.kettle, days_ago=29)
    order("c", "new1", p.lamp, p.tee, days_ago=1)
    everything = history._co_purchases({lamp.id: 1.0}, exclude=set(), limit=10, orders_per_item=None)
    assert [(i, s) for i, s, _ in everything] == [(kettle.id, 2.0), (tee.id, 1.0)]
    latest = history._co_purchases({lamp.id: 1.0}, exclude=set(), limit=10, orders_per_item=1)
    assert [(i, s) for i, s, _ in latest] == [(tee.id, 1.0)]
    monkeypatch.setattr(history, "CO_PURCHASE_ORDERS_PER_ITEM", 2)
    assert {i: s for i, s, _ in history._co_purchases({lamp.id: 1.0}, exclude=set(), limit=10)} == {
        kettle.id: 1.0,
        tee.id: 1.0,
    }


# ---------------------------------------------------------------- for you


def test_for_you_fuses_repeat_co_purchase_and_similar_lists_with_their_reasons(settings, p):
    # In a catalogue this small the similar list holds every item the visitor has not seen, so the
    # purchase lists get the larger weights to be seen above it.
    weights(settings, similar=1.0, repeat=4.0, co_purchase=2.0)
    order("me", "m1", p.lamp, days_ago=10)
    order("me", "m2", p.lamp, p.mug, days_ago=5)
    events({"event": "view", "item": key(p.tee)}, session_key="me")
    for n in range(3):
        order("other%d" % n, "x%d" % n, p.lamp, p.kettle)
    order("other9", "x9", p.mug, p.cup)
    result = history.for_you(Visitor(session_key="me"), k=12)
    assert result.fallback is None
    found = by_title(result)
    assert titles(result)[:2] == ["Brass desk lamp", "Red ceramic coffee mug"]  # repeat ranks 1 (2 orders) and 2
    assert found["Brass desk lamp"].reason == "you buy this often"
    assert found["Red ceramic coffee mug"].reason == "you bought this before"
    assert found["Copper stovetop tea kettle"].reason == "bought with Brass desk lamp"
    assert found["Copper stovetop tea kettle"].components["co_purchases"] == 3
    assert found["White porcelain tea cup"].reason == "bought with Red ceramic coffee mug"
    similar = [r for r in result if "similar" in r.components and "co_purchase" not in r.components]
    anchors = {"because you bought Brass desk lamp", "because you bought Red ceramic coffee mug",
               "because you viewed Red cotton t-shirt"}  # fmt: skip
    assert similar and all(r.reason in anchors for r in similar)
    # Every fused result says where it came from: each list's rank and the fused score.
    lamp = found["Brass desk lamp"].components
    assert lamp["repeat_rank"] == 1 and lamp["rrf"] == pytest.approx(4.0 / 61)
    # The similar list never shows what the visitor saw or bought; only the repeat list does.
    assert all("similar" not in found[t].components for t in ("Brass desk lamp", "Red ceramic coffee mug"))
    assert "Red cotton t-shirt" not in found


def test_for_you_weights_decide_the_order_and_zero_leaves_a_list_out(settings, p):
    order("me", "m1", p.lamp)
    for n in range(2):
        order("other%d" % n, "x%d" % n, p.lamp, p.kettle)
    weights(settings, similar=0.0, repeat=1.0, co_purchase=3.0)
    assert titles(history.for_you(Visitor(session_key="me"), k=2)) == ["Copper stovetop tea kettle", "Brass desk lamp"]
    weights(settings, similar=1.0, repeat=0.0, co_purchase=0.0)
    result = history.for_you(Visitor(session_key="me"), k=5)
    assert "Brass desk lamp" not in titles(result)
    assert all(r.reason == "because you bought Brass desk lamp" for r in result)  # bought, never viewed
    assert all(set(r.components) >= {"similar", "similar_rank"} for r in result)


def test_for_you_says_what_the_visitor_did_with_the_item_a_result_is_near(settings, p):
    weights(settings, similar=1.0, repeat=0.0, co_purchase=0.0)
    order("me", "m1", p.lamp)
    events({"event": "view", "item": key(p.tee)}, {"event": "add_to_cart", "item": key(p.kettle)}, session_key="me")
    reasons = {r.reason for r in history.for_you(Visitor(session_key="me"), k=5)}
    assert reasons and reasons <= {"because you bought Brass desk lamp", "because you viewed Red cotton t-shirt",
                       "because you added Copper stovetop tea kettle to your basket"}  # fmt: skip
    assert "because you viewed Brass desk lamp" not in reasons
    events({"event": "view", "item": key(p.lamp)}, session_key="me")  # viewed and bought: "bought"
    reasons = {r.reason for r in history.for_you(Visitor(session_key="me"), k=5)}
    assert "because you viewed Brass desk lamp" not in reasons


def test_for_you_reason_comes_from_the_list_that_contributed_most(settings, p):
    order("me", "m1", p.lamp, days_ago=3)
    order("me", "m2", p.mug, days_ago=2)
    for n in range(3):
        order("other%d" % n, "x%d" % n, p.lamp, p.mug)  # each is also bought with the other
    weights(settings, repeat=1.0, co_purchase=0.0)
    assert by_title(history.for_you(Visitor(session_key="me"), k=5))["Brass desk lamp"].reasons == [
        "you bought this before"
    ]
    # The co-purchase list never holds what the visitor bought: the repeat list's reason stays first.
    weights(settings, repeat=1.0, co_purchase=5.0)
    lamp = by_title(history.for_you(Visitor(session_key="me"), k=5))["Brass desk lamp"]
    assert lamp.reasons[0] == "you bought this before" and "co_purchase" not in lamp.components


def test_for_you_falls_back_to_trending_and_tops_up_short_lists(settings, p):
    weights(settings, similar=0.0, repeat=1.0, co_purchase=1.0)
    events(*[{"event": "purchase", "item": key(p.kettle), "order_id": "t%d" % n} for n in range(2)], session_key="t")
    events({"event": "view", "item": key(p.cup)}, session_key="u")
    result = history.for_you(Visitor(session_key="brand-new"), k=3)
    assert result.fallback == "trending" and titles(result)[0] == "Copper stovetop tea kettle"
    # Only a view, and the similar list is off: nothing to fuse, so trending.
    assert history.for_you(Visitor(session_key="u"), k=3).fallback == "trending"
    order("me", "m1", p.lamp)
    result = history.for_you(Visitor(session_key="me"), k=3)
    assert result.fallback is None
    assert titles(result)[:2] == ["Brass desk lamp", "Copper stovetop tea kettle"]
    assert result.items[1].reason == "trending now"


def test_for_you_weights_are_checked(settings, p):
    order("me", "m1", p.lamp)
    for bad in ({"similar": 1.0, "colour": 1.0}, {"repeat": -1}, {"repeat": 0, "similar": 0}, {"repeat": "a lot"}):
        settings.RAGREC = {**settings.RAGREC, "FOR_YOU_WEIGHTS": bad}
        with pytest.raises(ImproperlyConfigured, match="FOR_YOU_WEIGHTS"):
            history.for_you(Visitor(session_key="me"), k=3)


def test_for_you_query_count_does_not_grow_with_the_history(settings, p):
    weights(settings, similar=1.0, repeat=1.0, co_purchase=1.0)
    products = [p.lamp, p.mug, p.kettle, p.tee, p.cup, p.glass_kettle, p.shirt, p.floor_lamp]
    order("small", "s1", p.lamp)
    events({"event": "view", "item": key(p.tee)}, session_key="small")
    for n, product in enumerate(products):
        order("big", "b%d" % n, product, products[n - 1], days_ago=n)
        order("other%d" % n, "x%d" % n, product, p.blue_mug)
        events({"event": "view", "item": key(product)}, session_key="big")
    counts = {}
    for visitor in ("small", "big"):
        history.for_you(Visitor(session_key=visitor), k=5)  # warm caches (active generations)
        with CaptureQueriesContext(connection) as queries:
            history.for_you(Visitor(session_key=visitor), k=5)
        counts[visitor] = [q["sql"] for q in queries]
    assert len(counts["big"]) == len(counts["small"]), (
        "\n\n".join(counts["big"]) + "\n-----\n" + "\n\n".join(counts["small"])
    )
    # history, repeat, co-purchases (+ seed titles), similar (+ titles, vectors, the nearest query
    # and its transaction), the pipeline's rules and items: a fixed budget, whatever the history.
    assert len(counts["big"]) <= 20


# ---------------------------------------------------------------- bought together for a basket


def test_basket_sums_co_purchases_over_its_items_and_excludes_it_and_its_variants(p):
    Item.objects.filter(key__in=[key(p.mug), key(p.blue_mug)]).update(group_key="mugs")
    order("a", "o1", p.lamp, p.kettle)
    order("b", "o2", p.mug, p.kettle)
    order("c", "o3", p.lamp, p.tee, p.blue_mug)  # the blue mug is a variant of the basket's red mug
    order("d", "o4", p.lamp, p.tee)
    order("e", "o5", p.mug, p.tee, p.cup)
    result = history.bought_together_for_basket([key(p.lamp), key(p.mug)], k=6)
    # kettle: lamp 1 + mug 1 = 2; tee: lamp 2 + mug 1 = 3; cup: mug 1. Never the basket or the blue mug.
    assert titles(result)[:3] == ["Red cotton t-shirt", "Copper stovetop tea kettle", "White porcelain tea cup"]
    found = by_title(result)
    assert found["Red cotton t-shirt"].components["co_purchases"] == 3
    assert found["Red cotton t-shirt"].reason == "bought with Brass desk lamp"
    assert found["White porcelain tea cup"].reason == "bought with Red ceramic coffee mug"
    assert not {"Brass desk lamp", "Red ceramic coffee mug", "Blue ceramic coffee mug"} & set(titles(result))
    assert result.recommender == "bought_together" and result.fallback is None


def test_basket_co_purchases_cost_one_query_whatever_its_size(p):
    products = [p.lamp, p.mug, p.kettle, p.tee, p.cup, p.glass_kettle, p.shirt]
    for n, product in enumerate(products):
        order("x%d" % n, "o%d" % n, product, products[n - 1], p.floor_lamp)
    counts = {}
    for size in (1, len(products)):
        basket = [key(x) for x in products[:size]]
        history.bought_together_for_basket(basket, k=1)
        with CaptureQueriesContext(connection) as queries:
            result = history.bought_together_for_basket(basket, k=1)
        assert titles(result) == ["Black floor lamp"]  # bought with every item
        counts[size] = [q["sql"] for q in queries]
    assert len(counts[1]) == len(counts[len(products)])
    assert sum("JOIN LATERAL" in sql for sql in counts[len(products)]) == 1


def test_single_item_bought_together_is_the_basket_of_one(p):
    order("a", "o1", p.mug, p.kettle)
    order("b", "o2", p.mug, p.kettle)
    order("c", "o3", p.mug, p.tee)
    single = history.bought_together(key(p.mug), k=4)
    basket = history.bought_together_for_basket([key(p.mug)], k=4)
    assert titles(single) == titles(basket)
    assert titles(single)[:2] == ["Copper stovetop tea kettle", "Red cotton t-shirt"]
    assert single.items[0].components == {"co_purchases": 2.0}


def test_basket_falls_back_to_approved_then_content_complements(p):
    ComplementPair.objects.create(
        item=Item.objects.get(key=key(p.lamp)),
        complement=Item.objects.get(key=key(p.kettle)),
        score=0.4,
        status=ComplementPair.Status.APPROVED,
    )
    result = history.bought_together_for_basket([key(p.lamp), key(p.floor_lamp)], k=4)
    assert result.fallback == "content"  # nothing in the basket was ever bought with anything
    assert titles(result)[0] == "Copper stovetop tea kettle"
    assert result.items[0].reason == "goes with Brass desk lamp"
    assert len(result) == 4 and all(r.item.category != "Lamps" for r in result)
    assert all(r.reason in ("goes with Brass desk lamp", "goes with Black floor lamp") for r in result)
    order("a", "o1", p.lamp, p.mug)
    result = history.bought_together_for_basket([key(p.lamp), key(p.floor_lamp)], k=4)
    assert result.fallback is None and titles(result)[:2] == ["Red ceramic coffee mug", "Copper stovetop tea kettle"]


def test_basket_with_a_visitor_adds_their_repeat_purchases_but_never_the_basket(p):
    order("me", "m1", p.cup, p.lamp, days_ago=9)
    order("me", "m2", p.cup, days_ago=8)
    order("a", "o1", p.lamp, p.kettle)
    plain = history.bought_together_for_basket([key(p.lamp)], k=3)
    assert "White porcelain tea cup" in titles(plain)  # bought with the lamp (order m1)
    mine = history.bought_together_for_basket([key(p.lamp)], k=3, visitor=Visitor(session_key="me"))
    found = by_title(mine)
    # cup: co-purchase rank 1 or 2 and repeat rank 1 -> first; the lamp (in the basket) never comes back.
    assert titles(mine)[0] == "White porcelain tea cup"
    assert found["White porcelain tea cup"].reason == "you buy this often"
    assert "bought with Brass desk lamp" in found["White porcelain tea cup"].reasons
    assert "Brass desk lamp" not in found
    assert (
        history.bought_together_for_basket([key(p.lamp)], k=3, visitor=Visitor(session_key="nobody")).items
        == plain.items
    )


def test_basket_keys_unknown_to_the_catalogue(p):
    order("a", "o1", p.lamp, p.kettle)
    assert titles(history.bought_together_for_basket([key(p.lamp), "999999"], k=1)) == ["Copper stovetop tea kettle"]
    with pytest.raises(ItemNotFound):
        history.bought_together_for_basket(["999999"], k=1)
    with pytest.raises(ItemNotFound):
        history.bought_together_for_basket([], k=1)
    with pytest.raises(TypeError):
        history.bought_together_for_basket(key(p.lamp), k=1)


# ---------------------------------------------------------------- trending


def test_trending_counts_visitors_not_units_or_repeated_views(p):
    events({"event": "purchase", "item": key(p.lamp), "order_id": "bulk", "quantity": 500}, session_key="wholesale")
    for n in range(3):
        order("shopper%d" % n, "o%d" % n, p.mug)
    events(*[{"event": "view", "item": key(p.tee)} for _ in range(50)], session_key="one-fan")
    events({"event": "view", "item": key(p.cup)}, session_key="v1")
    events({"event": "view", "item": key(p.cup)}, session_key="v2")
    result = history.trending(k=4)
    # mug: 3 buyers x 5 = 15; lamp: 1 buyer x 5 (not 500 x 5); cup: 2 viewers; tee: 1 viewer (not 50).
    assert titles(result) == [
        "Red ceramic coffee mug",
        "Brass desk lamp",
        "White porcelain tea cup",
        "Red cotton t-shirt",
    ]
    assert by_title(result)["Red ceramic coffee mug"].components["popularity"] == pytest.approx(15.0, rel=1e-3)
    assert by_title(result)["Brass desk lamp"].components["popularity"] == pytest.approx(5.0, rel=1e-3)


def test_trending_keeps_the_time_decay(settings, p):
    now = timezone.now()
    events(
        {"event": "purchase", "item": key(p.lamp), "order_id": "a", "created_at": now - timedelta(hours=72)},
        session_key="a",
    )
    events(
        {"event": "purchase", "item": key(p.mug), "order_id": "b", "created_at": now - timedelta(hours=1)},
        session_key="b",
    )
    events(
        {"event": "purchase", "item": key(p.tee), "order_id": "c", "created_at": now - timedelta(days=30)},
        session_key="c",
    )
    result = by_title(history.trending(k=5))
    assert result["Brass desk lamp"].components["popularity"] == pytest.approx(2.5, rel=1e-3)  # one half-life
    assert result["Red ceramic coffee mug"].components["popularity"] > 4.9
    assert "Red cotton t-shirt" not in result  # older than 8 half-lives
