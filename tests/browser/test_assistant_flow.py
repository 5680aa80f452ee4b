"""The issue's multi-turn session in a real browser, answered as a stream: a vague request, the clarifying
question, a quick reply, a dislike, "cheaper", then "add to basket" (screenshots: docs/screenshots/conversation-*)."""

from __future__ import annotations

import pytest

from ragrec_django.models import Turn
from ragrec_django.services import conversation

pytestmark = pytest.mark.browser


def expect(target):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def streamed_turn(page, act) -> dict:
    """Do ``act()``; the turn it posts must be answered as Server-Sent Events. Returns the JSON body it sent."""
    with page.expect_response(lambda response: "/turns/" in response.url) as answer:
        act()
    response = answer.value
    assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
    response.finished()
    return response.request.post_data_json


def card_keys(page) -> list[str]:
    return page.locator(".assistant-products .card").evaluate_all("cards => cards.map(c => c.dataset.itemKey)")


def test_request_question_quick_reply_dislike_cheaper_basket(live_server, shop, browser, screenshot):
    page = browser("shopper")
    page.goto(live_server.url + "/assistant/")
    chips = page.locator(".assistant-chip-label")

    def send():
        page.get_by_role("textbox", name="What are you looking for?").fill("a gift")
        page.get_by_role("button", name="Send").click()

    assert streamed_turn(page, send) == {"message": "a gift"}
    expect(page.locator(".assistant-question")).to_have_text(conversation.VAGUE_QUESTION)
    replies = page.locator(".assistant-quick-replies button")
    expect(replies.first).to_be_visible()
    category = replies.first.inner_text()
    screenshot(page, "conversation-1-question")

    assert streamed_turn(page, replies.first.click) == {"message": category}
    expect(chips).to_contain_text([category])
    expect(page.get_by_role("heading", name="Products in the answer")).to_be_visible()
    first_key = card_keys(page)[0]
    screenshot(page, "conversation-2-products")

    first_card = page.locator(".assistant-products .card").first
    sent = streamed_turn(page, first_card.get_by_role("button", name="Dislike").first.click)
    assert sent == {"feedback": {"item": first_key, "action": "dislike"}}
    expect(page.locator('.assistant-products .card[data-item-key="%s"]' % first_key)).to_have_count(0)

    page.locator(".assistant-quick-replies").get_by_role("button", name="Cheaper").click()
    expect(page.locator('.assistant-chip[data-chip-kind="max_price"]')).to_have_count(1)
    expect(page.locator(".assistant-products .card").first).to_be_visible()
    screenshot(page, "conversation-3-cheaper")
    basket_key = card_keys(page)[0]

    # "Add to basket" is a plain form: the shop's basket gets the product, the conversation the feedback.
    page.locator(".assistant-products .card").first.get_by_role("button", name="Add to basket").click()
    expect(page.locator(".cart-count")).to_have_attribute("data-cart-count", "1")
    screenshot(page, "conversation-4-basket")
    turns = list(Turn.objects.order_by("number").values_list("message", "feedback"))
    assert [message for message, _ in turns[:2]] == ["a gift", category]
    assert turns[2][1] == {"item": first_key, "action": "dislike"} and turns[3][0] == "Cheaper"
    assert turns[4][1] == {"item": basket_key, "action": "basket"}
