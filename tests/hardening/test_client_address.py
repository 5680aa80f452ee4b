"""The throttle counts the address the server really sees (issue 19, item 7), and the API authenticates by
session only unless the host asks for more ("Also reported": HTTP Basic was a password oracle).

The reported case: with ``NUM_PROXIES`` unset, DRF identifies an anonymous client by the whole
``X-Forwarded-For`` header, which the client writes, so a new value per request reset the throttle. Now
the header is read only with a proxy count (``services.events.client_address``), and the system check
``ragrec.W003`` warns when the settings trust a proxy's headers but set none.
"""

from __future__ import annotations

import base64

import pytest
from django.core import checks
from django.urls import reverse

from ragrec_django.checks import check_proxy_count

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_a_minute(settings):
    settings.RAGREC = {**settings.RAGREC, "API_THROTTLE_RATES": {"ragrec": "3/min"}}


def statuses(api, forwarded_for: list[str], remote: str = "203.0.113.5") -> list[int]:
    url = reverse("ragrec_api:trending")
    return [api.get(url, HTTP_X_FORWARDED_FOR=value, REMOTE_ADDR=remote).status_code for value in forwarded_for]


def test_a_new_forwarded_for_per_request_does_not_reset_the_throttle(api, three_a_minute):
    assert statuses(api, ["198.51.100.%d" % n for n in range(5)]) == [200, 200, 200, 429, 429]
    assert statuses(api, ["198.51.100.9"], remote="203.0.113.6") == [200]  # another peer: its own counter


def test_with_a_proxy_count_the_address_the_proxy_saw_is_the_client(api, three_a_minute, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # The client forges what it likes in front; the proxy appends the address it saw: that one counts.
    forged = ["forged-%d, 198.51.100.7" % n for n in range(5)]
    assert statuses(api, forged, remote="10.0.0.1") == [200, 200, 200, 429, 429]
    assert statuses(api, ["198.51.100.8"], remote="10.0.0.1") == [200]  # another client behind the same proxy


@pytest.mark.parametrize(
    "proxy_settings, warned",
    [
        ({}, False),
        ({"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https")}, True),
        ({"USE_X_FORWARDED_HOST": True}, True),
        ({"USE_X_FORWARDED_HOST": True, "NUM_PROXIES": 1}, False),
        ({"SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"), "NUM_PROXIES": 0}, False),
    ],
)
def test_trusting_proxy_headers_without_a_proxy_count_is_warned(settings, proxy_settings, warned):
    proxies = proxy_settings.pop("NUM_PROXIES", None)
    for name, value in proxy_settings.items():
        setattr(settings, name, value)
    settings.REST_FRAMEWORK = {key: value for key, value in settings.REST_FRAMEWORK.items() if key != "NUM_PROXIES"}
    if proxies is not None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": proxies}
    assert [(m.id, m.level) for m in check_proxy_count()] == ([("ragrec.W003", checks.WARNING)] if warned else [])
    registered = [m.id for m in checks.run_checks(tags=[checks.Tags.security])]  # what `manage.py check` runs
    assert ("ragrec.W003" in registered) == warned


# ---------------------------------------------------------------- authentication


def test_http_basic_is_off_unless_the_host_adds_it(api, django_user_model, settings):
    django_user_model.objects.create_user("ann", password="right")
    url = reverse("ragrec_api:for-you")
    for password in ("right", "wrong"):  # a wrong password is not even checked: no password oracle
        token = base64.b64encode(("ann:%s" % password).encode()).decode()
        response = api.get(url, HTTP_AUTHORIZATION="Basic " + token)
        assert response.status_code == 200 and response.json()["fallback"] == "trending"  # served as anonymous
    settings.RAGREC = {
        **settings.RAGREC,
        "API_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.SessionAuthentication",
            "rest_framework.authentication.BasicAuthentication",
        ],
    }
    response = api.get(url, HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"ann:wrong").decode())
    assert response.status_code == 403 and "Invalid username/password" in response.json()["detail"]  # checked now
