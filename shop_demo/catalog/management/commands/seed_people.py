"""manage.py seed_people: demo shoppers and staff, and the shoppers' browsing and order history."""

from __future__ import annotations

import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from ragrec_django.models import Interaction
from ragrec_django.services.events import MAX_BATCH, EventInput, record_events

from ...models import Product
from ...people import (
    DEMO_PASSWORD,
    EMAIL_DOMAIN,
    KEY_PREFIX,
    MANAGERS_GROUP,
    REVIEWERS_GROUP,
    SHOPPERS,
    STAFF,
    CatalogueProduct,
    plan_history,
)

#: Permissions of the reviewers' group (app_label.codename); managers get every permission of these apps.
REVIEWER_PERMISSIONS = (
    "ragrec_django.review_descriptiondraft",
    "ragrec_django.view_descriptiondraft",
    "ragrec_django.view_publisheddescription",
    "ragrec_django.view_generationjob",
    "catalog.view_product",
    "catalog.view_category",
)
MANAGER_APPS = ("ragrec_django", "catalog")
#: The history is moved forward when its newest event is older than this (so "trending" stays alive).
STALE_AFTER = timedelta(days=1)


class Command(BaseCommand):
    requires_system_checks = []
    help = (
        "Create the demo people: %d shoppers (password %r) with favourite categories, a 'reviewer' who reviews "
        "description drafts and a 'manager' who also publishes them and manages the shop in the admin; then "
        "record the shoppers' history (views, clicks, searches, adds to cart and orders over the last DAYS days) "
        "through ragrec_django's event service. Deterministic and idempotent: a second run stores nothing twice "
        "(it only moves an old history forward so that 'trending' stays current). Run seed_catalog first."
        % (len(SHOPPERS), DEMO_PASSWORD)
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=7, help="Random seed of the history (default 7).")
        parser.add_argument("--days", type=int, default=60, help="The history spans this many days (default 60).")
        parser.add_argument("--no-history", action="store_true", help="Only create the people.")

    def handle(self, *args, seed, days, no_history, verbosity=1, **options):
        started = time.monotonic()
        self.verbosity = verbosity
        if days < 1:
            raise CommandError("--days must be at least 1.")
        with transaction.atomic():
            created = self.ensure_people()
            if no_history:
                stored, orders = 0, 0
            else:
                stored, orders = self.record_history(seed, days)
        self.log(
            "Demo people: %d shoppers and %d staff (%d new); history: %d new events in %d new orders (%.1fs)."
            % (len(SHOPPERS), len(STAFF), created, stored, orders, time.monotonic() - started),
            success=True,
        )

    def log(self, message: str, success: bool = False) -> None:
        if self.verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(message) if success else message)

    # --- people ------------------------------------------------------------------------------

    def ensure_people(self) -> int:
        User = get_user_model()
        wanted = [(s.username, s.first_name, "", False) for s in SHOPPERS]
        wanted += [(s.username, s.first_name, s.last_name, True) for s in STAFF]
        existing = set(
            User._default_manager.filter(username__in=[w[0] for w in wanted]).values_list("username", flat=True)
        )
        password = make_password(DEMO_PASSWORD)  # hashed once: hashing is deliberately slow
        new = [
            User(
                username=username,
                first_name=first,
                last_name=last,
                email="%s@%s" % (username, EMAIL_DOMAIN),
                is_staff=staff,
                password=password,
            )
            for username, first, last, staff in wanted
            if username not in existing
        ]
        User._default_manager.bulk_create(new)
        reviewers = self.group(REVIEWERS_GROUP, self.permissions_named(REVIEWER_PERMISSIONS))
        managers = self.group(MANAGERS_GROUP, Permission.objects.filter(content_type__app_label__in=MANAGER_APPS))
        groups = {REVIEWERS_GROUP: reviewers, MANAGERS_GROUP: managers}
        for member in STAFF:
            user = User._default_manager.get(username=member.username)
            user.groups.add(groups[member.group])
        return len(new)

    def permissions_named(self, names):
        found = []
        for name in names:
            app_label, codename = name.split(".")
            permission = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
            if permission is None:
                raise CommandError("Permission %s does not exist: run manage.py migrate first." % name)
            found.append(permission)
        return found

    @staticmethod
    def group(name, permissions) -> Group:
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*permissions)
        return group

    # --- history -----------------------------------------------------------------------------

    def record_history(self, seed: int, days: int) -> tuple[int, int]:
        products = [
            CatalogueProduct(key=str(pk), slug=slug, category=category, colour=colour, in_stock=stock > 0)
            for pk, slug, category, colour, stock in Product.objects.active().values_list(
                "pk", "slug", "category__slug", "colour", "stock"
            )
        ]
        if not products:
            self.log("No products: run seed_catalog first; no history recorded.")
            return 0, 0
        now = timezone.now()
        demo_events = Interaction.objects.filter(idempotency_key__startswith=KEY_PREFIX)
        self.refresh(demo_events, now)
        planned = plan_history(products, now=now, seed=seed, days=days)
        seen = set(demo_events.values_list("idempotency_key", flat=True))
        missing = [event for event in planned if event.key not in seen]
        if not missing:
            return 0, 0
        User = get_user_model()
        user_ids = dict(
            User._default_manager.filter(username__in=[s.username for s in SHOPPERS]).values_list("username", "pk")
        )
        inputs = [
            EventInput(
                event=e.event,
                item=e.item,
                user_id=user_ids[e.username] if e.username else None,
                session_key=e.session_key,
                order_id=e.order_id,
                quantity=e.quantity,
                query=e.query,
                source=e.source,
                idempotency_key=e.key,
                created_at=e.at,
            )
            for e in missing
        ]
        stored = 0
        for start in range(0, len(inputs), MAX_BATCH):
            stored += record_events(inputs[start : start + MAX_BATCH]).stored
        orders = len({e.order_id for e in missing if e.order_id})
        return stored, orders

    def refresh(self, demo_events, now) -> None:
        """Move an old demo history forward, so its newest event is recent again."""
        newest = demo_events.aggregate(newest=Max("created_at"))["newest"]
        if newest is None or now - newest < STALE_AFTER:
            return
        shift = now - newest - timedelta(minutes=30)
        demo_events.update(created_at=F("created_at") + shift)
        self.log("Moved the demo history %d day(s) forward, so trending reflects it." % shift.days)
