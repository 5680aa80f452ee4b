"""Partitioned tables (issue 16): a space-generation switch and drop at 1M embeddings, and the history reads at
100k and 1M events.

    nice -n 19 .venv/bin/python benchmarks/partitions.py [--embeddings 1000000] [--dimension 384]
        [--events 100000,1000000] [--rounds 3] [--unpartitioned-baseline] [--skip-generations]
        [--maintenance-work-mem 2GB] [--json docs/benchmarks/partitions.json]

Everything runs in a scratch database (``--db-name``, default ``parts_bench``) created and migrated like a shop's,
dropped at the end (also after an error or Ctrl-C), on the configured server (the embedded PostgreSQL unless
DATABASE_URL is set).

(a) Generations. ``--embeddings`` synthetic items (``synthetic_catalogue.make_catalogue``, COPY) and generation 1 of
    the space "text" holding one clustered unit vector per item (``synthetic_catalogue.clustered_vectors``, binary
    COPY) with its HNSW index. Then a switch as ``manage.py ragrec_spaces switch`` runs it: ``start_switch`` (the new
    generation's partition and index, empty), the vectors of the new generation written (COPY) and its index built
    (as ``benchmarks/query.py`` loads: the index dropped during the load, then ``create_index``), ``promote``, and
    ``drop_retired`` (the retired partition dropped). Beside the drop, what the unpartitioned table paid: ``DELETE``
    of the retired generation's rows (timed, then rolled back; it also left those rows for VACUUM). The live
    partition's heap and index sizes before and after the new generation's load show it did not grow.
(b) Events. 200 signed-in probe shoppers with 60 events each (views, clicks, purchases in orders of about three
    lines) over the last 24 months, and events of other visitors (sessions) up to each size of ``--events``
    (``storage.copy_interactions``), the months' partitions made first. Per size, p50 / p90 of the history reads
    for every probe shopper: "for you"'s profile (their last 200 events, as ``services.history.for_you`` reads
    them), recently viewed and buy again (the services, ``services.history.recently_viewed`` / ``buy_again``,
    whose one read each is their whole cost here: no vectors are involved). Each size is a database of its own and
    the rounds alternate between them, so every size meets the same machine load; ``--unpartitioned-baseline``
    adds, per size, a copy whose event table is migrated back to the unpartitioned one (migration 0012). After the
    reads, on the largest partitioned one: retention of 12 months (``maintain_event_partitions``, timed) beside
    the ``DELETE`` of the same events and the ``VACUUM`` after it on the largest unpartitioned one (without
    ``--unpartitioned-baseline``: the ``DELETE`` on the partitioned table, rolled back).

The machine (``lscpu``, ``uptime``) and the load average before and after each phase are recorded: on a shared
machine the figures are upper bounds of the work's own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic_catalogue as synth  # noqa: E402

PROBE_SHOPPERS = 200
PROBE_EVENTS = 60
MONTHS = 24
RETENTION_MONTHS = 12
#: Items the events refer to (the first of the catalogue), loaded in each event database.
EVENT_ITEMS = 100_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embeddings", type=int, default=1_000_000, help="Items, and vectors per generation.")
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--events", default="100000,1000000", help="Event table sizes, ascending.")
    parser.add_argument("--maintenance-work-mem", default="2GB", help="For the HNSW builds (the graph must fit).")
    parser.add_argument("--db-name", default="parts_bench")
    parser.add_argument("--skip-generations", action="store_true", help="Run (b) only (items are still loaded).")
    parser.add_argument("--rounds", type=int, default=3, help="Timed passes over the probe shoppers per database.")
    parser.add_argument(
        "--unpartitioned-baseline",
        action="store_true",
        help="(b) also on the unpartitioned event table (a copy migrated back to 0012) at each size.",
    )
    parser.add_argument("--json", default=None)
    return parser.parse_args()


def log(message: str) -> None:
    print("[%s] %s" % (time.strftime("%H:%M:%S"), message), flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    def run(*command):
        return subprocess.run(command, capture_output=True, text=True).stdout.strip()

    return {"lscpu_head": run("lscpu").splitlines()[:10], "uptime": run("uptime"), "python": sys.version.split()[0]}


class Timer:
    """``with Timer(figures, "name"):`` stores the block's seconds (and the load average around it)."""

    def __init__(self, figures: dict, name: str):
        self.figures, self.name = figures, name

    def __enter__(self):
        self.load_before, self.start = load_average(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.figures[self.name + "_s"] = round(time.perf_counter() - self.start, 3)
            self.figures[self.name + "_load"] = [self.load_before, load_average()]


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(ordered[int(len(ordered) * 0.9)] * 1000, 3),
    }


