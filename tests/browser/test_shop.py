"""The demo shop in a real browser: recommendations, search, basket and checkout, description review."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count

from ragrec_django.models import DescriptionDraft, Interaction, PublishedDescription

pytestmark = pytest.mark.browser


def expect(target):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def section(page, recommender: str):
    return page.locator('[data-ragrec-recommender="%s"]' % recommender)


def best_co_purchased(shop):
    """The product that appears in the most multi-item orders of the seeded history."""
    baskets = (
        Interaction.objects.filter(event="purchase")
        .exclude(order_id="")
        .values("order_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values("order_id")
    )
    row = (
        Interaction.objects.filter(event="purchase", order_id__in=baskets)
        .values("item__key")
        .annotate(n=Count("order_id", distinct=True))
        .order_by("-n", "item__key")
        .first()
    )
    return shop.get(pk=int(row["item__key"]))


def run_action(page, live_server, product, action: str) -> None:
    """In the review queue, select the draft of ``product`` and run an admin action on it."""
    page.goto(live_server.url + "/admin/ragrec_django/descriptiondraft/")
    page.get_by_role("row").filter(has_text=product.title).get_by_role("checkbox").check()
    page.get_by_label("Action:").select_option(label=action)
    page.get_by_role("button", name="Go").click()


def test_shopper_logs_in_sees_recommendations_and_checks_out(live_server, shop, browser, screenshot):
    page = browser("alice")
    page.goto(live_server.url + "/")
    expect(section(page, "trending").locator(".ragrec-card")).to_have_count(4)
    expect(section(page, "for_you")).to_have_count(0)  # a new visitor has no history

    # The demo bar leads to the one-click login page.
    page.get_by_role("link", name="Log in as a demo shopper").click()
    expect(page.get_by_role("heading", name="Log in as a demo user")).to_be_visible()
    screenshot(page, "demo-login")
    page.get_by_role("button", name="Log in as alice").click()
    expect(page.get_by_text("You are logged in as alice.")).to_be_visible()
    expect(page.get_by_text("Hello, Alice")).to_be_visible()

    # Home: "For you" from Alice's history, each card with its reason; trending for everyone.
    for_you = section(page, "for_you")
    expect(for_you.get_by_role("heading", name="For you")).to_be_visible()
    expect(for_you.locator(".ragrec-card").first).to_be_visible()
    # Her repeat purchases, what is bought with them and items like those she viewed, each saying which.
    expect(for_you.locator(".ragrec-reason").first).to_have_text(
        re.compile(r"^(You bought this before|Bought with |Because you viewed )")
    )
    expect(section(page, "trending").locator(".ragrec-reason").first).to_have_text("Trending now")
    screenshot(page, "home")

    # Product page: similar items and bought-together items, with reasons.
    product = best_co_purchased(shop)
    page.goto(live_server.url + product.get_absolute_url())
    expect(page.get_by_role("heading", level=1)).to_have_text(product.title)
    similar = section(page, "similar")
    expect(similar.get_by_role("heading", name="Similar items")).to_be_visible()
    expect(similar.locator(".ragrec-reason").first).to_have_text("Similar to %s" % product.title)
    together = section(page, "bought_together")
    expect(together.locator(".ragrec-reason").first).to_have_text("Bought with %s" % product.title)
    screenshot(page, "product")

    # Add to basket: the header counts it and an add_to_cart event is recorded for Alice.
    alice = get_user_model().objects.get(username="alice")
    before = Interaction.objects.filter(event="add_to_cart", user=alice, item__key=str(product.pk)).count()
    page.get_by_label("Quantity").fill("2")
    page.get_by_role("button", name="Add to basket").click()
    expect(page.get_by_text("Added %s to your basket." % product.title)).to_be_visible()
    expect(page.locator(".cart-count")).to_contain_text("2")
    added = Interaction.objects.filter(event="add_to_cart", user=alice, item__key=str(product.pk)).order_by("-id")
    assert added.count() == before + 1 and added.first().quantity == 2 and added.first().source == "product_page"

    # Basket, checkout: one purchase event per line, sharing the order id.
    page.get_by_role("link", name="Basket").click()
    expect(page.get_by_role("heading", name="Your basket", exact=True)).to_be_visible()
    expect(page.locator(".cart-total")).to_have_text("£%s" % (product.price * 2))
    screenshot(page, "basket")
    page.get_by_role("link", name="Go to checkout").click()
    page.get_by_role("button", name="Place order").click()
    expect(page.get_by_role("heading", name="Thank you for your order")).to_be_visible()
    order_id = page.locator(".order-id").inner_text()
    bought = Interaction.objects.filter(event="purchase", order_id=order_id)
    assert [(e.user_id, e.item.key, e.quantity) for e in bought] == [(alice.pk, str(product.pk), 2)]
    expect(page.locator(".cart-count")).to_contain_text("0")


def test_text_search_and_photo_search(live_server, shop, browser, screenshot):
    page = browser()
    page.goto(live_server.url + "/")
    page.get_by_role("combobox", name="Search products").fill("stoneware mug")
    page.get_by_role("combobox", name="Search products").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Results for “stoneware mug”")
    best = page.get_by_role("region", name="Best matches")
    results = best.locator(".ragrec-card")
    expect(results.first).to_be_visible()
    expect(results.first).to_contain_text("Mug")
    # "stoneware" is a material of the catalogue, "mug" its category: the reason names what matched (issue 18).
    expect(best.locator(".ragrec-reason").first).to_have_text(re.compile(r"^(Stoneware, )?Mugs$"))
    screenshot(page, "search")

    # Search by photo: upload one of the shop's own pictures.
    mug = shop.filter(category__slug="mugs").exclude(image="").first()
    page.get_by_label("Photo of a product").set_input_files(str(Path(settings.MEDIA_ROOT) / mug.image.name))
    page.get_by_role("button", name="Search by photo").click()
    photo = page.get_by_role("region", name="Items like your photo")
    expect(photo.locator(".ragrec-card").first).to_be_visible()
    expect(photo.locator(".ragrec-reason").first).to_have_text("Looks like your photo")
    screenshot(page, "photo-search")


def test_assistant_answers_with_products(live_server, shop, browser, screenshot):
    page = browser()
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Ask the assistant").click()
    page.get_by_label("What are you looking for?").fill("a stoneware mug under 25")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("heading", name="Answer", exact=True)).to_be_visible()
    expect(page.locator(".assistant-chip-label").filter(has_text="up to £25")).to_have_count(1)
    cards = page.locator(".assistant-products .card")
    expect(cards.first).to_be_visible()
    expect(cards.first).to_contain_text("Mug")
    screenshot(page, "assistant")


def test_reviewer_approves_and_manager_publishes_a_description(live_server, shop, browser, screenshot):
    from ragrec_django.services import descriptions

    product = shop.filter(category__slug="mugs").order_by("pk").first()
    draft = descriptions.generate_draft(str(product.pk))
    edit = " Reviewed by Riley in the browser test."

    # The reviewer signs in through the admin login with the printed credentials, edits the draft, approves it.
    reviewer = browser("reviewer")
    reviewer.goto(live_server.url + "/admin/ragrec_django/descriptiondraft/")
    reviewer.get_by_label("Username").fill("reviewer")
    reviewer.get_by_label("Password").fill("demo")
    reviewer.get_by_role("button", name="Log in").click()
    reviewer.get_by_role("link", name=product.title).click()
    expect(reviewer.get_by_role("heading", name="Review", exact=True)).to_be_visible()
    reviewer.locator("#id_text").fill(draft.text + edit)
    reviewer.get_by_role("button", name="Save and continue editing").click()
    expect(reviewer.locator(".ragrec-sbs")).to_contain_text("Reviewed by Riley")
    screenshot(reviewer, "admin-review")
    # Approve with the change page's own button (it posts the change form, edits included, to the review step).
    reviewer.get_by_role("button", name="Approve", exact=True).click()
    expect(reviewer.get_by_text("Approved. Publishing is a separate step.")).to_be_visible()
    run_action(reviewer, live_server, product, "Publish selected approved drafts")  # not the reviewer's to do
    expect(reviewer.get_by_text("You need the 'publish_descriptiondraft' permission.")).to_be_visible()
    draft.refresh_from_db()
    assert draft.status == DescriptionDraft.Status.APPROVED and draft.text.endswith(edit.strip())
    assert draft.events.filter(action="edited", user__username="reviewer").exists()

    # The manager (one click on the demo login page) publishes it.
    manager = browser("manager")
    manager.goto(live_server.url + "/demo/login/")
    manager.get_by_role("button", name="Log in as manager").click()
    expect(manager.get_by_role("heading", name="Site administration")).to_be_visible()
    run_action(manager, live_server, product, "Publish selected approved drafts")
    expect(manager.get_by_text("1 draft(s) published.")).to_be_visible()
    assert PublishedDescription.objects.get(item__key=str(product.pk), is_current=True).text == draft.text

    # The storefront shows the published text.
    shopper = browser("shopper")
    shopper.goto(live_server.url + product.get_absolute_url())
    expect(shopper.locator(".description")).to_contain_text("Reviewed by Riley in the browser test.")
