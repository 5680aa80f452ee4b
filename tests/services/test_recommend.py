"""Recommendation services on a real encoded catalogue: results, reasons, rules, fallbacks."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from ragrec_django.models import ComplementPair, Item, ServingConfig
from ragrec_django.services import recommend
from ragrec_django.services.events import EventInput, record_events
from ragrec_django.services.recommend import Visitor
from shop_demo.catalog.models import Product

pytestmark = pytest.mark.django_db


def titles(result):
    return [r.item.title for r in result]


def key(product):
    return str(product.pk)


def test_similar_items_fuses_spaces_with_configurable_weights(settings, catalogue):
    anchor = key(catalogue["Red ceramic coffee mug"])
    result = recommend.similar_items(anchor, k=3)
    assert "Red ceramic coffee mug" not in titles(result)
    first = result.items[0]
    assert first.reason == "similar to Red ceramic coffee mug"
    assert {"text", "image", "fused"} <= set(first.components)

    settings.RAGREC = {**settings.RAGREC, "SIMILAR_WEIGHTS": {"text": 1.0, "image": 0.0}}
    assert titles(recommend.similar_items(anchor, k=1)) == ["Blue ceramic coffee mug"]  # what the words say
    settings.RAGREC = {**settings.RAGREC, "SIMILAR_WEIGHTS": {"text": 0.0, "image": 1.0}}
    assert titles(recommend.similar_items(anchor, k=1)) == ["Red cotton t-shirt"]  # the same red picture


def test_similar_items_never_shows_variants_of_the_item(catalogue):
    red = catalogue["Red ceramic coffee mug"]
    blue = catalogue["Blue ceramic coffee mug"]
    Product.objects.filter(pk=blue.pk).update(parent=red)
    from ragrec_django.services.encoding import sync_host_items

    sync_host_items([red.pk, blue.pk])
    assert "Blue ceramic coffee mug" not in titles(recommend.similar_items(key(red), k=5))


def test_unknown_item_is_a_named_error(catalogue):
    with pytest.raises(recommend.ItemNotFound):
        recommend.similar_items("999999", k=3)
    with pytest.raises(recommend.ItemNotFound):
        recommend.similar_items("not-a-number", k=3)


def test_search_is_hybrid_and_typo_tolerant(catalogue):
    result = recommend.search("coffee mug", k=3)
    assert set(titles(result)[:2]) == {"Red ceramic coffee mug", "Blue ceramic coffee mug"}
    assert result.items[0].reason == "matches 'coffee mug'"
    assert {"keyword", "text", "rrf"} <= set(result.items[0].components)

    typo = recommend.search("cofee mugg", k=3)
    assert typo.query in ("coffee mug", "coffee mugs")  # both one edit away; the more frequent word wins
    assert set(titles(typo)[:2]) == {"Red ceramic coffee mug", "Blue ceramic coffee mug"}
    assert titles(recommend.search("stainles stel kettel", k=1)) == ["Stainless steel electric kettle"]


def test_search_rejects_empty_and_huge_queries(catalogue):
    with pytest.raises(recommend.BadQuery):
        recommend.search("   ")
    with pytest.raises(recommend.BadQuery):
        recommend.search("x" * 301)
    with pytest.raises(recommend.BadQuery):
        recommend.search("mug", k=0)


def test_serving_config_filters_pins_hides_and_caps(settings, catalogue):
    kettle = catalogue["Copper stovetop tea kettle"]
    hidden = catalogue["Blue ceramic coffee mug"]
    ServingConfig.objects.create(
        name="merch",
        rules={
            "categories": ["Mugs", "Kettles"],
            "hide": [Item.objects.get(key=key(hidden)).id],
            "pin": [[Item.objects.get(key=key(kettle)).id, 0]],
        },
    )
    result = recommend.search("ceramic mug", k=4, config="merch")
    assert titles(result)[0] == "Copper stovetop tea kettle"
    assert "pinned" in result.items[0].reasons
    assert "Blue ceramic coffee mug" not in titles(result)
    assert {r.item.category for r in result} <= {"Mugs", "Kettles"}

    with pytest.raises(recommend.UnknownServingConfig):
        recommend.search("mug", config="nope")
    settings.RAGREC = {**settings.RAGREC, "MAX_K": 2}
    assert len(recommend.search("mug", k=50)) == 2


def test_filtered_search_returns_k_when_k_items_match(catalogue):
    ServingConfig.objects.create(name="tees", rules={"categories": ["T-shirts"]})
    result = recommend.search("lamp", k=4, config="tees")
    assert len(result) == 4 and {r.item.category for r in result} == {"T-shirts"}


def test_search_by_photo_finds_the_product_in_the_photo(catalogue):
    product = catalogue["Copper stovetop tea kettle"]
    with product.image.open("rb") as handle:
        photo = handle.read()
    result = recommend.search_by_image(photo, k=3)
    assert titles(result)[0] == "Copper stovetop tea kettle"
    assert result.items[0].reason == "looks like your photo"
    with pytest.raises(recommend.BadQuery, match="not a usable image"):
        recommend.search_by_image(b"GIF89a not really", k=3)


def events(*rows, **common):
    return record_events([EventInput(**{**common, **row}) for row in rows])


def test_trending_is_time_decayed_and_per_category(catalogue):
    now = timezone.now()
    lamp, mug, tee = (key(catalogue[t]) for t in ("Brass desk lamp", "Red ceramic coffee mug", "Red cotton t-shirt"))
    events(
        *[{"event": "view", "item": lamp, "created_at": now - timedelta(days=20)} for _ in range(10)], session_key="s0"
    )
    events(*[{"event": "view", "item": mug} for _ in range(3)], {"event": "purchase", "item": tee}, session_key="s1")
    result = recommend.trending(k=3)
    assert titles(result)[:2] == ["Red cotton t-shirt", "Red ceramic coffee mug"]  # 5 > 3 > 10 views 20 days ago
    assert result.items[0].reason == "trending now"
    assert titles(recommend.trending(k=3, category="Lamps")) == ["Brass desk lamp"]


def test_for_you_follows_history_and_excludes_purchases(settings, catalogue):
    settings.RAGREC = {**settings.RAGREC, "SIMILAR_WEIGHTS": {"text": 1.0}, "FOR_YOU_WEIGHTS": {"similar": 1.0}}
    user = get_user_model().objects.create_user("ann")
    red_mug, green_mug = key(catalogue["Red ceramic coffee mug"]), key(catalogue["Green enamel camping mug"])
    events(
        {"event": "view", "item": red_mug}, {"event": "purchase", "item": green_mug, "order_id": "o1"}, user_id=user.id
    )
    result = recommend.for_you(Visitor(user_id=user.id), k=3)
    assert result.fallback is None
    assert [r.item.category for r in result][:2] == ["Mugs", "Mugs"]
    assert not {"Red ceramic coffee mug", "Green enamel camping mug"} & set(titles(result))
    assert result.items[0].reason.startswith("because you viewed ")


def test_for_you_falls_back_to_trending_for_new_visitors(catalogue):
    events({"event": "view", "item": key(catalogue["Brass desk lamp"])}, session_key="someone-else")
    result = recommend.for_you(Visitor(session_key="brand-new"), k=3)
    assert result.fallback == "trending" and titles(result) == ["Brass desk lamp"]


def test_bought_together_from_baskets_then_content_for_cold_items(catalogue):
    mug, kettle, tee = (
        key(catalogue[t]) for t in ("Red ceramic coffee mug", "Copper stovetop tea kettle", "Red cotton t-shirt")
    )
    for order in ("o1", "o2"):
        events(
            {"event": "purchase", "item": mug, "order_id": order},
            {"event": "purchase", "item": kettle, "order_id": order},
            session_key=order,
        )
    events(
        {"event": "purchase", "item": mug, "order_id": "o3"},
        {"event": "purchase", "item": tee, "order_id": "o3"},
        session_key="o3",
    )
    result = recommend.bought_together(mug, k=4)
    assert titles(result)[:2] == ["Copper stovetop tea kettle", "Red cotton t-shirt"]
    assert result.items[0].reason == "bought with Red ceramic coffee mug"
    assert result.items[0].components["co_purchases"] == 2

    cold = recommend.bought_together(key(catalogue["Brass desk lamp"]), k=3)
    assert cold.fallback == "content" and len(cold) == 3
    assert all(r.item.category != "Lamps" for r in cold)
    assert cold.items[0].reason == "goes with Brass desk lamp"


def test_complement_proposals_and_approved_pairs(catalogue):
    lamp = catalogue["Brass desk lamp"]
    assert recommend.propose_complements([key(lamp)], per_item=3) == 3
    pair = ComplementPair.objects.filter(item__key=key(lamp)).order_by("-score").last()
    pair.status = ComplementPair.Status.APPROVED
    pair.save()
    result = recommend.bought_together(key(lamp), k=1)
    assert titles(result) == [pair.complement.title]


def test_recently_viewed_and_buy_again(catalogue):
    now = timezone.now()
    lamp, mug = key(catalogue["Brass desk lamp"]), key(catalogue["Red ceramic coffee mug"])
    events(
        {"event": "view", "item": lamp, "created_at": now - timedelta(hours=2)},
        {"event": "view", "item": mug},
        {"event": "purchase", "item": lamp, "order_id": "o9"},
        session_key="s9",
    )
    visitor = Visitor(session_key="s9")
    assert titles(recommend.recently_viewed(visitor, k=5)) == ["Red ceramic coffee mug", "Brass desk lamp"]
    assert titles(recommend.buy_again(visitor, k=5)) == ["Brass desk lamp"]
    assert len(recommend.recently_viewed(Visitor(), k=5)) == 0


def test_a_visitor_without_user_or_session_never_sees_other_peoples_history(catalogue):
    user = get_user_model().objects.create_user("bob")
    events({"event": "view", "item": key(catalogue["Brass desk lamp"])}, user_id=user.id)  # session_key ""
    result = recommend.for_you(Visitor(), k=3)
    assert result.fallback == "trending"
    assert all(not r.reason.startswith("because you viewed") for r in result)
    assert len(recommend.recently_viewed(Visitor(), k=3)) == 0


def test_queries_are_never_encoded_by_another_model_than_the_stored_vectors(settings, catalogue):
    from ragrec_django import storage

    # Deploy another CLIP (other weights, same dimension) before switching the "image" space.
    other = {**settings.RAGREC["ENCODERS"]["clip"]["OPTIONS"], "pretrained": None}
    settings.RAGREC = {
        **settings.RAGREC,
        "ENCODERS": {
            **settings.RAGREC["ENCODERS"],
            "clip": {"BACKEND": "ragrec_django.ml.clip.OpenClipEncoder", "OPTIONS": other},
        },
    }
    result = recommend.search("coffee mug", k=3)
    assert "image" not in result.items[0].components  # the mismatched retriever is left out
    with pytest.raises(storage.SpaceNotReady, match="being switched"):
        recommend.search_by_image(b"\xff\xd8", k=3)


def test_buy_again_ranks_by_how_often_then_how_recently(catalogue):
    now = timezone.now()
    lamp, mug = key(catalogue["Brass desk lamp"]), key(catalogue["Red ceramic coffee mug"])
    events(
        {"event": "purchase", "item": lamp, "order_id": "a", "created_at": now - timedelta(days=9)},
        {"event": "purchase", "item": lamp, "order_id": "b", "created_at": now - timedelta(days=5)},
        {"event": "purchase", "item": mug, "order_id": "c"},
        session_key="s7",
    )
    assert titles(recommend.buy_again(Visitor(session_key="s7"), k=5)) == ["Brass desk lamp", "Red ceramic coffee mug"]