# ---------------------------------------------------------------- loading


def load_items(catalogue, connection, count: int | None = None) -> list[int]:
    """COPY the catalogue's first ``count`` items (default all; the columns ranking reads); their ids in order."""
    from django.utils import timezone

    from ragrec_django.models import Item

    columns = ["key", "title", "category", "price", "in_stock", "is_eligible", "url", "group_key", "is_promoted"]
    columns += ["text", "metadata", "created_at", "updated_at"]
    now = timezone.now()
    with connection.cursor() as cursor:
        with cursor.copy("COPY %s (%s) FROM STDIN" % (Item._meta.db_table, ", ".join(columns))) as copy:
            for i, key in enumerate(catalogue.keys()[:count]):
                copy.write_row(
                    (
                        key,
                        catalogue.titles[i],
                        catalogue.categories[catalogue.category[i]],
                        "%.2f" % catalogue.price[i],
                        bool(catalogue.in_stock[i]),
                        bool(catalogue.eligible[i]),
                        "/products/%s/" % key,
                        catalogue.group_key[i],
                        False,
                        catalogue.titles[i],
                        "{}",
                        now,
                        now,
                    )
                )
    ids = dict(Item.objects.values_list("key", "id"))
    return [ids[key] for key in catalogue.keys()[:count]]


def copy_vectors(generation, item_ids: list[int], vectors: np.ndarray, connection) -> None:
    """Binary COPY of one vector per item into the generation (its partition, through the parent table)."""
    from django.utils import timezone
    from pgvector import HalfVector
    from pgvector.psycopg import register_vector

    from ragrec_django.models import Embedding

    register_vector(connection.connection)
    now = timezone.now()
    columns = "vector, encoder_version, content_hash, updated_at, item_id, generation_id"
    with connection.cursor() as cursor:
        with cursor.copy("COPY %s (%s) FROM STDIN WITH (FORMAT BINARY)" % (Embedding._meta.db_table, columns)) as copy:
            copy.set_types(["halfvec", "varchar", "varchar", "timestamptz", "int8", "int8"])
            for item_id, vector in zip(item_ids, vectors, strict=True):
                copy.write_row((HalfVector(vector), generation.encoder_version, "bench", now, item_id, generation.pk))


def relation_sizes(connection, *names: str) -> dict:
    with connection.cursor() as cursor:
        sizes = {}
        for name in names:
            cursor.execute("SELECT pg_relation_size(%s::regclass)", [name])
            sizes[name] = cursor.fetchone()[0]
        return sizes


def fill_generation(generation, item_ids, vectors, connection, figures: dict, prefix: str) -> None:
    """Load the generation's vectors with its index dropped, then build the index (both timed)."""
    from django.db import transaction

    from ragrec_django import storage

    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS %s" % connection.ops.quote_name(generation.index_name))
    with Timer(figures, prefix + "load"):
        copy_vectors(generation, item_ids, vectors, connection)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE %s" % connection.ops.quote_name(storage.generation_partition(generation)))
    with Timer(figures, prefix + "index_build"), transaction.atomic():
        storage.create_index(generation)
    figures[prefix + "rows_per_s"] = round(len(item_ids) / figures[prefix + "load_s"])


# ---------------------------------------------------------------- (a) generations


