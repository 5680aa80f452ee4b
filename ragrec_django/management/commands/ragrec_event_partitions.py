"""Create the coming months' event partitions and drop the months past RAGREC['EVENT_RETENTION_MONTHS']."""

from django.core.management.base import BaseCommand, CommandError

from ragrec_django.services.partitions import MONTHS_AHEAD, maintain_event_partitions


def _months(months) -> str:
    return ", ".join(month.strftime("%Y-%m") for month in months) or "none"


class Command(BaseCommand):
    help = (
        "Create the event table's partitions for this month and the next ones (and for any month whose events wait "
        "in the default partition), then drop the months older than RAGREC['EVENT_RETENTION_MONTHS'] (or "
        "--retention-months) with their events. Idempotent: run it daily or monthly, e.g. from cron."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--retention-months",
            type=int,
            default=None,
            help="Months kept before the current one (default: the setting).",
        )
        parser.add_argument(
            "--months-ahead",
            type=int,
            default=MONTHS_AHEAD,
            help="Months after this one to create (default: %(default)s).",
        )

    def handle(self, *args, retention_months=None, months_ahead=MONTHS_AHEAD, **options):
        try:
            upkeep = maintain_event_partitions(retention_months=retention_months, months_ahead=months_ahead)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write("Created month partitions: %s." % _months(upkeep.created))
        if upkeep.kept_from is None:
            self.stdout.write("Dropped: none (RAGREC['EVENT_RETENTION_MONTHS'] is None: every event is kept).")
        else:
            self.stdout.write(
                "Dropped month partitions before %s: %s."
                % (upkeep.kept_from.strftime("%Y-%m"), _months(upkeep.dropped))
            )
