"""CPU time of the learned "for you" candidate stage and features per training query (process time, so a shared
machine's load does not count).

    python benchmarks/learned_stage_cpu.py [--vectors] [--queries 400] [--code /path/to/git-archive]

Online Retail's validation split (as ``learned_offline.py --split valid``): ``--queries`` label orders of the 180
days before its end, sampled with seed 0, each read with ``EventLog.candidates_at`` and ``feature_matrix`` (one item
model, trained on the events before the last 90 days). ``--vectors``: with the text space (MiniLM vectors of the
product texts, as ``learned_offline.py --vectors``). ``--code``: import ``ragrec_django`` from another checkout (a
``git archive`` of an earlier commit, for the figure before a change; ``--vectors`` needs a checkout that has them).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", action="store_true", help="The text space as a source and features.")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--code", help="A checkout whose ragrec_django to time (default: this one).")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    root = Path(args.code).resolve() if args.code else here.parent
    sys.path[:0] = [str(root), str(here)]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")
    os.environ.setdefault("DATABASE_URL", "postgres://offline@127.0.0.1:1/unused")  # nothing here reads a database
    import django

    django.setup()
    from learned_offline import event_log, load

    from ragrec_django.evaluation import runner
    from ragrec_django.ml import ranker as trainer
    from ragrec_django.ranking import learned

    products, split = load()
    split = runner.temporal_split(split.train)
    log, _, end = event_log(products, split.train)
    points = learned.label_points(log, since=end - 180 * learned.DAY, until=end)
    points = random.Random(0).sample(points, min(args.queries, len(points)))
    factors = trainer._factors(log, end - 90 * learned.DAY, trainer.FitOptions())
    options = {}
    if args.vectors:
        from learned_offline import text_space

        options["vectors"] = text_space(products)
    started = time.process_time()
    for point in points:
        learned.feature_matrix(*log.candidates_at(point.visitor, point.at, factors=factors, **options))
    cpu = time.process_time() - started
    report = {"code": str(root), "vectors": args.vectors, "queries": len(points), "cpu_s": round(cpu, 2)}
    report["ms_per_query"] = round(cpu / len(points) * 1000, 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
