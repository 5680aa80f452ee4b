"""seed_catalog: deterministic, complete, idempotent, and pictures that match the text."""

from __future__ import annotations

import hashlib
import re
import shutil

import numpy as np
import pytest

from shop_demo.catalog import imaging
from shop_demo.catalog.models import Category, Product
from shop_demo.catalog.seeding import CATEGORIES, generate

from .helpers import COLOUR_RULES, colour_share, pixels


def catalogue():
    return list(Product.objects.order_by("slug").values_list("slug", "title", "price", "colour", "size", "stock"))


def file_hashes(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / "products").glob("*.jpg"))}


# --- the generator -------------------------------------------------------------------------


def test_generate_is_deterministic_and_seed_dependent():
    first, again, other = generate(60, 42), generate(60, 42), generate(60, 7)
    assert [(p.title, p.price) for p in first] == [(p.title, p.price) for p in again]
    assert first == again
    assert [p.title for p in first] != [p.title for p in other]
    # A larger count with the same seed extends the smaller catalogue.
    assert generate(90, 42)[:60] == first


def test_generate_covers_every_category_with_complete_products():
    products = generate(60, 42)
    assert len(products) == 60
    assert len({p.category.slug for p in products}) == len(CATEGORIES) >= 10
    assert len({p.slug for p in products}) == 60
    for p in products:
        assert p.title and p.colour and p.material and p.size
        assert p.colour in p.title.lower()  # the text names the colour the picture shows
        assert len(re.findall(r"[.!?](\s|$)", p.description)) >= 3, p.description
        assert p.colour in p.description
        assert p.price >= 0 and p.price.as_tuple().exponent == -2
    variants = [p for p in products if p.parent_slug]
    assert variants, "some products have variants"
    by_slug = {p.slug: p for p in products}
    for variant in variants:
        parent = by_slug[variant.parent_slug]
        assert parent.parent_slug is None
        assert parent.category == variant.category and parent.material == variant.material
        assert (parent.colour, parent.size) != (variant.colour, variant.size)


# --- the command ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_creates_requested_count_in_ten_or_more_categories(seed, media_root):
    output = seed(count=60)
    assert Product.objects.count() == 60
    assert Category.objects.count() >= 10
    assert Category.objects.filter(products__isnull=True).count() == 0
    assert Product.objects.filter(parent__isnull=False).exists()
    assert "Created 60 products" in output
    for product in Product.objects.all():
        assert product.image.name == "products/%s.jpg" % product.slug
        path = media_root / product.image.name
        assert path.is_file()
        assert pixels(path).shape == (imaging.IMAGE_SIZE, imaging.IMAGE_SIZE, 3)
    # Variants share their parent's category and point at a parent, never at a variant.
    for variant in Product.objects.filter(parent__isnull=False).select_related("parent"):
        assert variant.parent.parent_id is None
        assert variant.parent.category_id == variant.category_id


@pytest.mark.django_db
def test_seed_is_deterministic(seed, media_root):
    seed(count=60, seed=42)
    first, first_files = catalogue(), file_hashes(media_root)
    Product.objects.all().delete()
    Category.objects.all().delete()
    shutil.rmtree(media_root)

    seed(count=60, seed=42)
    assert catalogue() == first
    assert file_hashes(media_root) == first_files  # the pictures too, byte for byte


@pytest.mark.django_db
def test_second_run_creates_nothing(seed, media_root, django_assert_max_num_queries):
    seed(count=60)
    before = list(Product.objects.order_by("pk").values_list("pk", "slug", "updated_at", "image"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in (media_root / "products").iterdir()}

    with django_assert_max_num_queries(6):
        output = seed(count=60)

    assert "Nothing to do" in output
    assert list(Product.objects.order_by("pk").values_list("pk", "slug", "updated_at", "image")) == before
    assert {p.name: p.stat().st_mtime_ns for p in (media_root / "products").iterdir()} == mtimes
    assert Category.objects.count() == len(CATEGORIES)


@pytest.mark.django_db
def test_larger_count_adds_only_the_missing_products(seed):
    seed(count=30)
    ids = set(Product.objects.values_list("pk", flat=True))
    seed(count=60)
    assert Product.objects.count() == 60
    assert ids <= set(Product.objects.values_list("pk", flat=True))
    assert sorted(Product.objects.values_list("slug", flat=True)) == sorted(p.slug for p in generate(60, 42))


@pytest.mark.django_db
def test_no_images_then_images_attaches_pictures(seed, media_root):
    seed(count=24, no_images=True)
    assert not Product.objects.exclude(image="").exists()
    assert not (media_root / "products").exists()

    output = seed(count=24)
    assert "attached 24 existing images" in output
    assert not Product.objects.filter(image="").exists()
    assert len(list((media_root / "products").glob("*.jpg"))) == 24


@pytest.mark.django_db
def test_missing_picture_is_redrawn(seed, media_root):
    seed(count=12)
    victim = media_root / Product.objects.first().image.name
    victim.unlink()
    output = seed(count=12)
    assert "drew 1 images" in output
    assert victim.is_file()


# --- pictures match the text ---------------------------------------------------------------


@pytest.mark.django_db
def test_picture_colour_matches_product_colour(seed, media_root):
    seed(count=240)
    checked = 0
    for product in Product.objects.filter(colour__in=COLOUR_RULES).select_related("category"):
        rgb = pixels(media_root / product.image.name)
        share = colour_share(rgb, product.colour)
        if product.category.slug == "plants":
            # The pot has the product's colour; the leaves are green.
            assert share >= 0.35, (product.title, share)
            continue
        assert share >= 0.6, (product.title, share)
        for other in COLOUR_RULES:
            if other != product.colour:
                assert colour_share(rgb, other) < 0.1, (product.title, other)
        checked += 1
    assert checked >= 40


def test_a_red_mug_is_mostly_red():
    rgb = pixels(imaging.render("mug", "red"))
    assert colour_share(rgb, "red") > 0.75
    assert colour_share(rgb, "blue") < 0.05


def _red_mask(shape, style):
    return COLOUR_RULES["red"](pixels(imaging.render(shape, "red", style)))


def test_categories_have_different_silhouettes():
    style = imaging.ImageStyle()
    masks = {shape: _red_mask(shape, style) for shape in imaging.SHAPES}
    assert len(masks) >= 10
    for i, a in enumerate(masks):
        for b in list(masks)[i + 1 :]:
            union = (masks[a] | masks[b]).sum()
            iou = (masks[a] & masks[b]).sum() / union
            assert iou < 0.75, (a, b, iou)


def test_pictures_of_one_category_vary_but_keep_the_colour():
    specs = [p for p in generate(240, 42) if p.category.shape == "mug"][:6]
    images = [pixels(imaging.render(p.category.shape, p.colour, p.style)) for p in specs]
    for i, a in enumerate(images):
        for b in images[i + 1 :]:
            assert not np.array_equal(a, b)
    styles = {p.style for p in specs}
    assert len(styles) == len(specs)


def test_every_named_colour_is_visible_on_the_background():
    """Even white and beige products stand out from the light background (by their outline)."""
    for colour in imaging.COLOURS:
        rgb = pixels(imaging.render("tshirt", colour))
        border = np.concatenate([rgb[0], rgb[-1]])
        distance = np.abs(rgb - np.median(border, axis=0)).sum(axis=2)
        assert (distance > 90).mean() > 0.01, colour
