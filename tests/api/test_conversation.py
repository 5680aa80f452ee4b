"""The conversation endpoints: start, turns (message and feedback), delete; only the owner gets in."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from ragrec_django.models import Conversation
from tests.services.test_conversation import gift_shop  # noqa: F401  (the encoded catalogue, reused)

pytestmark = pytest.mark.django_db


def turn(api, chat, **body):
    return api.post(reverse("ragrec_api:conversation-turns", args=[chat]), body, format="json")


def test_start_turns_feedback_and_delete(api, gift_shop):  # noqa: F811
    started = api.post(reverse("ragrec_api:conversations"))
    assert started.status_code == 201
    chat = started.json()["conversation"]

    first = turn(api, chat, message="a gift for my dad under 40")
    assert first.status_code == 200, first.content
    body = first.json()
    assert body["turn"] == 1 and body["state"]["max_price"] == 40.0 and body["question"]
    assert body["products"] and all(float(p["price"]) <= 40 for p in body["products"])
    assert {"kind": "recipient", "value": "dad", "label": "for dad"} in body["chips"]
    assert "shown" not in body["state"]

    key = body["products"][0]["id"]
    second = turn(api, chat, feedback={"item": key, "action": "dislike"})
    assert second.status_code == 200 and key not in [p["id"] for p in second.json()["products"]]

    assert turn(api, chat).status_code == 400
    assert turn(api, chat, feedback={"item": "missing", "action": "like"}).status_code == 400
    assert turn(api, chat, message="x" * 501).status_code == 400

    assert api.delete(reverse("ragrec_api:conversation", args=[chat])).status_code == 204
    assert not Conversation.objects.exists()
    assert turn(api, chat, message="a mug").status_code == 404


def test_another_visitors_conversation_is_a_404(api):
    chat = api.post(reverse("ragrec_api:conversations")).json()["conversation"]
    stranger = APIClient()
    assert turn(stranger, chat, message="a mug").status_code == 404
    assert stranger.delete(reverse("ragrec_api:conversation", args=[chat])).status_code == 404
    assert turn(api, "not-a-uuid", message="a mug").status_code == 404
    assert Conversation.objects.filter(pk=chat).exists()
