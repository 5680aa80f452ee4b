"""Hostile bytes as photo uploads (4xx with a reason) and as product images (a recorded per-item failure,
the rest of the batch encoded, the task still returning normally).

The decoder's own unit tests (tests/ml) cover each sample at the PIL level, and test_image_memory.py decodes
a corpus of hostile images for every allowed format in fresh processes to bound their peak memory; these
tests go through the real HTTP endpoint, the storefront's photo form and the real encoding service with the
tiny CLIP model, against PostgreSQL.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from ragrec_django import tasks
from ragrec_django.models import Embedding, EncodingFailure, Item, SpaceGeneration
from ragrec_django.services import encoding
from shop_demo.catalog.models import Category, Product
from tests.ml.samples import build_samples, png_chunk

from .image_corpus import CASES, png

pytestmark = pytest.mark.django_db

SAMPLES = build_samples()


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("payload.html", "<script>alert(1)</script>")
    return buffer.getvalue()


def png_zlib_bomb() -> bytes:
    """A small PNG (a few KB) whose pixel data inflates to ~100 MB: 10000 x 10000 grey, under PIL's own limit."""
    width = height = 10_000
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\0" * ((width + 1) * height), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", raw) + png_chunk(b"IEND", b"")


HOSTILE = {
    # name: (bytes, what the reason says)
    "bomb_png": (SAMPLES.bomb_png, "decompression bomb guard"),  # 50000 x 50000 claimed in 60 bytes
    "over_limit_png": (SAMPLES.over_limit_png, "over the limit of"),  # 7000 x 7000, under PIL's own limit
    "zlib_bomb_png": (png_zlib_bomb(), "over the limit of"),  # 10000 x 10000 = 100 M pixels, ~100 KB file
    "truncated_jpeg": (SAMPLES.truncated_jpeg, "truncated or corrupt JPEG"),
    "random_bytes": (SAMPLES.random_bytes, "not a recognised image"),
    "gif_js_polyglot": (SAMPLES.gif_js_polyglot, "not a recognised image"),
    "jpeg_header_then_html": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00<html><script>alert(1)</script></html>", "JPEG"),
    "zip": (zip_bytes(), "not a recognised image"),
    "svg": (SAMPLES.svg, "not a recognised image"),
    "html": (b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", "not a recognised image"),
    "pdf": (SAMPLES.pdf, "not a recognised image"),
    "ppm_not_allowed": (SAMPLES.ppm, "image format PPM is not allowed"),
    # Within the pixel limit but not the side, elongation or memory limits (see image_corpus.py).
    "png_4000000x10": (png(4_000_000, 10), "image is 4000000x10 pixels, a side over the limit of 16384"),
    "jpeg_2100x100": (CASES["jpeg_over_aspect"][0](), "image is 2100x100 pixels, more elongated than the limit"),
    "webp_canvas_12000x3000": (CASES["webp_canvas_12000x3000"][0](), "of memory, over the limit of 128 MB"),
    "float_tiff_6000x6000": (CASES["tiff_f_6000x6000_over_memory"][0](), "F TIFF image would take about"),
}


def photo(data: bytes, name: str = "photo.jpg") -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name
    return upload


# ---------------------------------------------------------------- search by photo


def test_hostile_uploads_are_400_with_the_reason(api, catalogue):
    """Refused from the header, before any pixel is decoded (the memory each decode takes is measured in a
    fresh process by test_image_memory.py: this test process is too large for its peak to show anything)."""
    url = reverse("ragrec_api:search-photo")
    for name, (data, reason) in HOSTILE.items():
        response = api.post(url, {"image": photo(data)}, format="multipart")
        assert response.status_code == 400, (name, response.content)
        detail = response.json()["detail"]
        assert detail.startswith("The upload is not a usable image: ") and reason in detail, (name, detail)
        assert "<script" not in detail and "<html" not in detail  # the payload is never echoed back


def test_the_4000000_x_10_png_is_a_400_with_a_message_on_the_api_and_the_storefront(api, client, catalogue):
    """The reported attack: 5 KB, exactly at the 40 M pixel limit, resized to ~89.6 M x 224 before the centre
    crop (55 s, ~9 GB). Now the side limit refuses it from its header."""
    data = HOSTILE["png_4000000x10"][0]
    response = api.post(reverse("ragrec_api:search-photo"), {"image": photo(data, "strip.png")}, format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "The upload is not a usable image: image is 4000000x10 pixels, a side over the limit of 16384"
    )
    page = client.post(reverse("catalog:search_photo"), {"image": SimpleUploadedFile("strip.png", data)})
    assert page.status_code == 400
    assert "That file is not a photo we can read." in page.content.decode()
    assert "image is 4000000x10 pixels, a side over the limit of 16384" in page.content.decode()


def test_a_real_image_with_a_payload_appended_is_only_used_as_pixels(api, catalogue):
    """A valid PNG or JPEG followed by HTML or a ZIP (a polyglot) decodes as the image it is; the upload is
    never stored or served back, so the trailing bytes go nowhere."""
    for data in (SAMPLES.png_with_html_payload, SAMPLES.jpeg + zip_bytes()):
        response = api.post(
            reverse("ragrec_api:search-photo"), {"image": photo(data, "<script>x.html")}, format="multipart"
        )
        assert response.status_code == 200
        assert b"<script" not in response.content and b"PK\x03\x04" not in response.content
        assert response.json()["recommender"] == "photo" and response.json()["results"]


def test_an_upload_at_the_limit_is_read_and_one_byte_over_is_413(api, settings, catalogue):
    data = SAMPLES.jpeg
    settings.RAGREC = {**settings.RAGREC, "MAX_UPLOAD_BYTES": len(data)}
    url = reverse("ragrec_api:search-photo")
    assert api.post(url, {"image": photo(data)}, format="multipart").status_code == 200
    response = api.post(url, {"image": photo(data + b"\0")}, format="multipart")
    assert response.status_code == 413 and "too large" in response.json()["detail"]


# ---------------------------------------------------------------- product images through the encoding path


@pytest.fixture
def products_with_images(db, ragrec_encoders):
    """Two good products, then one per hostile image, an empty image file, and an image missing on disk."""
    category = Category.objects.create(name="Mugs", slug="mugs")

    def make(title: str, data: bytes | None) -> Product:
        product = Product(
            title=title,
            slug=title.lower().replace(" ", "-").replace("_", "-"),
            category=category,
            price="9.00",
            stock=1,
            description="%s, a mug." % title,
        )
        if data is not None:
            product.image.save(product.slug + ".jpg", ContentFile(data), save=False)
        product.save()
        return product

    good = [make("Red mug", SAMPLES.red_blue_jpeg), make("Noisy mug", SAMPLES.noisy_png)]
    bad = {name: make("Bad %s" % name, data) for name, (data, _) in HOSTILE.items()}
    bad["empty_file"] = make("Bad empty file", b"")
    missing = make("Bad missing file", SAMPLES.jpeg)
    missing.image.storage.delete(missing.image.name)  # the row names a file that is gone
    bad["missing_file"] = missing
    return good, bad


def test_bad_product_images_are_recorded_per_item_and_the_rest_is_encoded(products_with_images):
    good, bad = products_with_images
    # One batch with the good items first, last and in between.
    pks = [good[0].pk] + [p.pk for p in bad.values()] + [good[1].pk]
    report = encoding.encode_items("image", pks, batch_size=4)

    assert report.encoded == 2
    assert set(report.failed) == {str(p.pk) for p in bad.values()}
    for name, (_, reason) in HOSTILE.items():
        assert report.failed[str(bad[name].pk)].startswith("bad image: ") and reason in report.failed[str(bad[name].pk)]
    assert report.failed[str(bad["empty_file"].pk)] == "no image to encode"
    assert report.failed[str(bad["missing_file"].pk)].startswith("could not read image: ")

    generation = SpaceGeneration.objects.get(space="image")
    assert set(Embedding.objects.filter(generation=generation).values_list("item__key", flat=True)) == {
        str(p.pk) for p in good
    }
    recorded = dict(EncodingFailure.objects.filter(generation=generation).values_list("item__key", "reason"))
    assert recorded == report.failed  # each failure is in the database with its reason, for the admin/coverage

    # A second run skips nothing bad silently: the failures are attempted again and counted.
    again = encoding.encode_items("image", pks)
    assert again.encoded == 0 and again.skipped == 2 and set(again.failed) == set(report.failed)
    assert set(EncodingFailure.objects.filter(generation=generation).values_list("attempts", flat=True)) == {2}


def test_the_celery_task_returns_the_failures_instead_of_crashing(products_with_images, settings):
    """The task body a worker runs: it returns normally (no exception, no retry) with failures by item."""
    good, bad = products_with_images
    pks = [p.pk for p in bad.values()] + [p.pk for p in good]
    result = tasks.encode_items_task.apply(args=("image", pks))
    assert result.successful(), result.traceback
    body = result.get()
    assert body["encoded"] == 2 and set(body["failed"]) == {str(p.pk) for p in bad.values()}
    # Text of the same items is unaffected by their images.
    assert tasks.encode_items_task.apply(args=("text", pks)).get()["encoded"] == len(pks)
    assert Item.objects.filter(key__in=[str(pk) for pk in pks]).count() == len(pks)