def generations_phase(catalogue, item_ids, args, connection) -> dict:
    from django.db import transaction

    from ragrec_django import storage
    from ragrec_django.registry import SpaceConfig
    from ragrec_django.services import spaces

    space = SpaceConfig(name="text", encoder_alias="minilm", modality="text")
    figures: dict = {"rows": len(item_ids), "dimension": args.dimension}
    log("(a) generation 1: %d vectors" % len(item_ids))
    first = storage.write_generation(space, version="bench-v1", dimension=args.dimension)
    fill_generation(
        first, item_ids, synth.clustered_vectors(catalogue, args.dimension, seed=11), connection, figures, "g1_"
    )
    live = [storage.generation_partition(first), first.index_name]
    figures["live_bytes_before"] = relation_sizes(connection, *live)

    log("(a) switch: generation 2")
    with Timer(figures, "start_switch"):  # the new partition and its (empty) index, in one transaction
        second = storage.start_switch(space, version="bench-v2", dimension=args.dimension)
    fill_generation(
        second, item_ids, synth.clustered_vectors(catalogue, args.dimension, seed=12), connection, figures, "g2_"
    )
    figures["live_bytes_after"] = relation_sizes(connection, *live)
    figures["new_bytes"] = relation_sizes(connection, storage.generation_partition(second), second.index_name)

    with Timer(figures, "promote"):
        spaces.promote("text")
    with Timer(figures, "delete_rows_unpartitioned_way"), transaction.atomic():
        with (
            connection.cursor() as cursor
        ):  # what retiring a generation cost before: its rows deleted, rolled back here
            cursor.execute("DELETE FROM ragrec_django_embedding WHERE generation_id = %s", [first.pk])
            figures["deleted_rows"] = cursor.rowcount
        transaction.set_rollback(True)
    with Timer(figures, "drop_retired"):
        dropped = [g.number for g in spaces.drop_retired("text")]
    figures["dropped_generations"] = dropped
    figures["plan_uses_partition_index"] = plan_uses_index(second, catalogue, args, connection)
    return figures


def plan_uses_index(generation, catalogue, args, connection) -> bool:
    """Whether ``storage.nearest``'s query reads the active partition through its HNSW index (EXPLAIN)."""
    from django.test.utils import CaptureQueriesContext

    from ragrec_django import storage

    query = synth.clustered_vectors(catalogue, args.dimension, seed=13)[0]
    with CaptureQueriesContext(connection) as captured:
        storage.nearest("text", query, 10)
    sql = next(q["sql"] for q in captured.captured_queries if "<=>" in q["sql"])
    sql = sql[sql.index("SELECT") :]  # after the SET LOCAL statements sent with it
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    log(plan)
    return generation.index_name in plan and storage.generation_partition(generation) in plan


# ---------------------------------------------------------------- (b) events


def event_rows(rng, count: int, item_ids: list[int], start, span_s: float, *, user_id=None, session=""):
    """``count`` events of one visitor (``storage.COPY_COLUMNS`` order): 70% views, 10% clicks, purchases in orders of
    about three lines."""
    rows = []
    times = sorted(start + timedelta(seconds=float(s)) for s in rng.uniform(0, span_s, count))
    kinds = rng.choice(["view", "click", "purchase"], size=count, p=[0.7, 0.1, 0.2])
    order = 0
    for n, (at, kind) in enumerate(zip(times, kinds, strict=True)):
        if kind == "purchase" and (n == 0 or rng.random() < 0.35):
            order += 1
        order_id = "o%d" % order if kind == "purchase" else ""
        item = item_ids[int(rng.integers(len(item_ids)))]
        rows.append((kind, item, user_id, session, order_id, 1, "", "", at))
    return rows


def history_samples(probes, samples: dict, warm_up: bool = False) -> None:
    """Time each history read once for every probe shopper into ``samples`` (read name -> seconds); a warm-up pass
    keeps nothing."""
    from ragrec_django.models import Interaction
    from ragrec_django.services import history
    from ragrec_django.services.results import Visitor

    def profile(visitor):  # as services.history.for_you reads the history its profile is built from
        return list(
            visitor.events()
            .exclude(event=Interaction.Event.SEARCH)
            .order_by("-created_at")
            .values_list("item_id", "event", "created_at")[:200]
        )

    reads = {
        "for_you_profile": profile,
        "recently_viewed": lambda visitor: history.recently_viewed(visitor, k=10),
        "buy_again": lambda visitor: history.buy_again(visitor, k=10),
    }
    for user_id in probes:
        visitor = Visitor(user_id=user_id)
        for name, read in reads.items():
            start = time.perf_counter()
            found = read(visitor)
            elapsed = time.perf_counter() - start
            assert found, "%s found nothing for probe shopper %s" % (name, user_id)
            if not warm_up:
                samples.setdefault(name, []).append(elapsed)


