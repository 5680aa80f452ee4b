"""The session basket and checkout: add_to_cart and purchase events through ragrec_django's event service."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from ragrec_django.models import Interaction

from .factories import product

pytestmark = pytest.mark.django_db


def add(client, item, quantity=1, **extra):
    return client.post(reverse("catalog:cart_add"), {"product": item.pk, "quantity": quantity, **extra})


def test_add_to_cart_records_an_event_for_the_session_and_counts_in_the_header(client):
    mug = product("Red Mug", price=Decimal("12.50"))
    response = add(client, mug, 2)
    assert response.status_code == 302 and response["Location"] == mug.get_absolute_url()
    event = Interaction.objects.get(event="add_to_cart")
    assert (event.item.key, event.quantity, event.user_id, event.source) == (str(mug.pk), 2, None, "product_page")
    assert event.session_key == client.session.session_key
    page = client.get(reverse("catalog:home"))
    assert 'data-cart-count="2"' in page.content.decode()
    add(client, mug, 1, next="/search/?q=mug", source="similar")
    assert Interaction.objects.filter(event="add_to_cart").count() == 2
    assert Interaction.objects.filter(event="add_to_cart", source="similar").exists()
    basket = client.get(reverse("catalog:cart"))
    assert basket.status_code == 200 and "Red Mug" in basket.content.decode() and "£37.50" in basket.content.decode()


def test_add_to_cart_refuses_what_cannot_be_bought(client):
    sold_out, hidden = product("Sold Out Mug", stock=0), product("Hidden Mug", is_active=False)
    assert add(client, sold_out).status_code == 302
    assert "out of stock" in client.get(sold_out.get_absolute_url()).content.decode()
    assert add(client, hidden).status_code == 404
    assert client.post(reverse("catalog:cart_add"), {"product": "nope"}).status_code == 404
    assert client.post(reverse("catalog:cart_add"), {"product": str(2**70)}).status_code == 404
    assert client.get(reverse("catalog:cart_add")).status_code == 405
    assert not Interaction.objects.filter(event="add_to_cart").exists()
    evil = add(client, product("Mug"), next="https://evil.example/")
    assert evil["Location"].startswith("/product/")  # no open redirect


def test_quantities_are_bounded_and_lines_can_be_changed_and_removed(client):
    mug, lamp = product("Mug"), product("Lamp")
    add(client, mug, 500)
    add(client, lamp, 1)
    assert client.session["shop_demo_cart"] == {str(mug.pk): 20, str(lamp.pk): 1}
    client.post(reverse("catalog:cart"), {"update": "1", "quantity-%d" % mug.pk: "3", "quantity-%d" % lamp.pk: "x"})
    assert client.session["shop_demo_cart"] == {str(mug.pk): 3, str(lamp.pk): 1}
    client.post(reverse("catalog:cart"), {"remove": str(lamp.pk)})
    client.post(reverse("catalog:cart"), {"update": "1", "quantity-%d" % mug.pk: "0"})
    assert client.session["shop_demo_cart"] == {}
    assert "Your basket is empty" in client.get(reverse("catalog:cart")).content.decode()


def test_checkout_records_one_purchase_per_line_with_the_order_id_once(client):
    mug, lamp = product("Mug", price=Decimal("10.00")), product("Lamp", price=Decimal("30.00"))
    user = get_user_model().objects.create_user("shopper", password="x")
    client.force_login(user)
    add(client, mug, 2)
    add(client, lamp)
    page = client.get(reverse("catalog:checkout"))
    order_id = page.context["order_id"]
    assert page.status_code == 200 and order_id.startswith("ord-") and "£50.00" in page.content.decode()

    done = client.post(reverse("catalog:checkout"), {"order": order_id})
    assert done["Location"] == reverse("catalog:order_done")
    purchases = Interaction.objects.filter(event="purchase").order_by("item__key")
    assert sorted((e.item.key, e.quantity, e.order_id, e.user_id) for e in purchases) == sorted(
        [(str(mug.pk), 2, order_id, user.pk), (str(lamp.pk), 1, order_id, user.pk)]
    )
    thanks = client.get(done["Location"])
    assert order_id in thanks.content.decode() and "Thank you for your order" in thanks.content.decode()
    assert client.session["shop_demo_cart"] == {}

    again = client.post(reverse("catalog:checkout"), {"order": order_id})  # the same form sent twice
    assert again["Location"] == reverse("catalog:order_done") and purchases.count() == 2


def test_checkout_needs_a_basket_and_the_order_token(client):
    assert client.get(reverse("catalog:checkout"))["Location"] == reverse("catalog:cart")
    assert client.get(reverse("catalog:order_done"))["Location"] == reverse("catalog:cart")
    add(client, product("Mug"))
    client.get(reverse("catalog:checkout"))
    forged = client.post(reverse("catalog:checkout"), {"order": "ord-forged"})
    assert (
        forged["Location"] == reverse("catalog:checkout") and not Interaction.objects.filter(event="purchase").exists()
    )


def test_product_page_has_an_accessible_add_to_basket_form(client):
    mug = product("Mug")
    html = client.get(mug.get_absolute_url()).content.decode()
    assert 'action="%s"' % reverse("catalog:cart_add") in html
    assert '<label for="add-quantity">Quantity</label>' in html and 'id="add-quantity"' in html
    assert "Add to basket" not in client.get(product("Empty", stock=0).get_absolute_url()).content.decode()
