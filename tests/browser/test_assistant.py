"""The shopping assistant in a real browser: two turns of one conversation, the state chips follow."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def expect(target):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def send(page, message: str) -> None:
    page.get_by_role("textbox").fill(message)
    page.get_by_role("button", name="Send").click()


def test_two_turns_update_the_chips(live_server, shop, browser, screenshot):
    page = browser("shopper")
    page.goto(live_server.url + "/assistant/")
    send(page, "a gift for my dad under 60")
    chips = page.locator(".assistant-chip-label")
    expect(chips).to_have_text(["for dad", "gift", "up to £60"])
    expect(page.get_by_role("heading", name="Products in the answer")).to_be_visible()

    send(page, "not red")
    expect(chips).to_have_text(["for dad", "gift", "not red", "up to £60"])
    expect(page.locator(".assistant-products .card").first).to_be_visible()
    screenshot(page, "assistant-conversation")

    page.get_by_role("button", name="Remove not red").click()
    expect(chips).to_have_text(["for dad", "gift", "up to £60"])
    page.locator(".assistant-controls").get_by_role("button", name="Start over").click()
    expect(chips).to_have_count(0)
