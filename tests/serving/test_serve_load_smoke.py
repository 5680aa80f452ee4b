"""benchmarks/serve_load.py runs end to end at a tiny scale: every case and level answered, no errors.

No figure is checked (the benchmark's numbers are for docs/benchmarks.md, measured on a quiet machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serve_load_runs_every_case_through_gunicorn(tmp_path):
    out = tmp_path / "serve_load.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    db_name = "ragrec_bench_serve_%s" % os.environ.get("SHOP_DEMO_TEST_DB", "smoke")
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/serve_load.py",
            "--items",
            "500",
            "--shoppers",
            "10",
            "--seconds",
            "1",
            "--warmup",
            "0.2",
            "--clients",
            "1,4",
            "--db-name",
            db_name,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(row["case"], row["clients"]) for row in report["results"]] == [
        (case, clients) for case in ("similar", "search", "for-you") for clients in (1, 4)
    ]
    for row in report["results"]:
        assert row["ok"] > 0 and row["errors"] == {}, row
    assert "BalancedThreadWorker (gthread) workers, shop_demo/gunicorn.conf.py" in report["config"]["server"]
    assert report["config"]["query_threads"] == 1
