"""REST endpoints on a real encoded catalogue: results with reasons, visitors, and every 4xx/503 path."""

import io
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from ragrec_django.models import Item, ServingConfig
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db

RESULT_FIELDS = {"id", "title", "url", "category", "price", "in_stock", "score", "reason", "reasons", "components"}


def key(product):
    return str(product.pk)


def titles(body):
    return [r["title"] for r in body["results"]]


def similar_url(product_key):
    return reverse("ragrec_api:similar", args=[product_key])


def post_events(api, *events, **params):
    """Post events as a client whose session keys the server issued (only those count toward popularity)."""
    keys = {params.get("session")} | {event.get("session_key") for event in events}
    expires = timezone.now() + timedelta(days=1)
    for session_key in keys - {None, ""}:
        Session.objects.get_or_create(session_key=session_key, defaults={"session_data": "", "expire_date": expires})
    url = reverse("ragrec_api:events")
    if params:
        url += "?" + "&".join("%s=%s" % pair for pair in params.items())
    response = api.post(url, list(events), format="json")
    assert response.status_code == 201, response.content
    return response.json()


# ---------------------------------------------------------------- item endpoints


def test_similar_items(api, catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    response = api.get(similar_url(key(mug)), {"k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["recommender"] == "similar" and body["config"] == "default"
    assert body["query"] is None and body["fallback"] is None
    assert len(body["results"]) == 3 and "Red ceramic coffee mug" not in titles(body)
    first = body["results"][0]
    assert set(first) == RESULT_FIELDS
    product = Product.objects.get(pk=int(first["id"]))  # id is the shop's key
    assert first["title"] == product.title and first["url"] == product.get_absolute_url()
    assert first["category"] == product.category.name
    assert first["price"] == "20.00" and first["in_stock"] is True
    assert first["reason"] == "similar to Red ceramic coffee mug" and first["reasons"][0] == first["reason"]
    assert {"text", "image", "fused"} <= set(first["components"])
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_default_k_is_ten_and_k_is_a_cap(api, catalogue):
    body = api.get(similar_url(key(catalogue["Brass desk lamp"]))).json()
    assert len(body["results"]) == 10
    assert len(api.get(similar_url(key(catalogue["Brass desk lamp"])), {"k": 1}).json()["results"]) == 1


def test_bought_together_from_baskets_posted_through_the_api(api, catalogue):
    mug, kettle, tee = (
        key(catalogue[t]) for t in ("Red ceramic coffee mug", "Copper stovetop tea kettle", "Red cotton t-shirt")
    )
    for order in ("o1", "o2"):
        post_events(
            api,
            {"event": "purchase", "item": mug, "order_id": order},
            {"event": "purchase", "item": kettle, "order_id": order},
            session=order,
        )
    post_events(
        api,
        {"event": "purchase", "item": mug, "order_id": "o3", "session_key": "o3"},
        {"event": "purchase", "item": tee, "order_id": "o3", "session_key": "o3"},
    )
    body = api.get(reverse("ragrec_api:bought-together", args=[mug]), {"k": 4}).json()
    assert body["recommender"] == "bought_together" and body["fallback"] is None
    assert titles(body)[:2] == ["Copper stovetop tea kettle", "Red cotton t-shirt"]
    assert body["results"][0]["reason"] == "bought with Red ceramic coffee mug"
    assert body["results"][0]["components"]["co_purchases"] == 2

    cold = api.get(reverse("ragrec_api:bought-together", args=[key(catalogue["Brass desk lamp"])]), {"k": 3}).json()
    assert cold["fallback"] == "content" and len(cold["results"]) == 3
    assert cold["results"][0]["reason"] == "goes with Brass desk lamp"
    assert all(r["category"] != "Lamps" for r in cold["results"])


def test_bought_together_for_a_basket(api, catalogue):
    mug, kettle, tee, lamp = (
        key(catalogue[t])
        for t in ("Red ceramic coffee mug", "Copper stovetop tea kettle", "Red cotton t-shirt", "Brass desk lamp")
    )
    post_events(
        api,
        {"event": "purchase", "item": mug, "order_id": "o1"},
        {"event": "purchase", "item": kettle, "order_id": "o1"},
        session="b1",
    )
    post_events(
        api,
        {"event": "purchase", "item": tee, "order_id": "o2"},
        {"event": "purchase", "item": lamp, "order_id": "o2"},
        {"event": "purchase", "item": kettle, "order_id": "o2"},
        session="b2",
    )
    url = reverse("ragrec_api:basket-bought-together")
    body = api.get(url, {"items": "%s,%s,no-such-item" % (mug, tee), "k": 3}).json()
    assert body["recommender"] == "bought_together"
    assert titles(body)[:2] == ["Copper stovetop tea kettle", "Brass desk lamp"]  # kettle: bought with both
    assert body["results"][0]["components"]["co_purchases"] == 2
    assert not {"Red ceramic coffee mug", "Red cotton t-shirt"} & set(titles(body))  # never the basket itself

    assert api.get(url, {"items": "no-such-item"}).status_code == 404
    for bad, message in (
        ("", "may not be blank"),
        (" , ,", "at least one item"),
        (",".join(map(str, range(51))), "At most 50"),
    ):
        response = api.get(url, {"items": bad})
        assert response.status_code == 400 and message in str(response.json()["items"]), response.json()
    assert api.get(url).status_code == 400


def test_serving_config_is_applied(api, catalogue):
    ServingConfig.objects.create(name="tees", rules={"categories": ["T-shirts"]})
    body = api.get(reverse("ragrec_api:search"), {"q": "lamp", "k": 3, "config": "tees"}).json()
    assert body["config"] == "tees" and len(body["results"]) == 3
    assert {r["category"] for r in body["results"]} == {"T-shirts"}


# ---------------------------------------------------------------- search


def test_search_corrects_typos_and_explains(api, catalogue):
    body = api.get(reverse("ragrec_api:search"), {"q": "cofee mugg", "k": 3}).json()
    assert body["recommender"] == "search"
    assert body["query"] in ("coffee mug", "coffee mugs")
    assert set(titles(body)[:2]) == {"Red ceramic coffee mug", "Blue ceramic coffee mug"}
    assert body["results"][0]["reason"] == "matches '%s'" % body["query"]
    assert {"keyword", "text", "rrf"} <= set(body["results"][0]["components"])


def kettle_photo(catalogue):
    with catalogue["Copper stovetop tea kettle"].image.open("rb") as handle:
        return handle.read()


def test_search_by_photo(api, catalogue):
    photo = io.BytesIO(kettle_photo(catalogue))
    photo.name = "kettle.jpg"
    response = api.post(
        reverse("ragrec_api:search-photo") + "?config=default", {"image": photo, "k": "2"}, format="multipart"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["recommender"] == "photo" and len(body["results"]) == 2
    assert body["results"][0]["title"] == "Copper stovetop tea kettle"
    assert body["results"][0]["reason"] == "looks like your photo"


def test_search_by_photo_takes_k_from_the_query_string_too(api, catalogue):
    photo = io.BytesIO(kettle_photo(catalogue))
    photo.name = "kettle.jpg"
    body = api.post(reverse("ragrec_api:search-photo") + "?k=1", {"image": photo}, format="multipart").json()
    assert titles(body) == ["Copper stovetop tea kettle"]


# ---------------------------------------------------------------- visitor lists


def test_for_you_from_a_session_parameter(api, catalogue):
    post_events(api, {"event": "view", "item": key(catalogue["Red ceramic coffee mug"])}, session="shopper-1")
    body = api.get(reverse("ragrec_api:for-you"), {"session": "shopper-1", "k": 3}).json()
    assert body["recommender"] == "for_you" and body["fallback"] is None
    assert "Red ceramic coffee mug" not in titles(body)
    assert body["results"][0]["reason"].startswith("because you viewed ")
    assert "Mugs" in [r["category"] for r in body["results"]]


def test_for_you_of_a_new_or_unknown_visitor_is_trending_and_private(api, catalogue):
    user = get_user_model().objects.create_user("ann")
    api.force_authenticate(user)
    post_events(api, {"event": "view", "item": key(catalogue["Brass desk lamp"])})  # ann's own history
    api.force_authenticate(None)
    # An anonymous visitor without any session: the trending list, never ann's history.
    body = api.get(reverse("ragrec_api:for-you"), {"k": 3}).json()
    assert body["fallback"] == "trending" and titles(body) == ["Brass desk lamp"]
    assert body["results"][0]["reason"] == "trending now"
    body = api.get(reverse("ragrec_api:for-you"), {"session": "brand-new", "k": 3}).json()
    assert body["fallback"] == "trending"


def test_signed_in_user_wins_over_the_session_parameter(api, catalogue):
    post_events(api, {"event": "view", "item": key(catalogue["Red ceramic coffee mug"])}, session="s-anon")
    user = get_user_model().objects.create_user("bob")
    api.force_authenticate(user)
    body = api.get(reverse("ragrec_api:recently-viewed"), {"session": "s-anon"}).json()
    assert body["results"] == []  # bob's history, not the session's
    post_events(api, {"event": "view", "item": key(catalogue["Brass desk lamp"])})
    body = api.get(reverse("ragrec_api:recently-viewed"), {"session": "s-anon"}).json()
    assert titles(body) == ["Brass desk lamp"]


def test_visitor_from_the_django_session_cookie(client, catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    assert client.get(mug.get_absolute_url()).status_code == 200  # the product page records a view
    body = client.get(reverse("ragrec_api:recently-viewed")).json()
    assert titles(body) == ["Red ceramic coffee mug"] and body["results"][0]["reason"] == "you viewed this"
    body = client.get(reverse("ragrec_api:for-you"), {"k": 2}).json()
    assert body["fallback"] is None and body["results"][0]["reason"] == "because you viewed Red ceramic coffee mug"


def test_recently_viewed_and_buy_again(api, catalogue):
    lamp, mug = key(catalogue["Brass desk lamp"]), key(catalogue["Red ceramic coffee mug"])
    post_events(
        api,
        {"event": "view", "item": lamp, "created_at": "2020-01-01T00:00:00Z"},
        {"event": "view", "item": mug},
        {"event": "purchase", "item": lamp, "order_id": "o9"},
        session="s9",
    )
    body = api.get(reverse("ragrec_api:recently-viewed"), {"session": "s9"}).json()
    assert body["recommender"] == "recently_viewed"
    assert titles(body) == ["Red ceramic coffee mug", "Brass desk lamp"]
    body = api.get(reverse("ragrec_api:buy-again"), {"session": "s9"}).json()
    assert body["recommender"] == "buy_again" and titles(body) == ["Brass desk lamp"]
    assert body["results"][0]["reason"] == "you bought this before"
    assert api.get(reverse("ragrec_api:buy-again")).json()["results"] == []  # nobody


def test_trending_overall_and_per_category(api, catalogue):
    mug, tee, lamp = (key(catalogue[t]) for t in ("Red ceramic coffee mug", "Red cotton t-shirt", "Brass desk lamp"))
    # Each visitor counts once per item: the mug is viewed by three visitors, the lamp by one.
    for visitor in ("t1", "t2", "t3"):
        post_events(api, {"event": "view", "item": mug}, session=visitor)
    post_events(api, {"event": "purchase", "item": tee}, {"event": "view", "item": lamp}, session="t1")
    body = api.get(reverse("ragrec_api:trending"), {"k": 2}).json()
    assert body["recommender"] == "trending" and titles(body) == ["Red cotton t-shirt", "Red ceramic coffee mug"]
    assert body["results"][0]["reason"] == "trending now"
    body = api.get(reverse("ragrec_api:trending"), {"category": "Lamps"}).json()
    assert titles(body) == ["Brass desk lamp"] and body["results"][0]["reason"] == "trending in Lamps"


# ---------------------------------------------------------------- bad input: 4xx, never 500


@pytest.mark.parametrize(
    "k, message",
    [
        ("1000", "less than or equal to 100"),
        ("99999999999999999999999", "less than or equal to 100"),
        ("-1", "greater than or equal to 1"),
        ("0", "greater than or equal to 1"),
        ("abc", "valid integer"),
        ("2.5", "valid integer"),
        ("1e3", "valid integer"),
    ],
)
def test_bad_k_is_a_400_with_a_message(api, catalogue, k, message):
    for url, extra in [
        (similar_url(key(catalogue["Brass desk lamp"])), {}),
        (reverse("ragrec_api:search"), {"q": "mug"}),
        (reverse("ragrec_api:trending"), {}),
        (reverse("ragrec_api:for-you"), {}),
    ]:
        response = api.get(url, {"k": k, **extra})
        assert response.status_code == 400, (url, k)
        assert message in response.json()["k"][0]


def test_empty_k_means_the_default(api, catalogue):
    # (not "mug": a category name filters the search to its 4 items, issue 18)
    assert len(api.get(reverse("ragrec_api:search"), {"q": "ceramic", "k": ""}).json()["results"]) == 10


def test_k_cap_follows_the_max_k_setting(api, settings, catalogue):
    settings.RAGREC = {**settings.RAGREC, "MAX_K": 3}
    response = api.get(reverse("ragrec_api:search"), {"q": "mug", "k": 4})
    assert response.status_code == 400 and "less than or equal to 3" in response.json()["k"][0]
    assert len(api.get(reverse("ragrec_api:search"), {"q": "mug"}).json()["results"]) == 3  # default k capped


def test_unknown_config_is_a_400_everywhere(api, catalogue):
    lamp = key(catalogue["Brass desk lamp"])
    urls = [
        similar_url(lamp),
        reverse("ragrec_api:bought-together", args=[lamp]),
        reverse("ragrec_api:search"),
        reverse("ragrec_api:for-you"),
        reverse("ragrec_api:recently-viewed"),
        reverse("ragrec_api:buy-again"),
        reverse("ragrec_api:trending"),
    ]
    for url in urls:
        response = api.get(url, {"config": "nope", "q": "mug"})
        assert response.status_code == 400, url
        assert "Unknown serving configuration 'nope'" in response.json()["config"][0]


def test_unknown_item_is_a_404(api, catalogue):
    for name in ("similar", "bought-together"):
        for bad in ("999999", "not-a-number", "x" * 200, "a\x00b", "-1", "99999999999999999999999999"):
            response = api.get(reverse("ragrec_api:" + name, args=[bad]))
            assert response.status_code == 404, (name, bad)
            assert "No item with id" in response.json()["detail"]


def test_bad_search_queries_are_400(api, catalogue):
    url = reverse("ragrec_api:search")
    assert api.get(url).json() == {"q": ["This field is required."]}
    assert api.get(url, {"q": "   "}).status_code == 400
    assert "no more than 300" in api.get(url, {"q": "x" * 301}).json()["q"][0]
    assert "Null characters" in api.get(url, {"q": "mug\x00"}).json()["q"][0]


@pytest.mark.parametrize("q", ["!!!", "-", "a", "12345", "\ufffd", "''", 'mug -"'])
def test_queries_without_keyword_matches_are_answered(api, catalogue, q):
    response = api.get(reverse("ragrec_api:search"), {"q": q, "k": 3})
    assert response.status_code == 200  # semantic retrieval still answers
    assert len(response.json()["results"]) == 3


def test_bad_uploads_are_400_with_a_message(api, catalogue):
    url = reverse("ragrec_api:search-photo")
    response = api.post(url, {"image": io.BytesIO(b"GIF89a not really")}, format="multipart")
    assert response.status_code == 400 and "not a usable image" in response.json()["detail"]
    assert api.post(url, {"k": "3"}, format="multipart").json() == {"image": ["No file was submitted."]}
    empty = io.BytesIO(b"")
    empty.name = "empty.jpg"
    assert "empty" in api.post(url, {"image": empty}, format="multipart").json()["image"][0]
    response = api.post(url, {"image": "just text"}, format="multipart")
    assert response.status_code == 400 and "not a file" in response.json()["image"][0]
    assert api.post(url, {"image": "x"}, format="json").status_code == 415
    photo = io.BytesIO(kettle_photo(catalogue))
    photo.name = "kettle.jpg"
    response = api.post(url, {"image": photo, "k": "-1"}, format="multipart")
    assert response.status_code == 400 and "k" in response.json()


def test_oversized_upload_is_a_413(api, settings, catalogue):
    settings.RAGREC = {**settings.RAGREC, "MAX_UPLOAD_BYTES": 1000}
    photo = io.BytesIO(kettle_photo(catalogue) + b"\0" * 1000)
    photo.name = "big.jpg"
    response = api.post(reverse("ragrec_api:search-photo"), {"image": photo}, format="multipart")
    assert response.status_code == 413
    assert response.json()["detail"] == "The photo is too large: at most 1000 bytes (1000 bytes)."


def test_huge_body_is_refused_before_it_is_read(api, settings, catalogue):
    settings.RAGREC = {**settings.RAGREC, "MAX_UPLOAD_BYTES": 10 * 1024}
    photo = io.BytesIO(b"\xff" * (200 * 1024))
    photo.name = "huge.jpg"
    response = api.post(reverse("ragrec_api:search-photo"), {"image": photo}, format="multipart")
    assert response.status_code == 413 and "at most 10 KB" in response.json()["detail"]


def test_unencoded_spaces_are_a_503(api, db, ragrec_encoders):
    mugs = Category.objects.create(name="Mugs", slug="mugs")
    product = Product.objects.create(title="Lonely mug", slug="lonely", category=mugs, price="3")
    response = api.get(similar_url(key(product)))
    assert response.status_code == 503
    assert "not available yet" in response.json()["detail"] and "ragrec_reindex" in response.json()["detail"]
    photo = io.BytesIO(b"whatever")
    response = api.post(reverse("ragrec_api:search-photo"), {"image": photo}, format="multipart")
    assert response.status_code == 503 and "'image' space" in response.json()["detail"]


def test_items_not_mirrored_yet_are_found(api, catalogue):
    lamps = Category.objects.get(name="Lamps")
    new = Product.objects.create(title="Copper pendant lamp", slug="copper-pendant", category=lamps, price="40")
    assert not Item.objects.filter(key=key(new)).exists()  # saved without encoding: not in the mirror yet
    response = api.get(reverse("ragrec_api:bought-together", args=[key(new)]))
    assert response.status_code == 200 and response.json()["results"] == []  # no baskets, no vectors: nothing yet
    assert Item.objects.filter(key=key(new), title="Copper pendant lamp").exists()
