"""manage.py seed_catalog: a deterministic demo catalogue with drawn product pictures."""

from __future__ import annotations

import os
import time
from multiprocessing import get_context
from pathlib import Path

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ...imaging import write_image
from ...models import Category, Product
from ...seeding import CATEGORIES, generate

# Below this many pictures, drawing in one process is faster than starting a pool.
POOL_THRESHOLD = 300


class Command(BaseCommand):
    # A data command: it does not need (slow) project-wide system checks, which would for instance
    # refuse to seed a shop whose database lacks the recommendation plugin's pgvector extension.
    requires_system_checks = []
    help = (
        "Create a deterministic demo catalogue: COUNT products (parents and variants in other colours "
        "or sizes) over %d categories, each with a Pillow-drawn JPEG of its category's silhouette in its "
        "colour, written to MEDIA_ROOT/products/<slug>.jpg. The same --count and --seed always give the "
        "same products. Idempotent: products whose slug already exists are kept as they are, and existing "
        "image files are not redrawn, so a second run creates nothing." % len(CATEGORIES)
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=1200, help="Number of products (default 1200).")
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")
        parser.add_argument("--no-images", action="store_true", help="Do not draw or attach product images.")
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="Processes drawing images (default: CPU count when there are many images, else 1).",
        )

    def handle(self, *args, count, seed, no_images, processes, verbosity=1, **options):
        if count < 1:
            raise CommandError("--count must be at least 1.")
        started = time.monotonic()
        self.verbosity = verbosity
        specs = generate(count, seed)
        self.log("Catalogue of %d products (seed %d) in %d categories." % (len(specs), seed, len(CATEGORIES)))

        existing = {
            slug: (pk, image)
            for pk, slug, image in Product.objects.filter(slug__in=[s.slug for s in specs]).values_list(
                "pk", "slug", "image"
            )
        }
        drawn = 0 if no_images else self.draw_images(specs, existing, processes)

        with transaction.atomic():
            categories = self.ensure_categories(specs)
            created, variants = self.create_products(specs, existing, categories, no_images)
            attached = 0 if no_images else self.attach_images(specs, existing)

        elapsed = time.monotonic() - started
        if created or drawn or attached:
            self.log(
                "Created %d products (%d variants), drew %d images, attached %d existing images in %.1fs."
                % (created, variants, drawn, attached, elapsed),
                success=True,
            )
        else:
            self.log(
                "Nothing to do: all %d products and their images already exist (%.1fs)." % (len(specs), elapsed),
                success=True,
            )

    # --- steps -----------------------------------------------------------------------

    def log(self, message: str, success: bool = False) -> None:
        if self.verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(message) if success else message)

    def media_path(self, name: str) -> Path:
        try:
            return Path(default_storage.path(name))
        except NotImplementedError as exc:
            raise CommandError(
                "seed_catalog writes image files directly and needs a local file storage; "
                "run it with --no-images on this storage."
            ) from exc

    def draw_images(self, specs, existing, processes) -> int:
        """Draw the missing pictures of products that have (or will have) the seeded image name."""
        jobs = []
        for spec in specs:
            if spec.slug in existing and existing[spec.slug][1] not in ("", spec.image_name):
                continue  # the product has another image: leave it alone
            path = self.media_path(spec.image_name)
            if not path.exists():
                jobs.append((str(path), spec.category.shape, spec.colour, spec.style))
        if not jobs:
            self.log("Images: all %d exist." % len(specs))
            return 0
        if processes is None:
            processes = min(os.cpu_count() or 1, 8) if len(jobs) >= POOL_THRESHOLD else 1
        self.log("Drawing %d images with %d process%s..." % (len(jobs), processes, "" if processes == 1 else "es"))
        step = max(1, len(jobs) // 10)
        if processes > 1:
            with get_context("fork" if "fork" in _start_methods() else None).Pool(processes) as pool:
                for done, _ in enumerate(pool.imap_unordered(write_image, jobs, chunksize=16), 1):
                    self.progress(done, len(jobs), step)
        else:
            for done, job in enumerate(jobs, 1):
                write_image(job)
                self.progress(done, len(jobs), step)
        return len(jobs)

    def progress(self, done: int, total: int, step: int) -> None:
        if self.verbosity >= 1 and (done % step == 0 or done == total):
            self.stdout.write("  %d/%d images" % (done, total))

    def ensure_categories(self, specs) -> dict[str, Category]:
        wanted = {spec.category.slug: spec.category for spec in specs}
        categories = {c.slug: c for c in Category.objects.filter(slug__in=wanted)}
        missing = [Category(name=wanted[slug].name, slug=slug) for slug in wanted if slug not in categories]
        if missing:
            Category.objects.bulk_create(missing)
            categories.update((c.slug, c) for c in Category.objects.filter(slug__in=wanted))
            self.log("Created %d categories." % len(missing))
        return categories

    def create_products(self, specs, existing, categories, no_images) -> tuple[int, int]:
        """Insert the products not there yet: parents first, then variants pointing at them."""
        ids = {slug: pk for slug, (pk, _) in existing.items()}
        new = [spec for spec in specs if spec.slug not in existing]
        parents = [spec for spec in new if spec.parent_slug is None]
        variants = [spec for spec in new if spec.parent_slug is not None]
        for batch in (parents, variants):
            objects = [self.product(spec, categories, ids, no_images) for spec in batch]
            for spec, obj in zip(batch, Product.objects.bulk_create(objects, batch_size=500)):
                ids[spec.slug] = obj.pk
        if new:
            self.log("Inserted %d products." % len(new))
        return len(new), len(variants)

    @staticmethod
    def product(spec, categories, ids, no_images) -> Product:
        return Product(
            title=spec.title,
            slug=spec.slug,
            description=spec.description,
            category=categories[spec.category.slug],
            price=spec.price,
            stock=spec.stock,
            colour=spec.colour,
            material=spec.material,
            size=spec.size,
            is_active=spec.is_active,
            parent_id=ids.get(spec.parent_slug) if spec.parent_slug else None,
            image="" if no_images else spec.image_name,
        )

    def attach_images(self, specs, existing) -> int:
        """Existing products without an image (seeded with --no-images before) get their picture."""
        slugs = [spec.slug for spec in specs if spec.slug in existing and not existing[spec.slug][1]]
        if not slugs:
            return 0
        products = list(Product.objects.filter(slug__in=slugs, image=""))
        for product in products:
            product.image = "products/%s.jpg" % product.slug
        Product.objects.bulk_update(products, ["image"], batch_size=500)
        return len(products)


def _start_methods():
    from multiprocessing import get_all_start_methods

    return get_all_start_methods()
