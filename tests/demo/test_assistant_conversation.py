"""The demo's assistant page keeps a conversation across turns: chips, quick replies, feedback, start over."""

import re
from html import unescape

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from ragrec_django.models import Conversation, Interaction
from ragrec_django.services import conversation as conv
from ragrec_django.services import encoding
from shop_demo.catalog.models import Category, Product
from tests.services.conftest import jpeg
from tests.services.test_conversation import gift_shop  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db

URL = reverse("catalog:assistant")


def say(client, message):
    page = client.post(URL, {"action": "message", "message": message})
    assert page.status_code == 200, page.content.decode()[:2000]
    return page


def chips(page) -> list[str]:
    return [unescape(label) for label in re.findall(r'class="assistant-chip-label">([^<]*)<', page.content.decode())]


def shown(page) -> list[Product]:
    keys = re.findall(r'<li class="card" data-item-key="(\d+)"', page.content.decode())
    products = {str(p.pk): p for p in Product.objects.filter(pk__in=keys)}
    return [products[key] for key in keys]


def test_a_conversation_walk_shows_the_state_and_respects_it(client, gift_shop):
    first = say(client, "a gift for my dad under 40")
    assert chips(first) == ["for dad", "gift", "up to £40"]
    assert shown(first) and all(p.price <= 40 for p in shown(first))
    assert "Products in the answer" in first.content.decode() and conv.FEEDBACK_QUESTION in first.content.decode()

    second = say(client, "not pink")
    assert chips(second) == ["for dad", "gift", "not pink", "up to £40"]
    assert shown(second) and all(p.colour != "pink" and p.price <= 40 for p in shown(second))

    third = say(client, "cheaper")
    ceiling = float(chips(third)[-1].removeprefix("up to £"))
    assert ceiling < 40 and chips(third)[:3] == ["for dad", "gift", "not pink"]
    assert shown(third) and all(float(p.price) <= ceiling and p.colour != "pink" for p in shown(third))

    second_product = shown(third)[1]
    fourth = say(client, "more like the second one")
    assert second_product not in shown(fourth)
    assert all(float(p.price) <= ceiling and p.colour != "pink" for p in shown(fourth))
    assert "because you liked %s" % second_product.title in fourth.content.decode()

    fifth = say(client, "show me more")
    assert not set(shown(fourth)) & set(shown(fifth))
    assert all(float(p.price) <= ceiling and p.colour != "pink" for p in shown(fifth))
    assert chips(fifth) == chips(fourth)

    sixth = client.post(URL, {"action": "start_over"})
    assert chips(sixth) == [] and shown(sixth) == [] and conv.VAGUE_QUESTION in sixth.content.decode()
    assert Conversation.objects.count() == 1  # one conversation throughout, kept in the session


def test_the_page_shows_the_conversation_again_and_a_chip_can_be_removed(client, gift_shop):
    say(client, "a water bottle under 30 not pink")
    again = client.get(URL)
    assert chips(again) == ["Water bottles", "not pink", "up to £30"] and shown(again)

    removed = client.post(URL, {"action": "remove", "kind": "not_colour", "value": "pink"})
    assert chips(removed) == ["Water bottles", "up to £30"]
    assert "pink" in {p.colour for p in shown(removed)}


def test_like_and_dislike_buttons_are_feedback(client, gift_shop):
    page = say(client, "a water bottle")
    liked, disliked = shown(page)[:2]
    assert 'name="feedback" value="like"' in page.content.decode()

    after_dislike = client.post(URL, {"action": "feedback", "item": disliked.pk, "feedback": "dislike"})
    assert disliked not in shown(after_dislike)
    after_like = client.post(URL, {"action": "feedback", "item": liked.pk, "feedback": "like"})
    assert "because you liked %s" % liked.title in after_like.content.decode()
    click = Interaction.objects.get(event="click", item__key=str(liked.pk))
    assert click.source == "assistant" and click.session_key == client.session.session_key

    unknown = client.post(URL, {"action": "feedback", "item": "999999", "feedback": "like"})
    assert unknown.status_code == 400 and "shown in the last answer" in unknown.content.decode()


def test_a_vague_request_gets_a_question_with_quick_replies(client, gift_shop):
    page = say(client, "a present")
    html = page.content.decode()
    assert conv.VAGUE_QUESTION in html and shown(page) == []
    assert re.search(r'<button type="submit" name="message" value="(Water bottles|Mugs|Wallets|Socks)">', html)
    answered = say(client, "Mugs")
    assert chips(answered) == ["Mugs", "gift"] and {p.category.name for p in shown(answered)} == {"Mugs"}


def test_clear_my_conversations(client, gift_shop):
    say(client, "a mug")
    cleared = client.post(URL, {"action": "clear"})
    assert cleared.status_code == 200 and "Deleted 1 conversation(s)." in cleared.content.decode()
    assert not Conversation.objects.exists() and chips(client.get(URL)) == []


def test_product_titles_and_messages_are_escaped(client, db, ragrec_encoders):
    category = Category.objects.create(name="Mugs", slug="mugs")
    product = Product(
        title="<script>alert(1)</script> mug",
        slug="evil-mug",
        category=category,
        price="9",
        stock=3,
        colour="red",
        description="A mug.",
    )
    product.image.save("evil.jpg", ContentFile(jpeg((200, 20, 20))), save=False)
    product.save()
    for space in ("text", "image", "clip-text"):
        encoding.encode_items(space, [product.pk])
    page = say(client, "a mug <img src=x onerror=alert(2)>")
    html = page.content.decode()
    assert shown(page) == [product]
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; mug" in html
    assert "<img src=x" not in html
