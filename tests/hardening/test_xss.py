"""XSS payloads in product data come out escaped from every template tag, the demo's pages and every
admin page of ragrec_django's models; a ``javascript:`` URL never becomes a link.

Product title, description, category and URL carry the payloads; they reach the Item mirror, the
embeddings, encoding failures, events, complements, description drafts, publications and generation
jobs through the real services, and every page is rendered as a superuser (who sees everything).
"""

from __future__ import annotations

import io
import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import AnonymousUser
from django.template import engines
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse

from ragrec_django import storage
from ragrec_django.models import ComplementPair, Item
from ragrec_django.services import descriptions, encoding
from ragrec_django.services.events import EventInput, record_events
from ragrec_django.tasks import enqueue_generation
from shop_demo.catalog.adapters import ProductAdapter
from shop_demo.catalog.models import Category, Product
from tests.ml.samples import build_samples

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE_BREAK = '"><img src=x onerror=alert(1)>'
JS_URL = "javascript:alert(document.cookie)"
RAW_PAYLOADS = (SCRIPT, ATTRIBUTE_BREAK, "<img src=x onerror=alert(1)>", "onerror=alert(1)>")
EVIL_TITLE = "Evil %s mug %s" % (SCRIPT, ATTRIBUTE_BREAK)
EVIL_CATEGORY = "Mugs %s" % SCRIPT


class JavascriptUrlAdapter(ProductAdapter):
    """A shop whose item URLs can be anything its data says: the evil mug links to javascript:."""

    def get_url(self, item):
        return JS_URL if item.title.startswith("Evil") else super().get_url(item)


def assert_clean(html: str, where: str, urls: bool = True) -> None:
    for payload in RAW_PAYLOADS:
        assert payload not in html, "%s: unescaped %r" % (where, payload)
    if not urls:
        return
    hrefs = re.findall(r"""(?:href|src|action|formaction)\s*=\s*["']?\s*(javascript:[^"'>\s]*)""", html, flags=re.I)
    assert not hrefs, "%s: javascript: URL in %s" % (where, hrefs)


@pytest.fixture
def evil(settings, catalogue, django_user_model):
    """The encoded catalogue, with one product whose every field is hostile, and history around it."""
    settings.RAGREC = {**settings.RAGREC, "ADAPTER": "tests.hardening.test_xss.JavascriptUrlAdapter"}
    category = Category.objects.get(name="Mugs")
    Category.objects.filter(pk=category.pk).update(name=EVIL_CATEGORY)
    product = catalogue["Red ceramic coffee mug"]
    Product.objects.filter(pk=product.pk).update(
        title=EVIL_TITLE,
        description="%s Made of %s. See %s" % (ATTRIBUTE_BREAK, SCRIPT, JS_URL),
        colour=SCRIPT,
        material=ATTRIBUTE_BREAK,
    )
    product.refresh_from_db()
    pks = [p.pk for p in catalogue.values()]
    for space in ("text", "image", "clip-text"):
        encoding.encode_items(space, pks, force=True)
    item = Item.objects.get(key=str(product.pk))
    assert item.title == EVIL_TITLE and item.category == EVIL_CATEGORY
    assert item.url == ""  # the mirror never keeps a javascript: URL (ItemAdapter.snapshot)

    # Everything the admin lists, each carrying the payloads.
    generation = storage.active_generation("image")
    storage.record_failures(generation, [(item.id, "", "bad image: %s" % SCRIPT)])
    blue = Item.objects.get(key=str(catalogue["Blue ceramic coffee mug"].pk))
    record_events(
        [
            EventInput(event="view", item=item.key, session_key="victim"),
            EventInput(event="purchase", item=item.key, session_key="victim", order_id="o-%s" % SCRIPT[:20]),
            EventInput(event="purchase", item=blue.key, session_key="victim", order_id="o-%s" % SCRIPT[:20]),
            EventInput(event="search", query=SCRIPT + ATTRIBUTE_BREAK, session_key="victim"),
        ]
    )
    ComplementPair.objects.create(item=blue, complement=item, score=0.5)
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    draft = descriptions.generate_draft(item.key)
    descriptions.approve(draft, admin_user)
    descriptions.publish(draft, admin_user)
    descriptions.generate_draft(item.key)  # and one pending
    descriptions.start_job(enqueue=enqueue_generation, category=EVIL_CATEGORY, user=admin_user)
    return product, admin_user


TAGS = """{% load ragrec %}
{% ragrec_similar product k=12 as similar %}{% ragrec_render similar title=title %}
{% ragrec_bought_together other k=12 as together %}{% ragrec_render together %}
{% ragrec_for_you k=12 as for_you %}{% ragrec_render for_you %}
{% ragrec_recently_viewed k=12 as recent %}{% ragrec_render recent %}
{% ragrec_buy_again k=12 as again %}{% ragrec_render again %}
{% ragrec_trending k=20 as trending %}{% ragrec_render trending currency=currency %}
{% ragrec_trending k=20 category=category as in_category %}{% ragrec_render in_category %}
{% ragrec_search query k=12 as found %}{% ragrec_render found %}
<ul>{% for rec in found %}<li>{{ rec.item.title }} {{ rec.reason }} {{ rec.item.category }}</li>{% endfor %}</ul>
"""


