"""Every HTML view of the demo and of the plugin answers hostile input with a 4xx or a page, never a 5xx.

The views are enumerated from the URLconf (the admin and the DRF endpoints aside: tests/hardening/
test_schemathesis.py fuzzes the API from its schema), so a view added later is fuzzed too; one whose URL
takes arguments needs an example in ``EXAMPLES`` (the test says so). Each is asked with every hostile
query string of ``HOSTILE`` in every parameter the storefront reads, and the views that take forms get
the same values posted. The reported case (issue 19): ``/search/?q=mug%00red``, ``/search/?q=%00`` and
``/assistant/?q=%00`` crashed in PostgreSQL; text is now checked once in the services
(``services.inputs.checked_text``), so the pages, the API and the template tags refuse it alike.
Found by this test: a NUL in the demo login's form and in the session cookie did the same.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import pytest
from django.template import engines
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.views import APIView

from ragrec_django.models import Impression
from shop_demo.catalog.models import Category

pytestmark = pytest.mark.django_db

#: Raw (already percent-encoded) query values.
HOSTILE = {
    "NUL inside": "mug%00red",
    "NUL alone": "%00",
    "UTF-8 of a lone surrogate": "%ED%A0%80",
    "JSON surrogate escape": quote("\\ud800\\udfff"),
    "invalid UTF-8": "%FF%FE%C0%80",
    "100 KB": "x" * 100_000,
    "100 KB of emoji": quote("🙂" * 25_000),
    "unicode": quote("ＭＵＧ ʍnɓ \u202eevil\u202c \u200b ﷽"),
    "fullwidth markup": quote("＜script＞alert(1)＜/script＞"),
    "SQL": quote("' OR 1=1; DROP TABLE ragrec_django_item; --"),
    "HTML": quote('"><img src=x onerror=alert(1)><script>alert(1)</script>'),
    "control characters": "%01%02%1B%7F",
    "encoded percent": "%25%30%30",
}
#: Every query parameter a storefront or plugin view reads.
PARAMETERS = ("q", "page", "next", "k", "config", "session", "category", "items", "order")
#: Form fields of the views that take POSTs.
FORM_FIELDS = ("product", "quantity", "source", "next", "remove", "order", "username", "quantity-1")


def html_views(patterns=None, prefix: str = "", namespace: str = "") -> dict[str, str]:
    """{URL name: route} of every view of the URLconf but the admin's and DRF's."""
    found = {}
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue
            inner = ":".join(part for part in (namespace, entry.namespace) if part)
            found.update(html_views(entry.url_patterns, prefix + str(entry.pattern), inner))
            continue
        view = getattr(entry.callback, "cls", None)
        if isinstance(entry, URLPattern) and not (view and issubclass(view, APIView)):
            name = ":".join(part for part in (namespace, entry.name) if part)
            found[name] = prefix + str(entry.pattern)
    return found


@pytest.fixture
def examples(catalogue):
    """Arguments of the views whose URL takes some: a real product, category, impression, picture."""
    mug = catalogue["Red ceramic coffee mug"]
    impression = Impression.objects.create(recommender="trending", config="default", item_keys=[str(mug.pk)])
    return {
        "catalog:category": {"slug": Category.objects.get(name="Mugs").slug},
        "catalog:product": {"slug": mug.slug},
        "ragrec_api:click": {"impression": impression.pk, "key": str(mug.pk)},
        "media": {"path": mug.image.name},
    }


def test_every_html_view_is_fuzzed(examples):
    """A new view with URL arguments must get an example here, so that it is fuzzed too."""
    needing = {name for name, route in html_views().items() if "<" in route or "(?P" in route}
    assert needing == set(examples), "add URL arguments for %s to the examples fixture" % (needing ^ set(examples))


def urls(examples) -> dict[str, str]:
    return {name: reverse(name, kwargs=examples.get(name)) for name in html_views()}


@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE))
def test_no_html_view_answers_hostile_query_strings_with_a_5xx(client, examples, hostile, settings):
    settings.DEBUG = True  # the demo's own pages (one-click login, media) exist while DEBUG
    query = "&".join("%s=%s" % (name, HOSTILE[hostile]) for name in PARAMETERS)
    for name, url in urls(examples).items():
        response = client.get(url + "?" + query)
        assert response.status_code < 500, (name, hostile, response.status_code)


@pytest.mark.parametrize("hostile", list(HOSTILE), ids=list(HOSTILE))
def test_no_form_answers_hostile_fields_with_a_5xx(client, examples, hostile, settings):
    settings.DEBUG = True
    body = "&".join("%s=%s" % (name, HOSTILE[hostile]) for name in FORM_FIELDS)
    client.get(reverse("catalog:home"))  # a session, as a shopper has
    for name, url in urls(examples).items():
        response = client.post(url, body, content_type="application/x-www-form-urlencoded")
        assert response.status_code < 500, (name, hostile, response.status_code)


#: Cookie values as a client may send them (Python's cookie parser unquotes octal escapes: \\000 is a NUL).
HOSTILE_COOKIES = [
    '"abcdefgh\\000ij"',
    '"\\355\\240\\200abcdefghij"',
    "abcdefgh%00",
    "x" * 4000,
    '"\\377\\376abcdefgh"',
]


@pytest.mark.parametrize("cookie", HOSTILE_COOKIES)
def test_no_html_view_answers_hostile_cookies_with_a_5xx(client, examples, cookie, settings):
    """A NUL in the session cookie reached PostgreSQL through Django's session store (shop_demo/sessions/)."""
    settings.DEBUG = True
    header = "%s=%s; %s=%s" % (settings.SESSION_COOKIE_NAME, cookie, settings.CSRF_COOKIE_NAME, cookie)
    for name, url in urls(examples).items():
        response = client.get(url, HTTP_COOKIE=header)
        assert response.status_code < 500, (name, cookie, response.status_code)


@pytest.mark.parametrize(
    "url, message",
    [
        ("/search/?q=mug%00red", "The search query contains a NUL character."),
        ("/search/?q=%00", "The search query contains a NUL character."),
        ("/assistant/?q=%00", "contains a NUL character."),  # the page's conversation: "The message ..."
        ("/assistant/?q=" + "x" * 501, "is longer than 500 characters."),
    ],
)
def test_storefront_and_api_refuse_unusable_text_alike(client, api, catalogue, url, message):
    """The reported 500s are 400s with the services' message, as the REST API answers the same text."""
    response = client.get(url)
    assert response.status_code == 400
    assert message in response.content.decode()
    api_url = reverse("ragrec_api:%s" % url.split("/")[1]) + url[url.index("?") :]
    assert api.get(api_url).status_code == 400


def test_template_tags_refuse_the_same_text_without_an_error_in_the_log(catalogue, rf, caplog):
    template = engines["django"].from_string(
        "{% load ragrec %}{% ragrec_search query k=3 as recs %}{% for r in recs %}{{ r.item.title }}{% endfor %}"
    )
    with caplog.at_level(logging.WARNING, logger="ragrec_django.templatetags"):
        for query in ("mug\x00red", "mug\ud800", "x" * 301):
            assert template.render({"query": query, "request": rf.get("/")}) == ""
    assert [record.levelname for record in caplog.records] == ["WARNING"] * 3  # refused, not a traceback
    assert "NUL character" in caplog.records[0].getMessage()
