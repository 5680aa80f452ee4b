"""Storefront views: pages render, search works, products' text is escaped."""

from __future__ import annotations

import pytest
from django.urls import reverse

from shop_demo.catalog.models import Product

from .factories import category, product

XSS = '<script>alert("x")</script> Mug'


@pytest.mark.django_db
def test_pages_render(client, seed):
    seed(count=60)
    mug = Product.objects.filter(category__slug="mugs", is_active=True).first()
    for url in [
        reverse("catalog:home"),
        reverse("catalog:category", args=["mugs"]),
        reverse("catalog:product", args=[mug.slug]),
        reverse("catalog:search") + "?q=mug",
        reverse("catalog:search"),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert 'href="#main"' in html and 'id="main"' in html  # skip link
        assert 'role="search"' in html and 'action="%s"' % reverse("catalog:search") in html
        assert 'href="/category/t-shirts/"' in html  # category navigation
        assert "Log in" in html


@pytest.mark.django_db
def test_home_lists_new_parent_products(client):
    parent = product("Harbour Red Mug")
    product("Harbour Blue Mug", parent=parent, colour="blue")
    product("Hidden Mug", is_active=False)
    response = client.get(reverse("catalog:home"))
    assert [p.title for p in response.context["new_products"]] == ["Harbour Red Mug"]
    assert "Hidden Mug" not in response.content.decode()
    assert "{% block recommendations %}" not in response.content.decode()


@pytest.mark.django_db
def test_category_page_is_paginated(client):
    mugs = category("Mugs")
    for i in range(30):
        product("Mug %02d" % i, cat=mugs)
    product("A Lamp", cat=category("Lamps"))
    first = client.get(reverse("catalog:category", args=["mugs"]))
    second = client.get(reverse("catalog:category", args=["mugs"]), {"page": 2})
    assert first.status_code == second.status_code == 200
    assert len(first.context["products"]) == 24 and len(second.context["products"]) == 6
    assert "A Lamp" not in first.content.decode()
    assert 'aria-current="page">Mugs</a>' in first.content.decode()
    assert "?page=2" in first.content.decode()
    assert client.get(reverse("catalog:category", args=["nope"])).status_code == 404


@pytest.mark.django_db
def test_product_page_shows_details_and_variants(client):
    parent = product("Harbour Red Mug", price="12.50", stock=3, material="stoneware")
    blue = product("Harbour Blue Mug", parent=parent, colour="blue")
    green = product("Harbour Green Mug", parent=parent, colour="green", stock=0)
    product("Other Mug")

    response = client.get(blue.get_absolute_url())
    assert response.status_code == 200
    assert response.context["variants"] == [green, parent]
    html = response.content.decode()
    assert "Harbour Blue Mug" in html and "Blue" in html and "Ceramic" in html and "350 ml" in html
    assert parent.get_absolute_url() in html and green.get_absolute_url() in html
    assert "Other Mug" not in html

    response = client.get(parent.get_absolute_url())
    html = response.content.decode()
    assert "£12.50" in html and "In stock (3 available)" in html and "Stoneware" in html
    assert response.context["variants"] == [blue, green]


@pytest.mark.django_db
def test_inactive_product_is_hidden_except_for_staff(client, admin_client):
    hidden = product("Hidden Mug", is_active=False)
    assert client.get(hidden.get_absolute_url()).status_code == 404
    response = admin_client.get(hidden.get_absolute_url())
    assert response.status_code == 200
    assert "hidden from the shop" in response.content.decode()
    assert "Log out" in response.content.decode()


@pytest.mark.django_db
def test_search_matches_every_word_in_title_or_description(client):
    product("Harbour Red Mug", description="Stoneware. Holds tea.")
    product("Harbour Blue Mug", description="Porcelain.", colour="blue")
    product("Red Lamp", description="A lamp.", cat=category("Lamps"))

    def titles(q):
        return sorted(p.title for p in client.get(reverse("catalog:search"), {"q": q}).context["products"])

    assert titles("mug") == ["Harbour Blue Mug", "Harbour Red Mug"]
    assert titles("red  MUG") == ["Harbour Red Mug"]
    assert titles("stoneware") == ["Harbour Red Mug"]
    assert titles("nothing-like-this") == []
    assert titles("") == []


@pytest.mark.django_db
def test_product_text_is_escaped(client, admin_client):
    item = product(XSS, description='<img src=x onerror="alert(1)">', colour="<b>red</b>")
    urls = [
        reverse("catalog:home"),
        reverse("catalog:category", args=["mugs"]),
        item.get_absolute_url(),
        reverse("catalog:search") + "?q=script",
        reverse("catalog:search") + "?q=%3Cscript%3E",
    ]
    for url in urls:
        html = client.get(url).content.decode()
        assert "<script>alert" not in html, url
        assert "&lt;script&gt;" in html, url
        assert "<img src=x" not in html and "<b>red" not in html, url
    html = admin_client.get(reverse("admin:catalog_product_changelist")).content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;" in html


@pytest.mark.django_db
def test_admin_pages_render_with_thumbnails(admin_client, seed):
    seed(count=12)
    item = Product.objects.first()
    changelist = admin_client.get(reverse("admin:catalog_product_changelist"))
    assert changelist.status_code == 200
    assert '<img src="/media/%s"' % item.image.name in changelist.content.decode()
    change = admin_client.get(reverse("admin:catalog_product_change", args=[item.pk]))
    assert change.status_code == 200
    assert admin_client.get(reverse("admin:catalog_category_changelist")).status_code == 200
    assert (
        admin_client.get(reverse("admin:catalog_product_changelist"), {"q": "mug", "is_active__exact": "1"}).status_code
        == 200
    )


@pytest.mark.django_db
def test_media_is_served_only_in_the_demo(client, settings, media_root):
    (media_root / "products").mkdir(parents=True)
    (media_root / "products" / "x.jpg").write_bytes(b"\xff\xd8 picture")
    settings.DEBUG, settings.SHOP_DEMO_SERVE_MEDIA = False, False
    assert client.get("/media/products/x.jpg").status_code == 404
    settings.SHOP_DEMO_SERVE_MEDIA = True
    response = client.get("/media/products/x.jpg")
    assert response.status_code == 200 and b"".join(response.streaming_content) == b"\xff\xd8 picture"
    client.raise_request_exception = False
    assert client.get("/media/../settings.py").status_code == 400  # SuspiciousFileOperation, never the file
