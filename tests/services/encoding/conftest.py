"""Products with real images for the encoding tests, and an audit of committed writes."""

import io

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from PIL import Image

from shop_demo.catalog.models import Category, Product
from tests.helpers import audit

COLOURS = {"red": (220, 20, 30), "blue": (20, 40, 220), "green": (20, 180, 40), "yellow": (240, 220, 20)}


def jpeg_bytes(rgb, size=(96, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def make_products(db):
    """make_products(specs) -> products; a spec is (title, colour name or None for no image, image bytes or None)."""
    category = Category.objects.create(name="Mugs", slug="mugs")

    def make(specs):
        products = []
        for index, (title, colour, raw) in enumerate(specs):
            product = Product(
                title=title,
                slug="p-%d-%s" % (index, title.lower().replace(" ", "-")),
                description="A %s made for everyday use." % title.lower(),
                category=category,
                price="12.50",
                stock=5,
                colour=colour or "",
            )
            data = raw if raw is not None else (jpeg_bytes(COLOURS[colour]) if colour else None)
            if data is not None:
                product.image.save("%s.jpg" % product.slug, ContentFile(data), save=False)
            product.save()
            products.append(product)
        return products

    return make


@pytest.fixture
def many_products(db):
    """many_products(n) -> primary keys of n text-only products, created in bulk."""
    category = Category.objects.create(name="Lamps", slug="lamps")

    def make(n):
        Product.objects.bulk_create(
            Product(
                title="Desk lamp model %d" % i,
                slug="lamp-%d" % i,
                description="An adjustable desk lamp, number %d, with a warm LED and a weighted base." % i,
                category=category,
                price="30.00",
                stock=3,
            )
            for i in range(n)
        )
        return list(Product.objects.filter(category=category).order_by("pk").values_list("pk", flat=True))

    return make


@pytest.fixture
def committed_writes(transactional_db):
    """The audit triggers of ``tests.helpers.audit`` in the test database, for this test (its workers too).

    Returns ``writes(table="embedding") -> {key: committed writes}``: "written exactly once" is one
    committed write per (generation, item), which the unique constraint on that pair does not show.
    """
    with connection.cursor() as cursor:
        cursor.execute(audit.REMOVE_SQL + audit.INSTALL_SQL)

    def writes(table: str = "embedding") -> dict[str, int]:
        with connection.cursor() as cursor:
            return audit.writes(cursor, table)

    yield writes
    with connection.cursor() as cursor:
        cursor.execute(audit.REMOVE_SQL)
