"""Delete the assistant's conversations older than the retention period."""

from django.core.management.base import BaseCommand

from ragrec_django.services.conversation import purge


class Command(BaseCommand):
    help = (
        "Delete assistant conversations (and their turns) untouched for RAGREC['CONVERSATION_RETENTION_DAYS'] days "
        "(or --days). Run it daily, e.g. from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="Retention in days (default: the setting).")

    def handle(self, *args, days=None, **options):
        self.stdout.write("Deleted %d conversation(s)." % purge(days))
