"""Encode the catalogue into embedding spaces, in-process or through Celery, and report coverage."""

from __future__ import annotations

import time

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from ragrec_django import registry
from ragrec_django.adapters import get_adapter
from ragrec_django.conf import ragrec_settings
from ragrec_django.exceptions import SpaceMismatch
from ragrec_django.ml.base import EncoderError
from ragrec_django.services import encoding, pending


class Command(BaseCommand):
    help = (
        "Encode items into embedding spaces. By default queues Celery tasks in chunks; --sync encodes "
        "in this process. --stale encodes only items not yet encoded in the space's current generation; "
        "without it every item is checked and unchanged ones (same content hash and encoder) are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--space", action="append", dest="spaces", help="Only this space (repeatable).")
        parser.add_argument(
            "--stale", action="store_true", help="Only items not yet encoded, and saved items whose queuing failed."
        )
        parser.add_argument("--force", action="store_true", help="Re-encode even unchanged items.")
        parser.add_argument("--sync", action="store_true", help="Encode in this process instead of queuing tasks.")
        parser.add_argument(
            "--wait", action="store_true", help="After queuing, wait until every queued task has finished."
        )
        parser.add_argument("--timeout", type=float, default=3600, help="Seconds --wait waits (default 3600).")
        parser.add_argument(
            "--chunk-size", type=int, default=None, help="Items per chunk (default RAGREC ENCODE_CHUNK_SIZE)."
        )
        parser.add_argument("--report-only", action="store_true", help="Only print coverage.")

    def handle(self, *args, **options):
        try:
            spaces = options["spaces"] or list(registry.get_spaces())
            for name in spaces:
                registry.get_space(name)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if not options["report_only"]:
            chunk_size = options["chunk_size"] or ragrec_settings.ENCODE_CHUNK_SIZE
            queued = [] if options["wait"] and not options["sync"] else None  # ids of the tasks --wait waits on
            for name in spaces:
                self._reindex(name, options, chunk_size, queued)
            if queued is not None:
                self._wait(queued, options["timeout"])
        self._print_coverage(spaces)

    def _reindex(self, space: str, options, chunk_size: int, queued: list[str] | None) -> None:
        if options["stale"]:
            pks = encoding.stale_host_pks(space)
        else:
            pks = [str(pk) for pk in get_adapter().get_queryset().order_by("pk").values_list("pk", flat=True)]
        listed = set(pks)
        pks += [pk for pk in pending.pending_pks(space) if pk not in listed]  # saved, but their queuing failed
        chunks = [pks[i : i + chunk_size] for i in range(0, len(pks), chunk_size)]
        verb = "Encoding" if options["sync"] else "Queuing"
        self.stdout.write("%s %d item(s) into space %r in %d chunk(s)" % (verb, len(pks), space, len(chunks)))
        if options["sync"]:
            total = encoding.EncodeReport(space=space)
            with tqdm(total=len(pks), unit="item", desc=space, file=self.stderr._out, disable=not pks) as bar:
                for chunk in chunks:
                    try:
                        total.merge(encoding.encode_items(space, chunk, force=options["force"]))
                    except (SpaceMismatch, EncoderError) as exc:  # a model that cannot load stops the run
                        raise CommandError(str(exc)) from exc
                    bar.update(len(chunk))
                    pending.clear([space], chunk)
            self.stdout.write(
                "  %s: %d encoded, %d unchanged, %d failed" % (space, total.encoded, total.skipped, len(total.failed))
            )
        else:
            from ragrec_django.tasks import enqueue_encoding

            with tqdm(total=len(chunks), unit="chunk", desc=space, file=self.stderr._out, disable=not chunks) as bar:
                for chunk in chunks:
                    enqueue_encoding(chunk, [space], force=options["force"], tracked=queued)
                    bar.update(1)
                    pending.clear([space], chunk)

    def _wait(self, task_ids: list[str], timeout: float) -> None:
        """Wait until every task queued by this run has finished (its items encoded, skipped or failed)."""
        from ragrec_django.tasks import unfinished_tasks

        deadline = time.monotonic() + timeout
        total = len(task_ids)
        with tqdm(total=total, unit="task", desc="finished", file=self.stderr._out) as bar:
            while True:
                done = total - unfinished_tasks(task_ids)
                bar.update(done - bar.n)
                if done >= total:
                    return
                if time.monotonic() > deadline:
                    raise CommandError(
                        "Timed out after %.0f s with %d of %d queued task(s) finished; is a Celery worker running?"
                        % (timeout, done, total)
                    )
                time.sleep(0.5)

    def _print_coverage(self, spaces) -> None:
        self.stdout.write("\nCoverage")
        self.stdout.write(
            "%-12s %-40s %8s %8s %8s %8s" % ("space", "generation", "items", "encoded", "failed", "stale")
        )
        for row in encoding.coverage(spaces):
            self.stdout.write(
                "%-12s %-40s %8d %8d %8d %8d"
                % (row.space, row.generation[:40], row.items, row.encoded, row.failed, row.stale)
            )
            for key, reason in row.failures:
                self.stdout.write("    failed item %s: %s" % (key, reason))
