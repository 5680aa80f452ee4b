"""The demo's search page in a real browser: suggestions while typing, reasons naming what matched, facets with
counts, sorting, and the notice when nothing matches (no CDN: the page's own script and styles only)."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

pytestmark = pytest.mark.browser


def expect(target):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def products(queryset) -> int:
    """How many products a search shows for these items: the variants of one product (its parent) once."""
    return len({product.parent_id or product.pk for product in queryset})


def test_suggestions_facets_sorting_and_the_no_results_notice(live_server, shop, browser, screenshot):
    page = browser()
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(live_server.url + "/")

    # Suggestions while typing: the words completed, then products; Down and Enter search the first.
    box = page.get_by_role("combobox", name="Search products")
    box.press_sequentially("ceram", delay=40)
    options = page.get_by_role("listbox", name="Suggestions").get_by_role("option")
    expect(options.first).to_contain_text("ceramic")
    expect(box).to_have_attribute("aria-expanded", "true")
    box.press("ArrowDown")
    expect(options.first).to_have_attribute("aria-selected", "true")
    box.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Results for “ceramic”")

    # A category and a price in the query: every result is a mug under £40 (a product's variants shown once),
    # and says so.
    page.goto(live_server.url + "/search/?q=mug+under+40")
    results = page.get_by_role("region", name="Best matches")
    expect(results.locator(".ragrec-card").first).to_be_visible()
    mugs = shop.filter(category__slug="mugs", price__lte=40)
    expect(results.locator(".ragrec-card")).to_have_count(products(mugs))
    expect(results.locator(".ragrec-reason").first).to_have_text("Mugs, under £40")

    # Facets count the results; choosing a colour keeps only that colour, and the choice can be removed.
    facets = page.get_by_role("complementary", name="Narrow the results")
    expect(facets.get_by_role("heading", name="Category")).to_be_visible()
    expect(facets.get_by_role("link", name=re.compile(r"^Mugs %d$" % products(mugs)))).to_be_visible()
    colour = facets.locator("section", has=page.get_by_role("heading", name="Colour")).locator(".facet-value").first
    label, count = colour.locator(".facet-label").inner_text(), int(colour.locator(".facet-count").inner_text())
    assert count == products(mugs.filter(colour=label))
    screenshot(page, "search-facets")
    colour.click()
    expect(page).to_have_url(re.compile(r"filter=colour%3A"))
    expect(results.locator(".ragrec-card")).to_have_count(count)
    shown = set(results.locator(".ragrec-item-title").all_inner_texts())
    assert shown <= set(mugs.filter(colour=label).values_list("title", flat=True))
    page.get_by_role("link", name="Remove colour: %s" % label).click()
    expect(results.locator(".ragrec-card")).to_have_count(products(mugs))

    # Sorting by price.
    page.get_by_role("navigation", name="Sort the results").get_by_role("link", name="Price: low to high").click()
    expect(page).to_have_url(re.compile(r"sort=price_asc"))
    shown = [Decimal(t.strip("£")) for t in results.locator(".ragrec-price").all_inner_texts()]
    assert shown == sorted(shown) and len(shown) == products(mugs)

    # Nothing under £1: the price gives way, and the page says so.
    page.goto(live_server.url + "/search/?q=mug+under+1")
    expect(page.get_by_role("status").filter(has_text="No results")).to_have_text(
        "No results for 'mug under 1'; showing 'mug'."
    )
    expect(results.locator(".ragrec-card").first).to_be_visible()

    # Everything came from this server (no CDN).
    assert requests and all(url.startswith(live_server.url) for url in requests), [
        url for url in requests if not url.startswith(live_server.url)
    ]