def use_database(connection, name: str) -> None:
    """Point the default connection at database ``name``, its server process at the lowest CPU priority."""
    connection.close()
    connection.settings_dict["NAME"] = name
    lower_backend_priority(connection)


def lower_backend_priority(connection) -> None:
    """``renice`` this session's PostgreSQL process (the machine is shared; where permitted, i.e. a local server run
    by the same user or root) and keep its index builds in that one process (no parallel maintenance workers)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
        cursor.execute("SET max_parallel_maintenance_workers = 0")
    subprocess.run(["renice", "-n", "19", "-p", str(pid)], capture_output=True)


def fill_events(item_ids, size: int, span_s: float, start, figures: dict, partitioned: bool = True) -> list[int]:
    """In the connected database: the months' partitions, the probe shoppers and their events (the same in every
    database: same seed, fresh sequences), then other visitors' events up to ``size`` rows; the probes' user ids."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from ragrec_django import storage
    from ragrec_django.models import Interaction

    if partitioned:
        current = storage.month_start(start + timedelta(seconds=span_s))
        with Timer(figures, "create_months"), transaction.atomic():
            created = storage.create_event_months([storage.add_months(current, -n) for n in range(MONTHS + 1)])
        figures["months_created"] = len(created)
    user = get_user_model()
    probes = [u.pk for u in user.objects.bulk_create([user(username="probe-%d" % n) for n in range(PROBE_SHOPPERS)])]
    rng = np.random.default_rng(21)
    rows = [row for uid in probes for row in event_rows(rng, PROBE_EVENTS, item_ids, start, span_s, user_id=uid)]
    with Timer(figures, "load"):
        storage.copy_interactions(rows)
        loaded, background = len(rows), 0
        while loaded < size:
            batch = []
            while len(batch) < min(250_000, size - loaded):
                count = min(int(rng.integers(5, 40)), size - loaded - len(batch))
                batch += event_rows(rng, count, item_ids, start, span_s, session="bg-%d" % background)
                background += 1
            storage.copy_interactions(batch)
            loaded += len(batch)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE %s" % Interaction._meta.db_table)
    figures["rows"] = Interaction.objects.count()
    figures["rows_per_s"] = round(figures["rows"] / figures["load_s"])
    return probes


def events_phase(item_ids, steps: list[dict], rounds: int, connection) -> dict:
    """Each step (``events``, ``database``, ``partitioned``) in its own database; the history reads measured in
    alternating rounds (each database in turn, a warm-up pass after each switch), so all meet the same machine
    load. Retention on the largest partitioned one."""
    from django.db import transaction
    from django.utils import timezone

    from ragrec_django import storage
    from ragrec_django.models import Interaction
    from ragrec_django.services.partitions import maintain_event_partitions

    now = timezone.now()
    span_s = MONTHS * 30.4 * 86400
    start = now - timedelta(seconds=span_s)
    figures: dict = {"sizes": steps}
    probes = None
    for step in figures["sizes"]:
        log("(b) events: %d rows in %s" % (step["events"], step["database"]))
        use_database(connection, step["database"])
        found = fill_events(item_ids, step["events"], span_s, start, step, step["partitioned"])
        assert probes in (None, found), "the probe shoppers differ between the databases"
        probes = found
    samples = {step["database"]: {} for step in figures["sizes"]}
    for round_ in range(rounds):
        for step in figures["sizes"]:
            use_database(connection, step["database"])
            history_samples(probes, samples[step["database"]], warm_up=True)
            history_samples(probes, samples[step["database"]])
            log("(b) round %d, %s" % (round_ + 1, step["database"]))
    for step in figures["sizes"]:
        step["reads"] = {name: percentiles(values) for name, values in samples[step["database"]].items()}
        log("(b) %s: %s" % (step["database"], json.dumps(step["reads"])))

    cutoff = storage.add_months(storage.month_start(now), -RETENTION_MONTHS)
    cutoff_at = datetime(cutoff.year, cutoff.month, 1, tzinfo=dt_timezone.utc)
    table = Interaction._meta.db_table
    plain = [step for step in steps if not step["partitioned"]]
    if plain:  # the same retention on the unpartitioned table: its DELETE, then the VACUUM that reclaims the rows
        use_database(connection, max(plain, key=lambda step: step["events"])["database"])
        with Timer(figures, "retention_delete_unpartitioned"), connection.cursor() as cursor:
            cursor.execute("DELETE FROM %s WHERE created_at < %%s" % table, [cutoff_at])
            figures["retention_rows"] = cursor.rowcount
        with Timer(figures, "retention_vacuum_unpartitioned"), connection.cursor() as cursor:
            cursor.execute("VACUUM %s" % table)
    largest = max((step for step in steps if step["partitioned"]), key=lambda step: step["events"])
    use_database(connection, largest["database"])
    if not plain:
        with Timer(figures, "retention_delete_rolled_back"), transaction.atomic():
            with connection.cursor() as cursor:  # what the same retention costs as a DELETE: rolled back here
                cursor.execute("DELETE FROM %s WHERE created_at < %%s" % table, [cutoff_at])
                figures["retention_rows"] = cursor.rowcount
            transaction.set_rollback(True)
    with Timer(figures, "retention_drop"):
        upkeep = maintain_event_partitions(retention_months=RETENTION_MONTHS)
    figures["retention_months_dropped"] = len(upkeep.dropped)
    figures["rows_after_retention"] = Interaction.objects.count()
    return figures


