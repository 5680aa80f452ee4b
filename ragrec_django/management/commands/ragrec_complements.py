"""Propose "goes with" pairs from content for merchandisers to approve or reject in the admin."""

from django.core.management.base import BaseCommand

from ragrec_django.models import ComplementPair
from ragrec_django.services.recommend import propose_complements


class Command(BaseCommand):
    help = (
        "Propose complementary pairs from content (semantically related items in other categories; no purchase "
        "data needed). Proposals appear under Recommendations > Complement pairs for approval."
    )

    def add_arguments(self, parser):
        parser.add_argument("--item", action="append", dest="items", help="Only for this item id (repeatable).")
        parser.add_argument("--per-item", type=int, default=5, help="Proposals per item (default 5).")

    def handle(self, *args, items=None, per_item=5, **options):
        proposed = propose_complements(items, per_item=per_item)
        pending = ComplementPair.objects.filter(status=ComplementPair.Status.PROPOSED).count()
        self.stdout.write("Proposed %d pair(s); %d await review." % (proposed, pending))
