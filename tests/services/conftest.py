"""A small encoded catalogue (real MiniLM text space, tiny-CLIP image spaces) for the services tests."""

import io

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from ragrec_django.services import encoding
from shop_demo.catalog.models import Category, Product

CATALOGUE = {
    "Mugs": [
        ("Red ceramic coffee mug", "red"),
        ("Blue ceramic coffee mug", "blue"),
        ("Green enamel camping mug", "green"),
        ("White porcelain tea cup", "white"),
    ],
    "T-shirts": [
        ("Red cotton t-shirt", "red"),
        ("Blue cotton t-shirt", "blue"),
        ("Black organic cotton tee", "black"),
        ("Green linen shirt", "green"),
    ],
    "Kettles": [
        ("Stainless steel electric kettle", "grey"),
        ("Copper stovetop tea kettle", "orange"),
        ("Glass kettle with tea infuser", "white"),
    ],
    "Lamps": [("Brass desk lamp", "yellow"), ("Black floor lamp", "black"), ("Bedside reading lamp", "white")],
}
RGB = {
    "red": (210, 30, 30),
    "blue": (30, 50, 210),
    "green": (30, 170, 60),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "grey": (150, 150, 150),
    "orange": (230, 120, 30),
    "yellow": (235, 210, 40),
}


def jpeg(rgb) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def catalogue(db, ragrec_encoders):
    """Products by title, encoded into "text", "image" and "clip-text"."""
    products = {}
    for category_name, rows in CATALOGUE.items():
        category = Category.objects.create(name=category_name, slug=category_name.lower())
        for title, colour in rows:
            product = Product(
                title=title,
                slug=title.lower().replace(" ", "-"),
                category=category,
                price="20.00",
                stock=4,
                colour=colour,
                description="%s, a %s item from our %s range." % (title, colour, category_name.lower()),
            )
            product.image.save(product.slug + ".jpg", ContentFile(jpeg(RGB[colour])), save=False)
            product.save()
            products[title] = product
    pks = [p.pk for p in products.values()]
    for space in ("text", "image", "clip-text"):
        encoding.encode_items(space, pks)
    return products
