"""The demo's assistant page with its script: the conversation the script posts turns to ("start"), the turn
endpoint it streams from, and "Add to basket" filling the shop's basket as well as the conversation."""

import re

import pytest
from django.urls import reverse

from ragrec_django.models import Conversation, Interaction, Turn
from tests.services.test_conversation import gift_shop  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db

URL = reverse("catalog:assistant")


def test_the_page_loads_its_script_and_names_the_turn_endpoint(client, gift_shop):  # noqa: F811
    first = client.get(URL).content.decode()
    assert "catalog/assistant.js" in first and 'data-turns-url=""' in first  # no conversation yet

    started = client.post(URL, {"action": "start"})
    assert started.status_code == 201
    chat = started.json()["conversation"]
    assert started.json()["turns_url"] == reverse("ragrec_api:conversation-turns", args=[chat])
    assert client.post(URL, {"action": "start"}).json()["conversation"] == chat  # the current one, kept
    assert Conversation.objects.count() == 1

    streamed = client.post(
        started.json()["turns_url"] + "?stream=true", {"message": "a mug"}, content_type="application/json"
    )
    assert streamed["Content-Type"].startswith("text/event-stream")
    b"".join(streamed.streaming_content)
    page = client.get(URL).content.decode()  # what the script shows at "done"
    assert 'data-turns-url="%s"' % started.json()["turns_url"] in page and "Products in the answer" in page


def test_add_to_basket_fills_the_basket_and_ends_the_conversation_in_it(client, gift_shop):  # noqa: F811
    page = client.post(URL, {"action": "message", "message": "a gift for my dad under 40"}).content.decode()
    key = re.findall(r'<li class="card" data-item-key="(\d+)"', page)[0]
    assert 'value="basket"' in page

    after = client.post(URL, {"action": "feedback", "item": key, "feedback": "basket"})
    assert after.status_code == 200
    assert 'data-cart-count="1"' in after.content.decode() and "to your basket" in after.content.decode()
    assert Turn.objects.filter(feedback={"item": key, "action": "basket"}).count() == 1
    event = Interaction.objects.get(event="add_to_cart")
    assert (str(event.item.key), event.source) == (key, "assistant")

    refused = client.post(URL, {"action": "feedback", "item": "999999", "feedback": "basket"})
    assert refused.status_code == 400 and Interaction.objects.filter(event="add_to_cart").count() == 1
