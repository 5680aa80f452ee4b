"""A few seconds of benchmarks/events_load.py: gunicorn + the events endpoint under paced load, nothing lost.

The speed figures are the benchmark's business (docs/reliability.md); this only checks that the
benchmark runs end to end and that every accepted event is stored exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys

from private_servers import ROOT, django_env


def test_events_load_benchmark_stores_every_accepted_event(private_pg, fresh_db, tmp_path):
    out = tmp_path / "events_load.json"
    env = django_env(private_pg.url(fresh_db), workdir=tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/events_load.py",
            "--seconds",
            "2",
            "--rate",
            "500",
            "--batch",
            "25",
            "--clients",
            "2",
            "--items",
            "40",
            "--database-url",
            private_pg.url(fresh_db),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    assert figures["events_sent"] == 1000
    assert figures["accepted"] == figures["events_sent"]
    assert figures["stored"] == figures["accepted"]
    assert figures["lost"] == 0
    assert figures["latency_ms"]["p99"] is not None and figures["events_per_s"] > 0

    # Exactly once, counted by the database's own audit trigger: one insert per idempotency key of the run.
    with private_pg.connect(fresh_db) as conn:
        inserts = conn.execute(
            "SELECT count(*), count(DISTINCT key) FROM audit_writes WHERE tbl = 'event' AND key LIKE 'load-%%-run-%%'"
        ).fetchone()
    assert inserts == (1000, 1000)
