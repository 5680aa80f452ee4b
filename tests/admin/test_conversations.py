"""The assistant's conversations in the admin: read-only, filtered by outcome, each turn's state and products,
and flagging a bad turn (with a note, in the conversation's history)."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from ragrec_django.models import Conversation, Item, Turn
from ragrec_django.services import conversation as conv
from ragrec_django.services import conversation_review as review
from ragrec_django.services.results import Visitor
from tests.services.test_conversation import gift_shop  # noqa: F401  (the encoded catalogue, reused)

pytestmark = pytest.mark.django_db

STATE = {"recipient": "dad", "occasion": "gift", "max_price": 40.0, "excluded_colours": ["pink"]}


def conversation(*feedbacks, idle=timedelta(0), session="s"):
    """A conversation with one turn per feedback ({} for a message turn), last touched ``idle`` ago."""
    chat = Conversation.objects.create(session_key=session, state=STATE)
    for number, feedback in enumerate(feedbacks, 1):
        Turn.objects.create(
            conversation=chat,
            number=number,
            message="" if feedback else "a gift for my dad under 40, not pink",
            feedback=feedback,
            answer="The camping mug fits.",
            question="Are any of these close?",
            item_keys=["m1", "gone"],
            state=STATE,
        )
    Conversation.objects.filter(pk=chat.pk).update(updated_at=timezone.now() - idle)
    return chat


@pytest.fixture
def chats():
    Item.objects.create(key="m1", title="<b>Black</b> enamel camping mug", price="18.00")
    return {
        "basket": conversation({}, {"item": "m1", "action": "basket"}, idle=timedelta(hours=5)),
        "abandoned": conversation({}, {"item": "m1", "action": "dislike"}, idle=timedelta(hours=2)),
        "going": conversation({}),
        "never used": conversation(idle=timedelta(days=3)),
    }


def listed(admin_client, **query) -> set:
    response = admin_client.get(reverse("admin:ragrec_django_conversation_changelist"), query)
    assert response.status_code == 200
    return {chat.pk for chat in response.context["cl"].result_list}


def test_the_list_filters_by_outcome(admin_client, chats):
    assert listed(admin_client) == {chat.pk for chat in chats.values()}
    assert listed(admin_client, outcome="basket") == {chats["basket"].pk}
    assert listed(admin_client, outcome="abandoned") == {chats["abandoned"].pk}
    assert listed(admin_client, outcome="other") == {chats["going"].pk, chats["never used"].pk}
    page = admin_client.get(reverse("admin:ragrec_django_conversation_changelist")).content.decode()
    for label in review.OUTCOMES.values():
        assert label in page


def test_a_conversation_shows_each_turn_with_its_state_and_products(admin_client, chats):
    page = admin_client.get(reverse("admin:ragrec_django_conversation_change", args=[chats["basket"].pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "a gift for my dad under 40, not pink" in text and "action: basket, item: m1" in text
    assert "for dad, gift, not pink, up to 40" in text  # the state after the turn, as the shopper's chips
    assert "1. &lt;b&gt;Black&lt;/b&gt; enamel camping mug <code>m1</code> - 18.00" in text  # escaped
    assert "2. (no longer in the catalogue) <code>gone</code>" in text
    assert "ended in basket" in text and "Flag this turn" in text


def test_conversations_are_read_only(admin_client, chats):
    chat = chats["going"]
    change = reverse("admin:ragrec_django_conversation_change", args=[chat.pk])
    assert admin_client.post(change, {"session_key": "changed"}).status_code == 403
    assert admin_client.get(reverse("admin:ragrec_django_conversation_add")).status_code == 403
    assert admin_client.post(reverse("admin:ragrec_django_conversation_delete", args=[chat.pk])).status_code == 403
    response = admin_client.post(
        reverse("admin:ragrec_django_conversation_changelist"),
        {"action": "delete_selected", "_selected_action": [chat.pk]},
    )
    assert response.status_code in (200, 302)  # no delete action is offered: nothing happens
    assert Conversation.objects.get(pk=chat.pk).session_key == "s" and Turn.objects.filter(conversation=chat).exists()


def flag_url(chat, number):
    return reverse("admin:ragrec_django_conversation_flag", args=[chat.pk, number])


def test_staff_flag_a_turn_with_a_note_and_it_is_in_the_history(admin_client, admin_user, chats):
    chat = chats["abandoned"]
    form = admin_client.get(flag_url(chat, 2))
    assert form.status_code == 200 and "camping mug" in form.content.decode()

    done = admin_client.post(flag_url(chat, 2), {"action": "flag", "note": "  disliked item shown again  "})
    assert done.status_code == 302 and done["Location"].endswith(
        reverse("admin:ragrec_django_conversation_change", args=[chat.pk])
    )
    flagged = Turn.objects.get(conversation=chat, number=2)
    assert flagged.flagged_at and flagged.flagged_by == admin_user and flagged.flag_note == "disliked item shown again"
    assert Turn.objects.get(conversation=chat, number=1).flagged_at is None
    history = LogEntry.objects.get(object_id=str(chat.pk))
    assert history.user == admin_user and "Flagged turn 2: disliked item shown again" in history.get_change_message()
    page = admin_client.get(reverse("admin:ragrec_django_conversation_change", args=[chat.pk])).content.decode()
    assert "Flagged</strong> by admin" in page and "disliked item shown again" in page
    assert listed(admin_client, outcome="abandoned") == {chat.pk}

    too_long = admin_client.post(flag_url(chat, 1), {"action": "flag", "note": "x" * 1001})
    assert too_long.status_code == 302 and Turn.objects.get(conversation=chat, number=1).flagged_at is None

    admin_client.post(flag_url(chat, 2), {"action": "unflag"})
    assert Turn.objects.get(conversation=chat, number=2).flagged_at is None
    assert LogEntry.objects.filter(object_id=str(chat.pk)).count() == 2
    assert admin_client.get(flag_url(chat, 9)).status_code == 404


def test_flagging_needs_the_turn_change_permission(client, chats):
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    client.force_login(viewer)
    chat = chats["going"]
    page = client.get(reverse("admin:ragrec_django_conversation_change", args=[chat.pk]))
    assert page.status_code == 200 and "a gift for my dad under 40" in page.content.decode()  # the turns too
    assert client.post(flag_url(chat, 1), {"action": "flag"}).status_code == 403
    assert Turn.objects.get(conversation=chat).flagged_at is None
    viewer.user_permissions.add(Permission.objects.get(codename="change_turn"))
    assert client.post(flag_url(chat, 1), {"action": "flag"}).status_code == 302
    assert Turn.objects.get(conversation=chat).flagged_by == viewer


def test_a_real_conversation_that_ends_in_the_basket(admin_client, gift_shop):  # noqa: F811
    chat = conv.start(Visitor(session_key="shopper"))
    first = conv.take_turn(chat, "a gift for my dad under 40")
    conv.take_turn(chat, feedback={"item": first.products[0].item.key, "action": "basket"})
    assert listed(admin_client, outcome="basket") == {chat.pk}
    page = admin_client.get(reverse("admin:ragrec_django_conversation_change", args=[chat.pk])).content.decode()
    assert first.products[0].item.title in page and "up to 40" in page
