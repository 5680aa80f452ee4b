"""The conversational assistant: state across turns, clarifying question, feedback, ownership, retention."""

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.utils import timezone

from ragrec_django.exceptions import BadQuery
from ragrec_django.models import Conversation, Turn
from ragrec_django.services import conversation as conv
from ragrec_django.services import encoding
from ragrec_django.services.results import Visitor
from shop_demo.catalog.models import Category, Product
from tests.services.conftest import jpeg

pytestmark = pytest.mark.django_db

GIFT_SHOP = {
    "Water bottles": [
        ("Pink water bottle", "pink", "15"),
        ("Pink insulated bottle", "pink", "30"),
        ("Blue steel water bottle", "blue", "25"),
        ("Green hiking water bottle", "green", "12"),
        ("Black sports bottle", "black", "55"),
    ],
    "Mugs": [
        ("Purple ceramic mug", "purple", "10"),
        ("Black enamel camping mug", "black", "18"),
        ("White porcelain mug", "white", "35"),
    ],
    "Wallets": [("Brown leather wallet", "brown", "38"), ("Black leather wallet", "black", "45")],
    "Socks": [("Grey wool hiking socks", "grey", "14"), ("Red cotton socks", "red", "8")],
}
RGB = {
    "pink": (240, 130, 180),
    "blue": (30, 50, 210),
    "green": (30, 170, 60),
    "black": (20, 20, 20),
    "purple": (120, 40, 160),
    "white": (245, 245, 245),
    "brown": (120, 70, 30),
    "grey": (150, 150, 150),
    "red": (210, 30, 30),
}


@pytest.fixture
def gift_shop(db, ragrec_encoders):
    """Products by title, with varied prices and colours, encoded into "text", "image" and "clip-text"."""
    products = {}
    for category_name, rows in GIFT_SHOP.items():
        category = Category.objects.create(name=category_name, slug=category_name.lower().replace(" ", "-"))
        for title, colour, price in rows:
            product = Product(
                title=title,
                slug=title.lower().replace(" ", "-"),
                category=category,
                price=price,
                stock=5,
                colour=colour,
                description="%s, %s." % (title, category_name.lower()),
            )
            product.image.save(product.slug + ".jpg", ContentFile(jpeg(RGB[colour])), save=False)
            product.save()
            products[title] = product
    pks = [p.pk for p in products.values()]
    for space in ("text", "image", "clip-text"):
        encoding.encode_items(space, pks)
    return products


def colours(result):
    return [p.item.metadata.get("colour") for p in result.products]


def prices(result):
    return [float(p.item.price) for p in result.products]


