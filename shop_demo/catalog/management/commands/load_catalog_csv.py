"""manage.py load_catalog_csv: load products from a CSV file, all or nothing."""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from django.core.validators import validate_slug
from django.db import transaction
from django.db.models import Q
from django.utils.text import slugify
from PIL import Image, UnidentifiedImageError

from ...models import Category, Product

COLUMNS = {
    "title": "required; at most 200 characters",
    "description": "optional text",
    "category": "required; a category name, created when it does not exist yet",
    "price": "required; a decimal number >= 0 with at most 2 decimals, e.g. 19.99",
    "stock": "optional; a whole number >= 0, empty means 0",
    "colour": "optional; at most 50 characters",
    "material": "optional; at most 50 characters",
    "size": "optional; at most 50 characters",
    "image": "optional; a JPEG/PNG/WebP/GIF file, path relative to --images (default: current folder)",
    "parent_slug": "optional; for a variant, the slug of its parent (in the database or in this file)",
    "slug": "optional; unique slug, made from the title when empty; an existing slug updates that product",
}
REQUIRED_COLUMNS = ("title", "category", "price")
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP", "GIF"}
MAX_IMAGE_PIXELS = 40_000_000


@dataclass
class Row:
    number: int  # spreadsheet row number: the header is row 1
    title: str
    description: str
    category: str
    price: Decimal
    stock: int
    colour: str
    material: str
    size: str
    image: Path | None
    parent_slug: str
    slug: str
    explicit_slug: bool


class HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps the column table of the description as written."""


class Command(BaseCommand):
    requires_system_checks = []  # a data command; see seed_catalog
    help = (
        "Load products from a UTF-8 CSV file whose first row names the columns (in any order).\n\n"
        "Columns:\n"
        + "\n".join("  %-12s %s" % (name, rule) for name, rule in COLUMNS.items())
        + "\n\nEvery row is validated first. If any row is invalid, each error is reported with its row\n"
        "number (the header is row 1, as in a spreadsheet) and nothing is loaded; otherwise all rows\n"
        "are loaded in one transaction. Rows without a slug always create a new product."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("csv_file", help="Path of the CSV file.")
        parser.add_argument("--images", default=None, help="Folder that the image column is relative to.")
        parser.add_argument("--dry-run", action="store_true", help="Validate only; load nothing.")

    def handle(self, *args, csv_file, images, dry_run, verbosity=1, **options):
        path = Path(csv_file)
        if not path.is_file():
            raise CommandError("CSV file not found: %s" % path)
        image_root = Path(images) if images else Path.cwd()
        if images and not image_root.is_dir():
            raise CommandError("--images folder not found: %s" % image_root)

        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows, errors = self.parse(handle, image_root)
        if errors:
            message = "%d error(s) in %s; nothing was loaded:\n%s" % (
                len(errors),
                path.name,
                "\n".join("  " + e for e in errors),
            )
            raise CommandError(message)
        if dry_run:
            self.stdout.write(self.style.SUCCESS("%d rows are valid (dry run: nothing was loaded)." % len(rows)))
            return
        created, updated = self.load(rows)
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS("Loaded %s: %d created, %d updated." % (path.name, created, updated)))

    # --- validation ---------------------------------------------------------------------

    def parse(self, handle, image_root: Path) -> tuple[list[Row], list[str]]:
        try:
            reader = csv.DictReader(handle)
            header = [name.strip().lower() for name in (reader.fieldnames or [])]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CommandError("Unreadable CSV: %s" % exc) from exc
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise CommandError(
                "Missing column(s): %s. Expected columns: %s." % (", ".join(missing), ", ".join(COLUMNS))
            )
        unknown = [name for name in header if name not in COLUMNS]
        if unknown:
            raise CommandError(
                "Unknown column(s): %s. Expected columns: %s." % (", ".join(unknown), ", ".join(COLUMNS))
            )
        reader.fieldnames = header

        rows: list[Row] = []
        errors: list[str] = []
        try:
            for number, raw in enumerate(reader, start=2):
                if None in raw:
                    errors.append("row %d: more values than columns" % number)
                    continue
                values = {name: (raw.get(name) or "").strip() for name in COLUMNS}
                if not any(values.values()):
                    continue  # blank line
                row, row_errors = self.parse_row(number, values, image_root)
                errors.extend("row %d: %s" % (number, e) for e in row_errors)
                if row is not None:
                    rows.append(row)
        except (csv.Error, UnicodeDecodeError) as exc:
            errors.append("row %d: unreadable CSV: %s" % (len(rows) + len(errors) + 2, exc))
        if not rows and not errors:
            errors.append("the file has no data rows")
        errors.extend(self.check_references(rows))
        return rows, errors

    def parse_row(self, number: int, values: dict[str, str], image_root: Path) -> tuple[Row | None, list[str]]:
        errors = []
        title = values["title"]
        if not title:
            errors.append("title is required")
        elif len(title) > 200:
            errors.append("title is longer than 200 characters")
        if not values["category"]:
            errors.append("category is required")
        elif len(values["category"]) > 100 or not slugify(values["category"]):
            errors.append("category %r is not a valid category name" % values["category"])

        price = None
        try:
            price = Decimal(values["price"].replace(",", "")) if values["price"] else None
            if price is None:
                errors.append("price is required")
            elif not price.is_finite() or price < 0:
                errors.append("price must be a number >= 0, got %r" % values["price"])
            elif price.as_tuple().exponent < -2 or price >= Decimal("1e8"):
                errors.append("price %r must have at most 2 decimals and 8 digits before the point" % values["price"])
        except InvalidOperation:
            errors.append("price %r is not a number" % values["price"])

        stock = 0
        if values["stock"]:
            try:
                stock = int(values["stock"])
                if stock < 0:
                    errors.append("stock must be >= 0, got %r" % values["stock"])
            except ValueError:
                errors.append("stock %r is not a whole number" % values["stock"])

        for name in ("colour", "material", "size"):
            if len(values[name]) > 50:
                errors.append("%s is longer than 50 characters" % name)

        slug = values["slug"]
        if slug:
            try:
                validate_slug(slug)
                if len(slug) > 220:
                    raise ValidationError("too long")
            except ValidationError:
                errors.append("slug %r is not a valid slug (letters, digits, hyphens, underscores)" % slug)

        image = None
        if values["image"]:
            image, image_error = self.check_image(values["image"], image_root)
            if image_error:
                errors.append(image_error)

        if errors:
            return None, errors
        return (
            Row(
                number=number,
                title=title,
                description=values["description"],
                category=values["category"],
                price=price,
                stock=stock,
                colour=values["colour"],
                material=values["material"],
                size=values["size"],
                image=image,
                parent_slug=values["parent_slug"],
                slug=slug,
                explicit_slug=bool(slug),
            ),
            [],
        )

    @staticmethod
    def check_image(value: str, image_root: Path) -> tuple[Path | None, str | None]:
        root = image_root.resolve()
        candidate = (root / value).resolve()
        if not candidate.is_relative_to(root):
            return None, "image %r is outside the images folder" % value
        if not candidate.is_file():
            return None, "image %r not found in %s" % (value, root)
        try:
            with Image.open(candidate) as img:
                if img.format not in IMAGE_FORMATS:
                    return None, "image %r is a %s, expected one of %s" % (
                        value,
                        img.format,
                        ", ".join(sorted(IMAGE_FORMATS)),
                    )
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    return None, "image %r is too large (%dx%d)" % (value, img.width, img.height)
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as exc:
            return None, "image %r is not a readable image (%s)" % (value, exc)
        return candidate, None

    def check_references(self, rows: list[Row]) -> list[str]:
        """Slugs unique within the file; generated slugs free; parents exist and are not variants."""
        errors = []
        explicit = {}
        for row in rows:
            if row.explicit_slug:
                if row.slug in explicit:
                    errors.append("row %d: slug %r is also used in row %d" % (row.number, row.slug, explicit[row.slug]))
                else:
                    explicit[row.slug] = row.number

        # Products the file updates (explicit slugs already in the database) keep their slug.
        taken = set(Product.objects.filter(slug__in=list(explicit)).values_list("slug", flat=True))
        used = set(explicit)
        generated = [row for row in rows if not row.explicit_slug]
        bases = {row.number: (slugify(row.title)[:200] or "product") for row in generated}
        if bases:
            similar = Q()
            for base in set(bases.values()):
                similar |= Q(slug=base) | Q(slug__startswith=base + "-")
            taken |= set(Product.objects.filter(similar).values_list("slug", flat=True))
        for row in generated:
            slug, n = bases[row.number], 2
            while slug in taken or slug in used:
                slug, n = "%s-%d" % (bases[row.number], n), n + 1
            row.slug = slug
            used.add(slug)

        in_file = {row.slug: row for row in rows}
        parent_slugs = {row.parent_slug for row in rows if row.parent_slug}
        in_db = dict(Product.objects.filter(slug__in=parent_slugs).values_list("slug", "parent_id"))
        with_variants = set(
            Product.objects.filter(
                slug__in=[r.slug for r in rows if r.parent_slug], variants__isnull=False
            ).values_list("slug", flat=True)
        )
        for row in rows:
            if not row.parent_slug:
                continue
            if row.slug in with_variants:
                errors.append("row %d: %r has variants of its own and cannot become a variant" % (row.number, row.slug))
            if row.parent_slug == row.slug:
                errors.append("row %d: a product cannot be its own parent" % row.number)
            elif row.parent_slug in in_file:
                if in_file[row.parent_slug].parent_slug:
                    errors.append("row %d: parent %r is itself a variant" % (row.number, row.parent_slug))
            elif row.parent_slug in in_db:
                if in_db[row.parent_slug] is not None:
                    errors.append("row %d: parent %r is itself a variant" % (row.number, row.parent_slug))
            else:
                errors.append("row %d: parent_slug %r matches no product" % (row.number, row.parent_slug))
        return errors

    # --- loading -------------------------------------------------------------------------

    def load(self, rows: list[Row]) -> tuple[int, int]:
        saved_files: list[str] = []
        created = updated = 0
        try:
            with transaction.atomic():
                categories = self.categories(rows)
                existing = Product.objects.in_bulk([row.slug for row in rows], field_name="slug")
                ids = {}
                # Parents (and standalone products) first, so that variants can point at them.
                for row in sorted(rows, key=lambda r: bool(r.parent_slug)):
                    product = existing.get(row.slug) or Product(slug=row.slug)
                    is_new = product.pk is None
                    product.title = row.title
                    product.description = row.description
                    product.category = categories[slugify(row.category)]
                    product.price = row.price
                    product.stock = row.stock
                    product.colour, product.material, product.size = row.colour, row.material, row.size
                    product.parent_id = None
                    if row.parent_slug:
                        product.parent_id = ids.get(row.parent_slug) or (
                            Product.objects.values_list("pk", flat=True).get(slug=row.parent_slug)
                        )
                    if row.image:
                        with row.image.open("rb") as handle:
                            name = default_storage.save(
                                "products/%s%s" % (row.slug, row.image.suffix.lower()), File(handle)
                            )
                        saved_files.append(name)
                        product.image.name = name
                    try:
                        product.full_clean(validate_unique=False, validate_constraints=False)
                    except ValidationError as exc:
                        raise CommandError("row %d: %s; nothing was loaded." % (row.number, _messages(exc))) from exc
                    product.save()
                    ids[row.slug] = product.pk
                    created += is_new
                    updated += not is_new
        except Exception:
            for name in saved_files:
                default_storage.delete(name)
            raise
        return created, updated

    def categories(self, rows: list[Row]) -> dict[str, Category]:
        wanted = {}
        for row in rows:
            wanted.setdefault(slugify(row.category), row.category)
        categories = {c.slug: c for c in Category.objects.filter(slug__in=wanted)}
        for slug, name in wanted.items():
            if slug not in categories:
                categories[slug] = Category.objects.create(name=name, slug=slug)
                self.stdout.write("Created category %s." % name)
        return categories


def _messages(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join("%s: %s" % (name, " ".join(msgs)) for name, msgs in exc.message_dict.items())
    return " ".join(exc.messages)
