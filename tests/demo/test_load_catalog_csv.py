"""load_catalog_csv: validated, all-or-nothing loading with row numbers in the errors."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from shop_demo.catalog import imaging
from shop_demo.catalog.management.commands.load_catalog_csv import COLUMNS, Command
from shop_demo.catalog.models import Category, Product

from .helpers import colour_share, pixels

HEADER = [
    "title",
    "description",
    "category",
    "price",
    "stock",
    "colour",
    "material",
    "size",
    "image",
    "parent_slug",
    "slug",
]


def write_csv(path, rows, header=HEADER):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "incoming"
    (folder / "mugs").mkdir(parents=True)
    (folder / "mugs" / "red.jpg").write_bytes(imaging.render_jpeg("mug", "red"))
    (folder / "mugs" / "blue.jpg").write_bytes(imaging.render_jpeg("mug", "blue"))
    (folder / "notes.txt").write_text("not an image")
    return folder


def load(path, **options):
    out = io.StringIO()
    call_command("load_catalog_csv", str(path), stdout=out, **options)
    return out.getvalue()


def test_help_documents_every_column():
    parser = Command().create_parser("manage.py", "load_catalog_csv")
    text = " ".join(parser.format_help().split())
    for column in COLUMNS:
        assert column in text


@pytest.mark.django_db
def test_happy_path(tmp_path, images, media_root):
    path = write_csv(
        tmp_path / "products.csv",
        [
            [
                "Studio Red Mug",
                "A red mug. It holds 350 ml.",
                "Mugs",
                "12.50",
                "7",
                "red",
                "stoneware",
                "350 ml",
                "mugs/red.jpg",
                "",
                "studio-red-mug",
            ],
            [
                "Studio Blue Mug",
                "The same mug in blue.",
                "Mugs",
                "12.50",
                "",
                "blue",
                "stoneware",
                "350 ml",
                "mugs/blue.jpg",
                "studio-red-mug",
                "",
            ],
            ["Canvas Tote", "A tote bag.\nWith a second line.", "Bags", "19", "3", "", "canvas", "", "", "", ""],
        ],
    )
    output = load(path, images=str(images))
    assert "3 created, 0 updated" in output

    parent = Product.objects.get(slug="studio-red-mug")
    variant = Product.objects.get(title="Studio Blue Mug")
    tote = Product.objects.get(title="Canvas Tote")
    assert variant.slug == "studio-blue-mug"
    assert variant.parent == parent and parent.parent is None
    assert variant.stock == 0 and parent.stock == 7
    assert parent.price == Decimal("12.50") and tote.price == Decimal("19.00")
    assert parent.category.name == "Mugs" and tote.category.slug == "bags"
    assert tote.description == "A tote bag.\nWith a second line."
    assert tote.image.name == ""
    # Pictures are copied into MEDIA_ROOT/products/ and keep their content.
    assert parent.image.name == "products/studio-red-mug.jpg"
    assert colour_share(pixels(media_root / parent.image.name), "red") > 0.6
    assert colour_share(pixels(media_root / variant.image.name), "blue") > 0.6


@pytest.mark.django_db
def test_existing_slug_updates_and_generated_slugs_stay_unique(tmp_path):
    path = write_csv(
        tmp_path / "a.csv",
        [
            ["Lamp", "", "Lamps", "30", "1", "", "", "", "", "", "desk-lamp"],
            ["Lamp", "", "Lamps", "31", "1", "", "", "", "", "", ""],
        ],
    )
    load(path)
    path = write_csv(
        tmp_path / "b.csv",
        [
            ["Desk Lamp", "Brighter.", "Lamps", "35", "4", "", "", "", "", "", "desk-lamp"],
            ["Lamp", "", "Lamps", "32", "1", "", "", "", "", "", ""],
            ["Green Desk Lamp", "", "Lamps", "35", "2", "green", "", "", "", "desk-lamp", "green-desk-lamp"],
        ],
    )
    assert "2 created, 1 updated" in load(path)
    assert Product.objects.count() == 4
    assert Product.objects.get(slug="green-desk-lamp").parent.slug == "desk-lamp"
    lamp = Product.objects.get(slug="desk-lamp")
    assert (lamp.title, lamp.price, lamp.stock) == ("Desk Lamp", Decimal("35.00"), 4)
    assert sorted(Product.objects.values_list("slug", flat=True)) == ["desk-lamp", "green-desk-lamp", "lamp", "lamp-2"]
    assert Category.objects.filter(slug="lamps").count() == 1


@pytest.mark.django_db
def test_bad_csv_loads_nothing_and_reports_row_numbers(tmp_path, images, media_root):
    path = write_csv(
        tmp_path / "bad.csv",
        [
            ["Good Mug", "Fine.", "Mugs", "10", "1", "red", "", "", "mugs/red.jpg", "", ""],  # row 2: valid
            ["Cheap Mug", "", "Mugs", "-1", "1", "", "", "", "", "", ""],  # row 3: negative price
            ["", "No title.", "Mugs", "5", "1", "", "", "", "", "", ""],  # row 4: missing title
            ["Ghost Mug", "", "Mugs", "5", "1", "", "", "", "mugs/missing.jpg", "", ""],  # row 5: unknown image
            ["Text Mug", "", "Mugs", "5", "1", "", "", "", "notes.txt", "", ""],  # row 6: not an image
            ["Many Mug", "", "Mugs", "5", "lots", "", "", "", "", "", ""],  # row 7: stock not a number
            ["Orphan Mug", "", "Mugs", "5", "1", "", "", "", "", "no-such-parent", ""],  # row 8: unknown parent
            ["Escaping Mug", "", "Mugs", "5", "1", "", "", "", "../../etc/passwd", "", ""],  # row 9: outside folder
        ],
    )
    with pytest.raises(CommandError) as excinfo:
        load(path, images=str(images))
    message = str(excinfo.value)
    assert "nothing was loaded" in message
    assert "row 2" not in message
    assert "row 3: price must be a number >= 0" in message
    assert "row 4: title is required" in message
    assert "row 5: image 'mugs/missing.jpg' not found" in message
    assert "row 6: image 'notes.txt' is not a readable image" in message
    assert "row 7: stock 'lots' is not a whole number" in message
    assert "row 8: parent_slug 'no-such-parent' matches no product" in message
    assert "row 9: image '../../etc/passwd' is outside the images folder" in message
    assert Product.objects.count() == 0
    assert Category.objects.count() == 0
    assert not (media_root / "products").exists()


@pytest.mark.django_db
def test_duplicate_slugs_and_variant_of_variant_are_rejected(tmp_path):
    path = write_csv(
        tmp_path / "dup.csv",
        [
            ["A", "", "Hats", "5", "1", "", "", "", "", "", "hat-a"],
            ["B", "", "Hats", "5", "1", "", "", "", "", "hat-a", "hat-b"],
            ["C", "", "Hats", "5", "1", "", "", "", "", "hat-b", "hat-a"],
        ],
    )
    with pytest.raises(CommandError) as excinfo:
        load(path)
    message = str(excinfo.value)
    assert "row 4: slug 'hat-a' is also used in row 2" in message
    assert "row 4: parent 'hat-b' is itself a variant" in message
    assert Product.objects.count() == 0


@pytest.mark.django_db
def test_missing_required_column_is_reported(tmp_path):
    path = write_csv(tmp_path / "cols.csv", [["A Mug", "12"]], header=["title", "price"])
    with pytest.raises(CommandError, match="Missing column\\(s\\): category"):
        load(path)


@pytest.mark.django_db
def test_dry_run_validates_without_loading(tmp_path):
    path = write_csv(tmp_path / "ok.csv", [["A Mug", "", "Mugs", "12", "1", "", "", "", "", "", ""]])
    assert "1 rows are valid" in load(path, dry_run=True)
    assert Product.objects.count() == 0


@pytest.mark.django_db
def test_excel_bom_and_column_order_are_accepted(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffprice,Title,category\n9.99,Bom Mug,Mugs\n".encode("utf-8"))
    load(path)
    assert Product.objects.get().title == "Bom Mug"