def test_every_template_tag_escapes_the_payloads(evil, catalogue):
    product, _ = evil
    request = RequestFactory().get("/")
    request.user = AnonymousUser()  # the visitor is the session key
    request.session = type("Session", (), {"session_key": "victim"})()
    html = (
        engines["django"]
        .from_string(TAGS)
        .render(
            {
                "product": product,
                "other": catalogue["Blue ceramic coffee mug"],
                "title": SCRIPT,
                "currency": ATTRIBUTE_BREAK,
                "category": EVIL_CATEGORY,
                "query": "evil mug " + SCRIPT,
                "request": request,
            }
        )
    )
    assert html.count('class="ragrec ragrec-') >= 7, html  # the lists rendered (not empty because of an error)
    assert "Evil &lt;script&gt;alert(1)&lt;/script&gt; mug &quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert_clean(html, "template tags")


def test_custom_markup_with_the_item_url_is_not_a_javascript_link(evil):
    """A template that links ``rec.item.url`` itself: Django escapes HTML, not URL schemes, so the item
    mirror must never hold a javascript: URL for a template to link to."""
    html = (
        engines["django"]
        .from_string(
            '{% load ragrec %}{% ragrec_trending k=20 as recs %}{% for rec in recs %}<a href="{{ rec.item.url }}">x</a>{% endfor %}'
        )
        .render({})
    )
    assert 'href="' in html
    assert_clean(html, "custom markup")


def demo_pages(evil, client, catalogue) -> dict[str, str]:
    product, _ = evil
    client.post(reverse("catalog:cart_add"), {"product": product.pk, "quantity": 1})
    other = catalogue["Blue ceramic coffee mug"]
    urls = [
        reverse("catalog:home"),
        reverse("catalog:search") + "?q=" + "evil%20mug%20%3Cscript%3Ealert(1)%3C/script%3E",
        reverse("catalog:assistant") + "?q=" + "evil%20mug%20under%2050%20%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E",
        reverse("catalog:category", args=[product.category.slug]),
        reverse("catalog:product", args=[product.slug]),
        reverse("catalog:product", args=[other.slug]),
        reverse("catalog:cart"),
    ]
    pages = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        pages[url] = response.content.decode()
    photo = io.BytesIO(build_samples().red_blue_jpeg)
    photo.name = "%s.jpg" % ATTRIBUTE_BREAK
    response = client.post(reverse("catalog:search_photo"), {"image": photo})
    assert response.status_code == 200
    pages["photo search"] = response.content.decode()
    return pages


def test_demo_pages_escape_the_payloads(evil, client, catalogue):
    for where, html in demo_pages(evil, client, catalogue).items():
        assert_clean(html, where, urls=False)


def test_demo_pages_never_link_a_javascript_url(evil, client, catalogue):
    for where, html in demo_pages(evil, client, catalogue).items():
        assert_clean(html, where)


def admin_urls(model_admin, objects) -> list[str]:
    info = model_admin.model._meta.app_label, model_admin.model._meta.model_name
    urls = ["admin:%s_%s_changelist" % info, "admin:%s_%s_add" % info]
    resolved = []
    for name in urls:
        resolved.append(reverse(name))
    for obj in objects:
        for name in ("admin:%s_%s_change" % info, "admin:%s_%s_history" % info, "admin:%s_%s_delete" % info):
            resolved.append(reverse(name, args=[obj.pk]))
    return resolved


def test_every_admin_page_of_the_plugin_escapes_the_payloads(evil, client):
    _, admin_user = evil
    client.force_login(admin_user)
    pages = 0
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "ragrec_django":
            continue
        objects = list(model._default_manager.all()[:3])
        for url in admin_urls(model_admin, objects):
            response = client.get(url)
            assert response.status_code in (200, 403), (url, response.status_code)  # 403: no add/delete allowed
            if response.status_code == 200:
                assert_clean(response.content.decode(), url)
                pages += 1
        changelist = reverse("admin:%s_%s_changelist" % (model._meta.app_label, model._meta.model_name))
        response = client.get(changelist, {"q": SCRIPT})  # the search box echoes the query
        assert response.status_code == 200
        assert_clean(response.content.decode(), changelist + "?q=")
    for name in ("admin:ragrec_django_evaluation", "admin:ragrec_django_experiments", "admin:index", "admin:app_list"):
        try:
            url = reverse(name, kwargs={"app_label": "ragrec_django"} if name == "admin:app_list" else None)
        except NoReverseMatch:
            continue
        response = client.get(url)
        assert response.status_code == 200, url
        assert_clean(response.content.decode(), url)
        pages += 1
    assert pages >= 25
