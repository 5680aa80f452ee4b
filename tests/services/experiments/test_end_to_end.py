"""Through the demo shop's real pages: a shown list, a click through the redirect, an add to cart, the report."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from ragrec_django.models import Impression, Interaction, Item
from ragrec_django.services import experiments

pytestmark = pytest.mark.django_db


def trending_links(html):
    start = html.index('data-ragrec-recommender="trending"')
    section = html[start : html.index("</section>", start)]
    return [part.split('"', 1)[0] for part in section.split('class="ragrec-link" href="')[1:]]


def test_home_page_click_and_add_to_cart_is_a_conversion_of_the_variant(client, shop, experiment_settings):
    session = client.session
    session.save()
    html = client.get(reverse("catalog:home")).content.decode()
    impression = Impression.objects.get(recommender="trending")
    assert impression.session_key == session.session_key
    expected = experiments.configured_experiments()[0].variant_for("session:%s" % session.session_key)
    assert (impression.experiment, impression.variant, impression.config) == (
        "ranking-test",
        expected.name,
        expected.config,
    )

    link = trending_links(html)[0]
    page = client.get(link, follow=True)
    item = Item.objects.get(key=impression.item_keys[0])
    assert page.redirect_chain == [(item.url, 302)] and page.status_code == 200
    client.post(reverse("catalog:cart_add"), {"product": item.key, "quantity": 1})
    assert Interaction.objects.filter(event="add_to_cart", session_key=session.session_key, item=item).exists()

    today = timezone.localdate()  # from yesterday: a run across midnight still finds the list
    (row,) = [r for r in experiments.report(today - timedelta(days=1), today).summary if r.recommender == "trending"]
    assert (row.variant, row.counts.impressions, row.counts.clicked, row.counts.converted) == (expected.name, 1, 1, 1)
