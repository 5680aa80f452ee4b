"""One client cannot put an item at the top of trending or of "bought together" (issue 19, item 6).

The reported case: 500 view events under 500 invented session keys put any item first. Now:

* events the REST API receives for a session key the server never issued are stored (that visitor's
  history) but not ``verified``: they count toward nobody's trending or co-purchases;
* one source (the client address, kept as a keyed hash in ``origin``) counts at most
  ``POPULARITY_MAX_PER_SOURCE`` visitors per item in trending and orders per item in co-purchases,
  however many real sessions it opens.

So the burst moves the item 0 places, and a burst of real sessions from one address at most
``POPULARITY_MAX_PER_SOURCE`` places in a list whose items are one visitor apart.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import get_random_string

from ragrec_django.conf import ragrec_settings
from ragrec_django.models import Interaction
from ragrec_django.services import history
from ragrec_django.services.events import EventInput, record_events

pytestmark = pytest.mark.django_db

BURST = 500
HONEST_ITEMS = 8


@pytest.fixture
def ranked(catalogue):
    """Trending of honest visitors (recorded by the server): the i-th item viewed by 8 - i visitors, one apart."""
    products = sorted(catalogue.values(), key=lambda p: p.pk)[:HONEST_ITEMS]
    for rank, product in enumerate(products):
        record_events(
            [
                EventInput(event="view", item=str(product.pk), session_key="honest-%d-%d" % (rank, n))
                for n in range(HONEST_ITEMS - rank)
            ]
        )
    return products


def place(product) -> int:
    keys = [r.item.key for r in history.trending(k=20)]
    return keys.index(str(product.pk)) + 1 if str(product.pk) in keys else len(keys) + 1


def issued_sessions(count: int) -> list[str]:
    """Session keys the server issued (rows of Django's session store), as a client opening sessions gets."""
    expires = timezone.now() + timedelta(days=1)
    keys = [get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(count)]
    Session.objects.bulk_create([Session(session_key=key, session_data="", expire_date=expires) for key in keys])
    return keys


def burst(api, item_key: str, sessions: list[str], event: str = "view"):
    rows = [{"event": event, "item": item_key, "session_key": key} for key in sessions]
    response = api.post(reverse("ragrec_api:events"), rows, format="json", REMOTE_ADDR="203.0.113.66")
    assert response.status_code == 201, response.content
    return response


def test_views_under_invented_session_keys_move_an_item_no_place(api, ranked):
    target = ranked[-1]
    assert place(target) == HONEST_ITEMS
    burst(api, str(target.pk), ["invented-%d" % n for n in range(BURST)])
    assert Interaction.objects.filter(item__key=str(target.pk), verified=False).count() == BURST  # stored...
    assert place(target) == HONEST_ITEMS  # ...but counted for no one else


def test_views_under_real_sessions_of_one_address_move_an_item_at_most_the_cap(api, ranked):
    cap = ragrec_settings.POPULARITY_MAX_PER_SOURCE
    target = ranked[-1]
    burst(api, str(target.pk), issued_sessions(BURST))
    moved = HONEST_ITEMS - place(target)
    assert 0 < moved <= cap  # they count (the sessions are real), as at most `cap` visitors


def test_sessions_opened_on_the_storefront_count_at_most_the_cap(client, ranked):
    """The demo's product page opens a session per cookie-less visit: one address still counts `cap` times."""
    cap = ragrec_settings.POPULARITY_MAX_PER_SOURCE
    target = ranked[-1]
    for _ in range(cap * 3):
        client.cookies.clear()
        assert client.get(target.get_absolute_url(), REMOTE_ADDR="203.0.113.67").status_code == 200
    assert Interaction.objects.filter(item__key=str(target.pk), verified=True).count() == 1 + cap * 3
    assert HONEST_ITEMS - place(target) <= cap


def test_purchases_of_invented_or_capped_sources_barely_move_bought_together(api, catalogue):
    lamp, kettle, target = (
        str(catalogue[t].pk) for t in ("Brass desk lamp", "Copper stovetop tea kettle", "Green linen shirt")
    )
    for n in range(3):  # honest: the lamp was bought with the kettle in 3 orders
        record_events(
            [
                EventInput(event="purchase", item=key, order_id="h%d" % n, session_key="h%d" % n)
                for key in (lamp, kettle)
            ]
        )

    def bought_with_lamp():
        """{item: orders bought with the lamp} (the content-based fill-up of the list aside)."""
        found = history.bought_together(lamp, k=5)
        return {r.item.key: r.components["co_purchases"] for r in found if "co_purchases" in r.components}

    invented = [
        {"event": "purchase", "item": key, "order_id": "x%d" % n, "session_key": "x%d" % n}
        for n in range(BURST // 2)
        for key in (lamp, target)
    ]
    response = api.post(reverse("ragrec_api:events"), invented, format="json", REMOTE_ADDR="203.0.113.66")
    assert response.status_code == 201
    assert target not in bought_with_lamp() and bought_with_lamp()[kettle] == 3

    sessions = issued_sessions(BURST // 2)
    real = [
        {"event": "purchase", "item": key, "order_id": "r%d" % n, "session_key": session}
        for n, session in enumerate(sessions)
        for key in (lamp, target)
    ]
    assert api.post(reverse("ragrec_api:events"), real, format="json", REMOTE_ADDR="203.0.113.66").status_code == 201
    assert bought_with_lamp()[target] == ragrec_settings.POPULARITY_MAX_PER_SOURCE  # 250 orders count as 5
