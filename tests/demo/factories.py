"""Small helpers that create catalogue rows for the demo tests."""

from __future__ import annotations

from decimal import Decimal
from itertools import count

from shop_demo.catalog.models import Category, Product

_numbers = count(1)


def category(name="Mugs", slug=None) -> Category:
    return Category.objects.get_or_create(slug=slug or name.lower().replace(" ", "-"), defaults={"name": name})[0]


def product(title="Red Mug", *, cat=None, **fields) -> Product:
    number = next(_numbers)
    values = {
        "slug": "product-%d" % number,
        "description": "A product. It is useful.",
        "price": Decimal("10.00"),
        "stock": 5,
        "colour": "red",
        "material": "ceramic",
        "size": "350 ml",
    }
    values.update(fields)
    return Product.objects.create(title=title, category=cat or category(), **values)