# ---------------------------------------------------------------- main


def main() -> int:
    args = parse_args()
    sizes = sorted(int(s) for s in args.events.split(",") if s.strip())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report: dict = {"args": vars(args), "machine": machine(), "load_average_start": load_average()}

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))

    connection.settings_dict["TEST"]["NAME"] = args.db_name
    original_name = connection.settings_dict["NAME"]
    steps = [
        {"events": size, "database": "%s_events_%d%s" % (args.db_name, size, suffix), "partitioned": not suffix}
        for suffix in ("", "_plain")[: 2 if args.unpartitioned_baseline else 1]
        for size in sizes
    ]
    event_databases = [step["database"] for step in steps]
    log("creating scratch databases %s" % ", ".join([args.db_name, *event_databases]))
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        connection.close()
        with connection._nodb_cursor() as cursor:  # copies of the freshly migrated database, one per event size
            for name in event_databases:
                cursor.execute("DROP DATABASE IF EXISTS %s" % name)
                cursor.execute("CREATE DATABASE %s TEMPLATE %s" % (name, args.db_name))
        ragrec = {**settings.RAGREC, "AUTO_ENCODE": False, "SPACES": {}}
        with override_settings(RAGREC=ragrec, DEBUG=False):
            lower_backend_priority(connection)
            log("catalogue of %d items" % args.embeddings)
            figures: dict = {}
            with Timer(figures, "make_catalogue"):
                catalogue = synth.make_catalogue(args.embeddings, seed=0)
            with Timer(figures, "items_copy"):
                item_ids = load_items(catalogue, connection)
            event_items = min(EVENT_ITEMS, len(item_ids))
            for step in steps:  # the items events refer to, with the same ids
                use_database(connection, step["database"])
                assert load_items(catalogue, connection, event_items) == item_ids[:event_items]
                if not step["partitioned"]:
                    call_command("migrate", "ragrec_django", "0012", verbosity=0)
            use_database(connection, args.db_name)
            report["items"] = figures
            with connection.cursor() as cursor:
                cursor.execute("SELECT version()")
                report["postgresql"] = cursor.fetchone()[0]
            save()
            report["events"] = events_phase(item_ids[:event_items], steps, args.rounds, connection)
            save()
            if not args.skip_generations:
                use_database(connection, args.db_name)
                with connection.cursor() as cursor:
                    cursor.execute("SET maintenance_work_mem = %s", [args.maintenance_work_mem])
                report["generations"] = generations_phase(catalogue, item_ids, args, connection)
                log("(a) %s" % json.dumps(report["generations"]))
            report["load_average_end"] = load_average()
            report["uptime_end"] = machine()["uptime"]
            save()
    finally:
        use_database(connection, args.db_name)
        connection.close()
        log("dropping scratch databases")
        with connection._nodb_cursor() as cursor:
            for name in event_databases:
                cursor.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
        connection.creation.destroy_test_db(original_name, verbosity=0)
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
