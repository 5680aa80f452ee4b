"""The shop's ProductAdapter, as ragrec_django reads products through it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ragrec_django.adapters import get_adapter
from shop_demo.catalog.adapters import ProductAdapter
from shop_demo.catalog.models import Product

from .factories import category, product
from .helpers import colour_share, pixels


@pytest.mark.django_db
def test_settings_name_the_product_adapter():
    adapter = get_adapter()
    assert isinstance(adapter, ProductAdapter)
    assert adapter.get_item_model() is Product


@pytest.mark.django_db
def test_snapshot_of_a_product_and_its_variant():
    mugs = category("Mugs")
    parent = product("Harbour Red Mug", cat=mugs, price=Decimal("12.50"), stock=3, slug="harbour-red-mug")
    variant = product("Harbour Blue Mug", cat=mugs, parent=parent, colour="blue", stock=0, slug="harbour-blue-mug")
    hidden = product("Hidden Mug", cat=mugs, is_active=False, colour="", material="", size="")
    adapter = ProductAdapter()

    snap = adapter.snapshot(parent)
    assert snap.key == str(parent.pk)
    assert snap.title == "Harbour Red Mug"
    assert snap.category == "Mugs"
    assert snap.price == Decimal("12.50")
    assert snap.in_stock is True and snap.is_eligible is True
    assert snap.url == "/product/harbour-red-mug/"
    assert snap.group_key == str(parent.pk)  # a parent is the key of its own group
    assert snap.metadata == {"colour": "red", "material": "ceramic", "size": "350 ml", "slug": "harbour-red-mug"}

    snap = adapter.snapshot(variant)
    assert snap.group_key == str(parent.pk)  # variants share the parent's group
    assert snap.in_stock is False
    assert snap.metadata["colour"] == "blue" and snap.metadata["slug"] == "harbour-blue-mug"

    snap = adapter.snapshot(hidden)
    assert snap.is_eligible is False
    assert snap.metadata == {"slug": hidden.slug}
    assert snap.group_key == str(hidden.pk)


@pytest.mark.django_db
def test_text_and_image_of_a_seeded_product(seed):
    seed(count=12)
    item = Product.objects.get(slug=Product.objects.filter(category__slug="mugs").first().slug)
    adapter = ProductAdapter()
    text = adapter.get_text(item)
    assert text.startswith(item.title)
    assert "Category: Mugs." in text and "Colour: %s." % item.colour in text and item.description in text
    data = adapter.get_image_bytes(item)
    assert data[:2] == b"\xff\xd8"  # JPEG
    if item.colour in ("red", "blue", "green", "yellow"):
        assert colour_share(pixels(data), item.colour) > 0.6


@pytest.mark.django_db
def test_snapshots_of_the_queryset_need_one_query(django_assert_num_queries):
    mugs = category("Mugs")
    parent = product(cat=mugs)
    for colour in ("blue", "green", "pink"):
        product(cat=mugs, parent=parent, colour=colour)
    adapter = ProductAdapter()
    with django_assert_num_queries(1):
        snapshots = [adapter.snapshot(item) for item in adapter.get_queryset()]
    assert len(snapshots) == 4 and {s.category for s in snapshots} == {"Mugs"}
    assert {s.group_key for s in snapshots} == {str(parent.pk)}
