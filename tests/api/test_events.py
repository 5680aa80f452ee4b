"""POST events/: single events and batches, idempotency, whose events they are, refusals."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from ragrec_django.models import Interaction

pytestmark = pytest.mark.django_db


@pytest.fixture
def url():
    return reverse("ragrec_api:events")


def key(product):
    return str(product.pk)


def test_single_event_for_a_session(api, url, catalogue):
    mug = key(catalogue["Red ceramic coffee mug"])
    response = api.post(url, {"event": "view", "item": mug, "session_key": "s1"}, format="json")
    assert response.status_code == 201
    assert response.json() == {"accepted": 1, "stored": 1, "duplicates": 0}
    row = Interaction.objects.get()
    assert (row.event, row.item.key, row.session_key, row.user_id) == ("view", mug, "s1", None)


def test_batch_of_events(api, url, catalogue):
    mug, kettle = key(catalogue["Red ceramic coffee mug"]), key(catalogue["Copper stovetop tea kettle"])
    batch = [
        {"event": "add_to_cart", "item": mug, "quantity": 2},
        {"event": "purchase", "item": mug, "order_id": "o1", "quantity": 2},
        {"event": "purchase", "item": kettle, "order_id": "o1"},
        {"event": "search", "query": "tea kettle"},
        {"event": "click", "item": kettle, "source": "similar"},
    ]
    response = api.post(url + "?session=s2", batch, format="json")
    assert response.status_code == 201
    assert response.json() == {"accepted": 5, "stored": 5, "duplicates": 0}
    rows = Interaction.objects.order_by("id")
    assert [r.event for r in rows] == ["add_to_cart", "purchase", "purchase", "search", "click"]
    assert {r.session_key for r in rows} == {"s2"}
    assert (
        rows[1].quantity == 2
        and rows[2].order_id == "o1"
        and rows[3].query == "tea kettle"
        and rows[4].source == "similar"
    )


def test_idempotency_key_header_makes_retries_safe(api, url, catalogue):
    event = {"event": "purchase", "item": key(catalogue["Brass desk lamp"]), "order_id": "o7", "session_key": "s7"}
    first = api.post(url, event, format="json", HTTP_IDEMPOTENCY_KEY="order-o7-line-1")
    again = api.post(url, event, format="json", HTTP_IDEMPOTENCY_KEY="order-o7-line-1")
    assert (first.status_code, first.json()) == (201, {"accepted": 1, "stored": 1, "duplicates": 0})
    assert (again.status_code, again.json()) == (200, {"accepted": 1, "stored": 0, "duplicates": 1})
    assert Interaction.objects.get().idempotency_key == "order-o7-line-1"
    other = api.post(url, event, format="json", HTTP_IDEMPOTENCY_KEY="order-o7-line-2")
    assert other.json()["stored"] == 1 and Interaction.objects.count() == 2


def test_idempotency_keys_in_a_batch(api, url, catalogue):
    mug = key(catalogue["Red ceramic coffee mug"])
    batch = [
        {"event": "view", "item": mug, "session_key": "s", "idempotency_key": "k1"},
        {"event": "view", "item": mug, "session_key": "s", "idempotency_key": "k1"},
        {"event": "view", "item": mug, "session_key": "s", "idempotency_key": "k2"},
    ]
    assert api.post(url, batch, format="json").json() == {"accepted": 3, "stored": 2, "duplicates": 1}
    assert api.post(url, batch, format="json").json() == {"accepted": 3, "stored": 0, "duplicates": 3}
    assert Interaction.objects.count() == 2


# ---------------------------------------------------------------- idempotency keys: one key names one event


def test_a_key_reused_for_another_event_is_a_409_never_a_silent_drop(api, url, catalogue):
    """The reported case: a view, then a purchase with the same key. The purchase was dropped as a duplicate."""
    mug = key(catalogue["Red ceramic coffee mug"])
    view = {"event": "view", "item": mug, "session_key": "s1"}
    assert api.post(url, view, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    purchase = {"event": "purchase", "item": mug, "order_id": "o1", "session_key": "s1"}
    response = api.post(url, purchase, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409
    body = response.json()
    assert "reused for a different event" in body["detail"] and "nothing was stored" in body["detail"]
    assert body["errors"] == {
        "0": [
            "idempotency key 'k' was already used by this visitor for a different event; a key names one event: "
            "send a new event with a new key"
        ]
    }
    assert list(Interaction.objects.values_list("event", flat=True)) == ["view"]
    # The same event again is a replay: 200, nothing stored, the original kept.
    again = api.post(url, view, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert (again.status_code, again.json()) == (200, {"accepted": 1, "stored": 0, "duplicates": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"event": "add_to_cart"},
        {"item": "other"},
        {"quantity": 2},
        {"order_id": "o2"},
        {"source": "similar"},
        {"created_at": "2024-01-01T00:00:00Z"},
    ],
)
def test_every_field_of_the_event_is_part_of_what_a_key_names(api, url, catalogue, change):
    mug, lamp = key(catalogue["Red ceramic coffee mug"]), key(catalogue["Brass desk lamp"])
    event = {"event": "purchase", "item": mug, "order_id": "o1", "session_key": "s1", "idempotency_key": "k"}
    assert api.post(url, event, format="json").status_code == 201
    changed = {**event, **change}
    if changed["item"] == "other":
        changed["item"] = lamp
    assert api.post(url, changed, format="json").status_code == 409
    assert Interaction.objects.count() == 1


def test_a_conflict_refuses_the_whole_batch_and_is_found_within_one_batch(api, url, catalogue):
    mug, lamp = key(catalogue["Red ceramic coffee mug"]), key(catalogue["Brass desk lamp"])
    batch = [
        {"event": "view", "item": lamp, "idempotency_key": "fresh"},
        {"event": "view", "item": mug, "idempotency_key": "k"},
        {"event": "purchase", "item": mug, "idempotency_key": "k"},
    ]
    response = api.post(url + "?session=s1", batch, format="json")
    assert response.status_code == 409 and set(response.json()["errors"]) == {"2"}
    assert Interaction.objects.count() == 0


def test_keys_belong_to_one_visitor_so_nobody_can_pre_empt_them(api, url, catalogue, django_user_model):
    """Keys were global: an anonymous client could store a key first and another visitor's event was dropped."""
    mug = key(catalogue["Red ceramic coffee mug"])
    attacker = api.post(
        url,
        {"event": "view", "item": mug, "session_key": "attacker"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="purchase:o1:%s" % mug,
    )
    assert attacker.status_code == 201
    victim = {"event": "purchase", "item": mug, "order_id": "o1", "session_key": "victim"}
    response = api.post(url, victim, format="json", HTTP_IDEMPOTENCY_KEY="purchase:o1:%s" % mug)
    assert (response.status_code, response.json()["stored"]) == (201, 1)
    user = django_user_model.objects.create_user("ann")
    api.force_authenticate(user)
    response = api.post(url, {**victim, "session_key": ""}, format="json", HTTP_IDEMPOTENCY_KEY="purchase:o1:%s" % mug)
    assert (response.status_code, response.json()["stored"]) == (201, 1)
    scopes = sorted(Interaction.objects.values_list("idempotency_scope", flat=True))
    assert scopes == sorted(["session:attacker", "session:victim", "user:%d" % user.pk])


def test_idempotency_header_rules(api, url, catalogue):
    event = {"event": "view", "item": key(catalogue["Brass desk lamp"]), "session_key": "s"}
    response = api.post(url, [event], format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 400 and "single event" in response.json()["detail"]
    response = api.post(url, {**event, "idempotency_key": "a"}, format="json", HTTP_IDEMPOTENCY_KEY="b")
    assert response.status_code == 400 and "differ" in response.json()["detail"]
    response = api.post(url, event, format="json", HTTP_IDEMPOTENCY_KEY="x" * 129)
    assert response.status_code == 400 and "idempotency_key" in response.json()["errors"]["0"][0]
    assert Interaction.objects.count() == 0


def test_signed_in_user_posts_as_themselves_never_for_another_session(api, url, catalogue):
    user = get_user_model().objects.create_user("ann")
    api.force_authenticate(user)
    lamp = key(catalogue["Brass desk lamp"])
    assert api.post(url, {"event": "view", "item": lamp}, format="json").status_code == 201
    assert api.post(url, {"event": "view", "item": lamp, "user_id": user.pk}, format="json").status_code == 201
    response = api.post(url, {"event": "view", "item": lamp, "session_key": "guest-1"}, format="json")
    assert response.status_code == 403
    assert response.json()["errors"] == {
        "0": ["session_key: signed in, you can only post events for your own session (or omit it)"]
    }
    rows = list(Interaction.objects.order_by("id").values_list("user_id", "session_key"))
    assert rows == [(user.pk, ""), (user.pk, "")]
    # Staff (back-office integrations) may record events of an anonymous visitor.
    staff = get_user_model().objects.create_user("clerk", is_staff=True)
    api.force_authenticate(staff)
    assert api.post(url, {"event": "view", "item": lamp, "session_key": "guest-1"}, format="json").status_code == 201
    assert Interaction.objects.filter(user=None, session_key="guest-1").count() == 1


def test_signed_in_user_may_name_their_own_session(client, url, catalogue):
    user = get_user_model().objects.create_user("ann")
    client.force_login(user)
    own = client.session.session_key
    lamp = key(catalogue["Brass desk lamp"])
    response = client.post(url, {"event": "view", "item": lamp, "session_key": own}, content_type="application/json")
    assert response.status_code == 201
    assert Interaction.objects.get().session_key == own


def test_events_for_another_user_are_forbidden(api, url, catalogue):
    ann, bob = (get_user_model().objects.create_user(name) for name in ("ann", "bob"))
    lamp = key(catalogue["Brass desk lamp"])
    api.force_authenticate(ann)
    response = api.post(
        url, [{"event": "view", "item": lamp}, {"event": "view", "item": lamp, "user_id": bob.pk}], format="json"
    )
    assert response.status_code == 403
    assert response.json()["errors"] == {"1": ["user_id: you can only post events as yourself or for a session_key"]}
    api.force_authenticate(None)
    response = api.post(url, {"event": "view", "item": lamp, "user_id": ann.pk}, format="json")
    assert response.status_code == 403 and "another user" in response.json()["detail"]
    assert Interaction.objects.count() == 0  # nothing of a refused batch is stored


def test_anonymous_events_use_the_session(client, url, catalogue):
    lamp = catalogue["Brass desk lamp"]
    client.get(lamp.get_absolute_url())  # starts a session
    session_key = client.session.session_key
    response = client.post(url, {"event": "click", "item": key(lamp)}, content_type="application/json")
    assert response.status_code == 201
    assert Interaction.objects.filter(event="click", session_key=session_key).count() == 1


def test_anonymous_event_without_any_session_is_refused(api, url, catalogue):
    response = api.post(url, {"event": "view", "item": key(catalogue["Brass desk lamp"])}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"0": ["give a user or a session_key"]}


def test_invalid_events_are_reported_by_index(api, url, catalogue):
    lamp = key(catalogue["Brass desk lamp"])
    batch = [
        {"event": "view", "item": lamp},
        {"event": "teleport", "item": lamp},
        {"event": "view", "item": lamp, "quantity": 0},
        "not an object",
        {"event": "view", "item": lamp, "created_at": "yesterday"},
    ]
    response = api.post(url + "?session=s", batch, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "nothing was stored" in body["detail"]
    assert set(body["errors"]) == {"1", "2", "3", "4"}
    assert body["errors"]["1"][0].startswith("event: ")
    assert body["errors"]["2"] == ["quantity: Ensure this value is greater than or equal to 1."]
    assert "Expected a dictionary" in body["errors"]["3"][0]
    assert body["errors"]["4"][0].startswith("created_at: ")
    assert Interaction.objects.count() == 0


def test_service_refusals_are_400_with_indexes(api, url, catalogue):
    lamp = key(catalogue["Brass desk lamp"])
    batch = [
        {"event": "view", "item": lamp},
        {"event": "view", "item": "999999"},
        {"event": "search"},
        {"event": "view", "item": lamp, "created_at": "2999-01-01T00:00:00Z"},
    ]
    response = api.post(url + "?session=s", batch, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["1"] == ["unknown item '999999'"]
    assert errors["2"] == ["a search event needs a query"]
    assert errors["3"] == ["created_at is in the future"]
    assert api.post(url, [], format="json").json()["errors"] == {"0": ["the batch is empty"]}
    too_many = [{"event": "view", "item": lamp, "session_key": "s"}] * 501
    assert api.post(url, too_many, format="json").json()["errors"] == {"500": ["at most 500 events per batch"]}
    assert Interaction.objects.count() == 0


@pytest.mark.parametrize(
    "body, content_type",
    [
        ('{"event": "view", ', "application/json"),
        ("not json at all", "application/json"),
        ('"a string"', "application/json"),
        ("42", "application/json"),
        ("null", "application/json"),
        ('{"event": "view"}', "text/plain"),
        ('{"event": NaN}', "application/json"),
        ("[" * 100_000, "application/json"),  # deeper than Python's JSON decoder goes
    ],
)
def test_malformed_bodies_are_4xx(api, url, db, body, content_type):
    response = api.generic("POST", url, body, content_type=content_type)
    assert response.status_code in (400, 415)
    assert "detail" in response.json()
    if content_type == "application/json" and not body.startswith('"') and body not in ("42", "null"):
        assert "JSON parse error" in response.json()["detail"]
    if body.startswith("[["):
        assert "nested too deeply" in response.json()["detail"]