def test_a_conversation_walk_respects_every_constraint(gift_shop):
    visitor = Visitor(session_key="s1")
    chat = conv.start(visitor)
    first = conv.take_turn(chat, "a gift for my dad under 40")
    assert (first.state.recipient, first.state.occasion, first.state.max_price) == ("dad", "gift", 40.0)
    assert first.products and all(price <= 40 for price in prices(first))
    assert first.question == conv.FEEDBACK_QUESTION and first.number == 1

    second = conv.take_turn(chat, "not pink")
    assert second.state.excluded_colours == ["pink"]
    assert second.products and "pink" not in colours(second) and all(p <= 40 for p in prices(second))

    shown_prices = prices(second)
    third = conv.take_turn(chat, "cheaper")
    assert third.state.max_price < 40
    assert third.products and all(p < sorted(shown_prices)[len(shown_prices) // 2] + 0.01 for p in prices(third))
    assert "pink" not in colours(third)

    second_key = third.products[1].item.key
    fourth = conv.take_turn(chat, "more like the second one")
    assert fourth.state.liked == [second_key]
    assert second_key not in [p.item.key for p in fourth.products]
    assert all(p <= fourth.state.max_price for p in prices(fourth)) and "pink" not in colours(fourth)
    assert any(reason.startswith("because you liked") for reasons in fourth.reasons.values() for reason in reasons)

    before = {p.item.key for p in fourth.products}
    fifth = conv.take_turn(chat, "show me more")
    assert fifth.state.page == 1
    assert not before & {p.item.key for p in fifth.products}  # no repeats

    sixth = conv.take_turn(chat, "start over")
    assert sixth.state.max_price is None and sixth.state.excluded_colours == [] and sixth.products == []
    assert sixth.question == conv.VAGUE_QUESTION
    assert list(Turn.objects.filter(conversation=chat).values_list("number", flat=True)) == [1, 2, 3, 4, 5, 6]


def test_a_vague_request_gets_one_clarifying_question_then_products(gift_shop):
    chat = conv.start(Visitor(session_key="s2"))
    asked = conv.take_turn(chat, "a gift for my dad")
    assert asked.products == [] and asked.question == conv.VAGUE_QUESTION
    assert set(asked.quick_replies) <= set(GIFT_SHOP) and len(asked.quick_replies) == 4
    answered = conv.take_turn(chat, "hmm, not sure")  # at most one question before products
    assert answered.products and answered.question == conv.FEEDBACK_QUESTION


def test_a_category_reply_narrows_to_it(gift_shop):
    chat = conv.start(Visitor(session_key="s3"))
    conv.take_turn(chat, "a present")
    result = conv.take_turn(chat, "Mugs")
    assert result.state.category == "Mugs"
    assert {p.item.category for p in result.products} == {"Mugs"}


def test_feedback_dislike_excludes_and_too_expensive_lowers_the_budget(gift_shop):
    chat = conv.start(Visitor(session_key="s4"))
    first = conv.take_turn(chat, "a water bottle")
    disliked = first.products[0].item.key
    second = conv.take_turn(chat, feedback={"item": disliked, "action": "dislike"})
    assert disliked not in [p.item.key for p in second.products] and second.state.disliked == [disliked]
    pricey = max(second.products, key=lambda p: p.item.price).item
    third = conv.take_turn(chat, feedback={"item": pricey.key, "action": "too_expensive"})
    assert all(p < float(pricey.price) for p in prices(third))
    wrong = third.products[0].item
    fourth = conv.take_turn(chat, feedback={"item": wrong.key, "action": "wrong_colour"})
    assert wrong.metadata["colour"] not in colours(fourth)


def test_bad_feedback_and_empty_turns_are_refused(gift_shop):
    chat = conv.start(Visitor(session_key="s5"))
    with pytest.raises(BadQuery):
        conv.take_turn(chat, "")
    conv.take_turn(chat, "a mug")
    with pytest.raises(BadQuery):
        conv.take_turn(chat, feedback={"item": "nope", "action": "like"})
    shown = Conversation.objects.get(pk=chat.pk).state["shown"][0]["key"]
    with pytest.raises(BadQuery):
        conv.take_turn(chat, feedback={"item": shown, "action": "adore"})


def test_answers_cite_only_shown_products(gift_shop):
    chat = conv.start(Visitor(session_key="s6"))
    result = conv.take_turn(chat, "a blue water bottle under 30")
    titles = {p.title for p in gift_shop.values()} - {p.item.title for p in result.products}
    assert not [title for title in titles if title in result.answer]


def test_only_the_owner_gets_a_conversation():
    mine = conv.start(Visitor(session_key="me"))
    assert conv.get(mine.pk, Visitor(session_key="me")) == mine
    for other in (Visitor(session_key="you"), Visitor(user_id=None), Visitor(session_key="")):
        with pytest.raises(conv.ConversationNotFound):
            conv.get(mine.pk, other)
    with pytest.raises(conv.ConversationNotFound):
        conv.get("not-a-uuid", Visitor(session_key="me"))
    with pytest.raises(conv.ConversationNotFound):
        conv.delete(mine.pk, Visitor(session_key="you"))
    conv.delete(mine.pk, Visitor(session_key="me"))
    assert not Conversation.objects.exists()
    with pytest.raises(BadQuery):
        conv.start(Visitor())


def test_clear_and_purge():
    for key in ("a", "a", "b"):
        conv.start(Visitor(session_key=key))
    assert conv.clear(Visitor(session_key="a")) == 2
    old = conv.start(Visitor(session_key="c"))
    Conversation.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=31))
    call_command("ragrec_purge_conversations")
    assert list(Conversation.objects.values_list("session_key", flat=True)) == ["b"]
    Conversation.objects.update(updated_at=timezone.now() - timedelta(days=3))
    call_command("ragrec_purge_conversations", "--days", "2")
    assert not Conversation.objects.exists()
