"""The demo's shopping assistant page: a conversation with ragrec's assistant (``services.conversation``).

The conversation's id is kept in the visitor's session, so each message, quick reply, removed chip or like /
dislike on a product card is one more turn of the same conversation. ``?q=...`` (a link from elsewhere)
starts a new conversation with that request as its first turn. "Start over" resets the state; "Clear my
conversations" deletes every conversation of the visitor. No CDN, and every control is a form that works
without script; with script (``catalog/assistant.js``), messages, quick replies and like / dislike are posted to
the API's turn endpoint as a Server-Sent Events stream and the state and answer appear as they arrive ("start"
gives the script the conversation to post to). "Add to basket" also puts the product in the shop's basket.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.http import JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views import View

from ragrec_django.exceptions import GenerationError, RecommendationError, SpaceNotReady
from ragrec_django.limits import ASSISTANT_REQUEST_MAX_CHARS
from ragrec_django.services import conversation
from ragrec_django.services.events import EventInput
from ragrec_django.services.visitors import ensure_session_key, visitor_for_request

from .cart import Cart
from .models import Product
from .views import record, visitor_fields

logger = logging.getLogger(__name__)

#: Where the visitor's current conversation id is kept in their session.
SESSION_KEY = "shop_demo_assistant_conversation"
FEEDBACK_BUTTONS = (("like", "Like"), ("dislike", "Dislike"), ("basket", "Add to basket"))
CURRENCY = "£"


def _visitor(request):
    if not request.user.is_authenticated:
        ensure_session_key(request)
    return visitor_for_request(request)


class AssistantView(View):
    """The chat: the state as removable chips, the clarifying question with quick replies, products with reasons."""

    template_name = "catalog/assistant.html"

    def get(self, request):
        text = request.GET.get("q", "").strip()
        if text:
            return self.turn(request, lambda chat: conversation.take_turn(chat, text), new=True, request_text=text)
        chat = self.current(request)
        return self.page(request, conversation.latest(chat) if chat else None)

    def post(self, request):
        action = request.POST.get("action", "message")
        if action == "clear":
            deleted = conversation.clear(_visitor(request))
            request.session.pop(SESSION_KEY, None)
            return self.page(request, None, notice="Deleted %d conversation(s)." % deleted)
        if action == "start":
            chat = self.current(request) or self.new_conversation(request)
            return JsonResponse({"conversation": str(chat.pk), "turns_url": _turns_url(chat)}, status=201)
        if action == "remove":
            kind, value = request.POST.get("kind", ""), request.POST.get("value", "")
            return self.turn(request, lambda chat: conversation.without_constraint(chat, kind, value))
        if action == "feedback":
            feedback = {"item": request.POST.get("item", ""), "action": request.POST.get("feedback", "")}
            return self.turn(request, lambda chat: _feedback_turn(request, chat, feedback))
        message = "start over" if action == "start_over" else request.POST.get("message", "")
        return self.turn(request, lambda chat: conversation.take_turn(chat, message))

    def current(self, request):
        """The visitor's conversation kept in the session, or ``None`` (none yet, or deleted)."""
        chat_id = request.session.get(SESSION_KEY)
        if not chat_id:
            return None
        try:
            return conversation.get(chat_id, _visitor(request))
        except conversation.ConversationNotFound:
            request.session.pop(SESSION_KEY, None)
            return None

    def turn(self, request, step, *, new: bool = False, request_text: str = ""):
        """Run one turn (``step(conversation)``) of the current conversation (a new one if none) and show it."""
        chat = None if new else self.current(request)
        if chat is None:
            chat = self.new_conversation(request)
        try:
            return self.page(request, step(chat))
        except RecommendationError as exc:
            error, status = str(exc), 400
        except (SpaceNotReady, GenerationError) as exc:
            logger.warning("Assistant unavailable: %s", exc)
            error, status = "The assistant is not available right now.", 503
        return self.page(request, conversation.latest(chat), error=error, status=status, request_text=request_text)

    def new_conversation(self, request):
        """A new conversation of the visitor, kept as their current one."""
        chat = conversation.start(_visitor(request))
        request.session[SESSION_KEY] = str(chat.pk)
        return chat

    def page(self, request, result, *, error: str = "", notice: str = "", status: int = 200, request_text: str = ""):
        context = {
            "result": result,
            "error": error,
            "notice": notice,
            "max_chars": ASSISTANT_REQUEST_MAX_CHARS,
            "request_text": request_text,
            "feedback_buttons": FEEDBACK_BUTTONS,
            "currency": CURRENCY,
            "turns_url": _turns_url(result.conversation) if result is not None else "",
        }
        if result is not None:
            context["chips"] = [_displayed(chip) for chip in result.state.chips()]
            context["cards"] = _cards(result)
        return TemplateResponse(request, self.template_name, context, status=status)


def _turns_url(chat) -> str:
    """The API endpoint the page's script posts the conversation's turns to (as a stream)."""
    return reverse("ragrec_api:conversation-turns", args=[chat.pk])


def _feedback_turn(request, chat, feedback: dict):
    """A feedback turn; after "add to basket" (accepted: the product was shown), the product goes into the shop's
    basket as the product page's button puts it there (an "add_to_cart" event, source "assistant")."""
    result = conversation.take_turn(chat, feedback=feedback)
    if feedback["action"] == "basket":
        _put_in_basket(request, feedback["item"])
    return result


def _put_in_basket(request, key: str) -> None:
    product = Product.objects.active().filter(pk=int(key)).first() if key.isdigit() and len(key) < 19 else None
    if product is None or not product.in_stock:
        messages.error(request, "Sorry, this product cannot be added to your basket now.")
        return
    try:
        Cart(request.session).add(product)
    except ValueError as exc:  # the basket is full
        messages.error(request, str(exc))
        return
    event = EventInput(event="add_to_cart", item=str(product.pk), source="assistant", **visitor_fields(request))
    record(request, [event], "an add to cart of product %s" % product.pk)
    messages.success(request, "Added %s to your basket." % product.title)


def _displayed(chip: dict) -> dict:
    """A state chip with its label as the shop writes prices."""
    if chip["kind"] == "min_price":
        return {**chip, "label": "from %s%s" % (CURRENCY, chip["value"])}
    if chip["kind"] == "max_price":
        return {**chip, "label": "up to %s%s" % (CURRENCY, chip["value"])}
    return chip


def _cards(result) -> list[dict]:
    """One card per shown product: the shop's product (picture, link) when it still exists, and its reasons."""
    keys = [rec.item.key for rec in result.products]
    products = {str(p.pk): p for p in Product.objects.filter(pk__in=[k for k in keys if k.isdigit()])}
    return [
        {
            "key": rec.item.key,
            "title": rec.item.title,
            "price": rec.item.price,
            "product": products.get(rec.item.key),
            "url": rec.item.url,
            "reasons": result.reasons.get(rec.item.key, []),
        }
        for rec in result.products
    ]
