"""{% load ragrec %}: simple tags return lists for custom markup, ragrec_render renders accessible, escaped cards."""

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ragrec_django.models import Impression, Item
from ragrec_django.services import recommend
from ragrec_django.services.encoding import sync_host_items
from ragrec_django.services.events import EventInput, record_events
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script> mug'


def render(source: str, **context) -> str:
    return Template("{% load ragrec %}" + source).render(Context(context))


def listing(tag: str, **context) -> list[str]:
    """Entries of a simple tag as "title|reason", through custom markup."""
    out = render(
        "{% " + tag + " as recs %}{% for r in recs %}{{ r.item.title }}|{{ r.reason|safe }}\n{% endfor %}", **context
    )
    return [row for row in out.split("\n") if row]


def request_for(*, user=None, session_key=None):
    return SimpleNamespace(user=user or AnonymousUser(), session=SimpleNamespace(session_key=session_key))


def events(*rows, **common):
    record_events([EventInput(**{**common, **row}) for row in rows])


# ---------------------------------------------------------------- simple tags


def test_bought_together_for_a_basket_of_products(catalogue):
    mug, kettle, tee = (
        catalogue[t] for t in ("Red ceramic coffee mug", "Copper stovetop tea kettle", "Red cotton t-shirt")
    )
    events(
        {"event": "purchase", "item": str(mug.pk), "order_id": "o1"},
        {"event": "purchase", "item": str(kettle.pk), "order_id": "o1"},
        session_key="s9",
    )
    rows = listing("ragrec_bought_together_basket basket k=3", basket=[mug, tee])
    assert rows[0] == "Copper stovetop tea kettle|bought with Red ceramic coffee mug"
    assert not {"Red ceramic coffee mug", "Red cotton t-shirt"} & {row.split("|")[0] for row in rows}
    assert listing("ragrec_bought_together_basket basket", basket=[]) == []  # an empty basket: nothing, no error


