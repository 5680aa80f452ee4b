"""Replays do not inflate what the dashboard reports (issue 19, item 5).

The reported case: 40 clicks on one impression were all stored (4000% CTR), and each GET of a click
link added one. Now at most one click per (impression, item) is stored (a database constraint, enforced
by the click redirect, the events API and the service alike), and a conversion replayed (the same item,
event and order) counts once, so CTR and conversion rate are the same after 40 replays as after one.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from ragrec_django.models import Impression, Interaction, Item
from ragrec_django.services import experiments
from ragrec_django.services.results import Visitor

pytestmark = pytest.mark.django_db

REPLAYS = 40


@pytest.fixture
def shown(api, catalogue):
    """A trending list shown to the visitor "v" through the API: (its impression, the items' keys)."""
    for title in ("Red ceramic coffee mug", "Brass desk lamp", "Red cotton t-shirt"):
        Interaction.objects.create(event="view", item_id=_item_id(catalogue[title]), session_key="seed-%s" % title)
    body = api.get(reverse("ragrec_api:trending"), {"k": 3, "session": "v"}).json()
    return Impression.objects.get(pk=body["impression_id"]), [r["id"] for r in body["results"]]


def _item_id(product):
    return Item.objects.get(key=str(product.pk)).pk


def report_today():
    today = timezone.localdate()
    return experiments.report(today, today).summary


def test_forty_replayed_clicks_and_conversions_count_once(client, api, shown):
    impression, keys = shown
    events = reverse("ragrec_api:events") + "?session=v"
    click = {"event": "click", "item": keys[0], "impression_id": str(impression.pk)}
    receipts = [api.post(events, click, format="json") for _ in range(REPLAYS)]
    assert receipts[0].status_code == 201
    assert {(r.status_code, r.json()["duplicates"]) for r in receipts[1:]} == {(200, 1)}
    link = reverse("ragrec_api:click", args=[impression.pk, keys[0]])
    assert {client.get(link).status_code for _ in range(REPLAYS)} == {302}  # the shopper is still sent on
    assert Interaction.objects.filter(event="click", impression=impression).count() == 1
    purchase = {"event": "purchase", "item": keys[0], "order_id": "o1"}
    for _ in range(REPLAYS):  # a client retrying without idempotency keys
        assert api.post(events, purchase, format="json").status_code == 201

    (row,) = report_today()
    counts = row.counts
    assert (counts.impressions, counts.clicked, counts.clicks, counts.converted, counts.conversions) == (1, 1, 1, 1, 1)
    assert counts.ctr == 1.0 and counts.conversion_rate == 1.0


def test_a_second_item_of_the_list_is_a_second_click(api, shown):
    impression, keys = shown
    events = reverse("ragrec_api:events") + "?session=v"
    batch = [
        {"event": "click", "item": key, "impression_id": str(impression.pk)} for key in (keys[0], keys[1], keys[0])
    ]
    assert api.post(events, batch, format="json").json() == {"accepted": 3, "stored": 2, "duplicates": 1}
    (row,) = report_today()
    assert (row.counts.clicked, row.counts.clicks) == (1, 2)


def test_the_service_and_the_database_keep_one_click(shown):
    impression, keys = shown
    target = Item.objects.get(key=keys[0])
    first = experiments.record_click(impression, target, Visitor(session_key="v"))
    assert experiments.record_click(impression, target, Visitor(session_key="v")) == first
    with pytest.raises(IntegrityError), transaction.atomic():
        Interaction.objects.create(event="click", item=target, impression=impression, session_key="v")
    assert Interaction.objects.filter(event="click").count() == 1