def test_similar_accepts_a_product_an_item_or_a_key(catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    by_product = listing("ragrec_similar product k=2", product=mug)
    assert len(by_product) == 2 and all(row.endswith("|similar to Red ceramic coffee mug") for row in by_product)
    assert "Red ceramic coffee mug|" not in by_product[0]
    assert listing("ragrec_similar item k=2", item=Item.objects.get(key=str(mug.pk))) == by_product
    assert listing('ragrec_similar key k=2 config="default"', key=str(mug.pk)) == by_product
    assert listing("ragrec_similar key k=2", key=mug.pk) == by_product


def test_bought_together_trending_and_search_tags(catalogue):
    mug, kettle, lamp = (
        catalogue[t] for t in ("Red ceramic coffee mug", "Copper stovetop tea kettle", "Brass desk lamp")
    )
    events(
        {"event": "purchase", "item": str(mug.pk)},
        {"event": "purchase", "item": str(kettle.pk)},
        order_id="o1",
        session_key="o1",
    )
    events({"event": "view", "item": str(lamp.pk)}, session_key="s2")
    together = listing("ragrec_bought_together product k=1", product=mug)
    assert together == ["Copper stovetop tea kettle|bought with Red ceramic coffee mug"]
    assert listing("ragrec_trending k=5")[0].endswith("|trending now")
    assert listing('ragrec_trending k=5 category="Lamps"') == ["Brass desk lamp|trending in Lamps"]
    found = listing('ragrec_search "cofee mug" k=2')
    assert {row.split("|")[0] for row in found} == {"Red ceramic coffee mug", "Blue ceramic coffee mug"}
    out = render("{% ragrec_search q k=1 as recs %}{{ recs.query }}", q="cofee mugg")
    assert out in ("coffee mug", "coffee mugs")


def test_visitor_tags_read_the_request(catalogue):
    lamp, mug = str(catalogue["Brass desk lamp"].pk), str(catalogue["Red ceramic coffee mug"].pk)
    events(
        {"event": "view", "item": lamp, "created_at": timezone.now() - timedelta(hours=1)},
        {"event": "view", "item": mug},
        {"event": "purchase", "item": lamp, "order_id": "o1"},
        session_key="s1",
    )
    request = request_for(session_key="s1")
    assert listing("ragrec_recently_viewed k=5", request=request) == [
        "Red ceramic coffee mug|you viewed this",
        "Brass desk lamp|you viewed this",
    ]
    assert listing("ragrec_buy_again", request=request) == ["Brass desk lamp|you bought this before"]
    for_you = listing("ragrec_for_you k=3", request=request)
    # What they bought comes back (repeat purchases lead "for you"); what they only viewed does not.
    assert len(for_you) == 3 and for_you[0] == "Brass desk lamp|you bought this before"
    anchors = ("|because you viewed Red ceramic coffee mug", "|because you bought Brass desk lamp")  # bought: "bought"
    assert all(row.endswith(anchors) for row in for_you[1:])
    assert "Red ceramic coffee mug" not in {row.split("|")[0] for row in for_you}

    user = get_user_model().objects.create_user("ann")
    events({"event": "view", "item": mug}, user_id=user.pk)
    signed_in = request_for(user=user, session_key="s1")  # the user's own history wins over the session
    assert listing("ragrec_recently_viewed", request=signed_in) == ["Red ceramic coffee mug|you viewed this"]


def test_unknown_visitor_gets_trending_never_someone_elses_history(catalogue):
    user = get_user_model().objects.create_user("ann")
    events({"event": "view", "item": str(catalogue["Brass desk lamp"].pk)}, user_id=user.pk)
    out = render("{% ragrec_for_you k=3 as recs %}{{ recs.fallback }}:{% for r in recs %}{{ r.reason }};{% endfor %}")
    assert out == "trending:trending now;"  # no request in the context at all
    out = render("{% ragrec_for_you as recs %}{{ recs.fallback }}", request=request_for())
    assert out == "trending"
    assert listing("ragrec_recently_viewed", request=request_for()) == []


# ---------------------------------------------------------------- ragrec_render


def test_render_outputs_an_accessible_titled_list_with_reasons(catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    source = '{% ragrec_similar product k=3 as recs %}{% ragrec_render recs title="Similar items" currency="£" %}'
    html = render(source, product=mug)
    assert html.count('<li class="ragrec-card"') == 3
    assert '<section class="ragrec ragrec-similar" aria-labelledby="ragrec-similar-similar-items"' in html
    assert '<h2 id="ragrec-similar-similar-items" class="ragrec-title">Similar items</h2>' in html
    assert '<ul class="ragrec-list" role="list">' in html
    assert html.count('<p class="ragrec-reason">Similar to Red ceramic coffee mug</p>') == 3
    first = recommend.similar_items(str(mug.pk), k=1).items[0].item
    product = Product.objects.get(pk=int(first.key))
    impression = Impression.objects.get()  # the rendered list, recorded once; links go through the click redirect
    assert impression.item_keys[0] == first.key and impression.recommender == "similar"
    click_url = reverse("ragrec_api:click", args=[impression.pk, first.key])
    assert '<a class="ragrec-link" href="%s" rel="nofollow">' % click_url in html
    assert Client().get(click_url)["Location"] == product.get_absolute_url()
    assert '<img src="%s" alt=""' % product.image.url in html  # decorative: the link text names the item
    assert '<span class="ragrec-item-title">%s</span>' % product.title in html
    assert '<span class="ragrec-price">£20.00</span>' in html and "In stock" in html
    assert 'data-ragrec-item="%s"' % first.key in html


def test_render_defaults_levels_and_empty_lists(catalogue):
    html = render("{% ragrec_trending as recs %}{% ragrec_render recs %}")
    assert html.strip() == ""  # no events: nothing at all, not an empty section
    events({"event": "view", "item": str(catalogue["Brass desk lamp"].pk)}, session_key="s")
    html = render('{% ragrec_trending as recs %}{% ragrec_render recs level=3 section_id="hot" %}')
    assert '<h3 id="hot" class="ragrec-title">Trending now</h3>' in html and 'aria-labelledby="hot"' in html
    assert '<p class="ragrec-reason">Trending now</p>' in html
    assert render("{% ragrec_render nothing %}").strip() == ""


def test_output_is_escaped(catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    Product.objects.filter(pk=mug.pk).update(title=XSS)
    sync_host_items([mug.pk])
    events({"event": "view", "item": str(mug.pk)}, session_key="s")
    html = render("{% ragrec_trending as recs %}{% ragrec_render recs title=title %}", title='<b onclick="x">Hot</b>')
    html += render("{% ragrec_similar key k=2 as recs %}{% ragrec_render recs %}", key=str(mug.pk))
    assert "<script>" not in html and "<b onclick" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; mug" in html  # the title, in trending
    assert "Similar to &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; mug" in html  # the reason
    assert "&lt;b onclick=&quot;x&quot;&gt;Hot&lt;/b&gt;" in html


def test_overridable_template(catalogue, settings, tmp_path):
    (tmp_path / "ragrec").mkdir()
    override = "{% for e in entries %}[{{ e.item.title }}: {{ e.reason }}]{% endfor %}"
    (tmp_path / "ragrec" / "recommendations.html").write_text(override)
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    events({"event": "view", "item": str(catalogue["Brass desk lamp"].pk)}, session_key="s")
    assert render("{% ragrec_trending as recs %}{% ragrec_render recs %}") == "[Brass desk lamp: trending now]"


# ---------------------------------------------------------------- failures never break the page


def test_unknown_item_renders_nothing_and_logs(catalogue, caplog):
    with caplog.at_level(logging.WARNING, logger="ragrec_django.templatetags"):
        html = render('{% ragrec_similar "999999" as recs %}{% ragrec_render recs title="Similar" %}<p>page</p>')
    assert html == "<p>page</p>"
    assert "no similar recommendations shown: No item with id '999999'" in caplog.text


def test_space_not_ready_renders_nothing_and_logs(db, ragrec_encoders, caplog):
    mugs = Category.objects.create(name="Mugs", slug="mugs")
    product = Product.objects.create(title="Lonely mug", slug="lonely", category=mugs, price="3")
    with caplog.at_level(logging.WARNING, logger="ragrec_django.templatetags"):
        html = render("{% ragrec_similar product as recs %}{% ragrec_render recs %}ok", product=product)
    assert html == "ok"
    assert "has no embeddings yet" in caplog.text


def test_bad_arguments_and_unexpected_errors_render_nothing(catalogue, caplog, monkeypatch):
    mug = catalogue["Red ceramic coffee mug"]
    with caplog.at_level(logging.WARNING, logger="ragrec_django.templatetags"):
        assert render('{% ragrec_similar product k="abc" as recs %}{% ragrec_render recs %}ok', product=mug) == "ok"
        assert render("{% ragrec_similar product k=0 as recs %}{% ragrec_render recs %}ok", product=mug) == "ok"
        assert render('{% ragrec_trending config="nope" as recs %}{% ragrec_render recs %}ok') == "ok"
        assert render('{% ragrec_search "" as recs %}{% ragrec_render recs %}ok') == "ok"
    assert "k must be an integer" in caplog.text and "Unknown serving configuration 'nope'" in caplog.text

    def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    def failing_sql(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    # A database error rolls back to the tag's savepoint only: the next tag still queries the database.
    monkeypatch.setattr(recommend, "trending", failing_sql)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="ragrec_django.templatetags"):
        out = render(
            "{% ragrec_trending as bad %}{% ragrec_render bad %}{% ragrec_similar product k=1 as recs %}"
            "{{ recs|length }}",
            product=mug,
        )
    assert out == "1" and "trending recommendations failed" in caplog.text and "no_such_table" in caplog.text

    monkeypatch.setattr(recommend, "similar_items", broken)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="ragrec_django.templatetags"):
        assert render("{% ragrec_similar product as recs %}{% ragrec_render recs %}ok", product=mug) == "ok"
    assert "similar recommendations failed" in caplog.text and "database on fire" in caplog.text
