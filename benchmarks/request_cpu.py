"""CPU per request on the serving path: the web process's and its PostgreSQL backend's, in process.

    python benchmarks/request_cpu.py [--db-name ragrec_bench_serve_lit] [--image-model lit]
                                     [--cases similar,search] [--requests 1000] [--rounds 3]
                                     [--ranker similar=learned,search=learned] [--signed-in] [--json out.json]

Runs against a database ``benchmarks/serve_load.py --keep-db`` loaded (same ``--db-name`` and ``--image-model``):
a process with the web server's settings (``serve_load_settings``) prepares itself as a gunicorn worker does
(``services.serving.prepare_web_process``), sends 50 unmeasured requests, then ``--rounds`` of ``--requests``
through Django's test client (the middleware, DRF, the service, the JSON; not gunicorn's HTTP parsing):

* ``similar``: ``GET /api/recommend/items/<key>/similar/`` for distinct items;
* ``search``: ``GET /api/recommend/search/?q=`` with queries never sent before (two catalogue words each).

``--ranker`` sets ``RAGREC["RANKER"]`` of the process (the learned models must be active in the database);
``--signed-in`` sends each request as one of 100 of serve_load.py's shoppers (logged in before the measurement),
as personalised search and "for you" need.

Per request: wall time, the process's CPU (user + system), its database backend's CPU (``psutil`` on the
backend's pid: the server runs on this machine) and the number of SQL statements. With one client and nothing
else running, process CPU + backend CPU is what one request costs the machine; on 2 cores, that bounds the
answers per second and sets how long a request waits behind another.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCHMARKS))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-name", default="ragrec_bench_serve_lit", help="a database serve_load.py --keep-db kept")
    parser.add_argument("--image-model", choices=("vit-b-32", "lit"), default="lit")
    parser.add_argument("--cases", default="similar,search")
    parser.add_argument("--requests", type=int, default=1000, help="measured requests per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ranker",
        default="",
        help='RAGREC["RANKER"] of the process, e.g. similar=learned,search=learned (default: the settings\', fusion);'
        " the models must be trained and active in the database (manage.py ragrec_train_ranker, ...)",
    )
    parser.add_argument(
        "--signed-in", action="store_true", help="every request as one of serve_load.py's shoppers (a history)"
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return measure(args)
    import django
    import serve_load

    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ.setdefault("RAGREC_CLIP_CHECKPOINT", "off")
    django.setup()
    from django.db import connection

    load_args = serve_load.parse_args(["--image-model", args.image_model, "--db-name", args.db_name, "--keep-db"])
    ragrec = serve_load.encoders_settings(load_args)
    if args.ranker:
        ragrec["RANKER"] = dict(pair.split("=", 1) for pair in args.ranker.split(","))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="serve_load_settings",
        PYTHONPATH=os.pathsep.join([str(BENCHMARKS), str(ROOT)]),
        DATABASE_URL=serve_load.database_url(connection.settings_dict, args.db_name),
        SERVE_LOAD_RAGREC=json.dumps(ragrec),
        RAGREC_CLIP_CHECKPOINT="off",
    )
    connection.close()
    return subprocess.call(
        [sys.executable, __file__, "--child", *(argv if argv is not None else sys.argv[1:])], env=env
    )


def measure(args) -> int:
    import django

    django.setup()
    import psutil
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from ragrec_django.models import Item
    from ragrec_django.services.serving import prepare_web_process

    prepare_web_process()
    rng = random.Random(7)
    keys = list(Item.objects.filter(is_eligible=True).values_list("key", flat=True)[:20000])
    rng.shuffle(keys)
    words = sorted(
        {w.lower() for t in Item.objects.values_list("title", flat=True)[:3000] for w in t.split() if w.isalpha()}
    )
    clients = [Client(SERVER_NAME="localhost")]
    if args.signed_in:  # logged in before the measurement: 100 shoppers, a client (session) each
        clients = []
        for shopper in get_user_model().objects.filter(username__startswith="bench-shopper-")[:100]:
            clients.append(Client(SERVER_NAME="localhost"))
            clients[-1].force_login(shopper)
    client = clients[0]
    paths = {
        "similar": iter("/api/recommend/items/%s/similar/" % key for key in keys),
        "search": iter(
            "/api/recommend/search/?q=%s+%s&n=%d" % (rng.choice(words), rng.choice(words), i) for i in range(10**9)
        ),
    }
    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    me = psutil.Process()
    report = {
        "benchmark": "request_cpu",
        "machine": "%s, %d cores" % (platform.processor() or platform.machine(), os.cpu_count()),
        "args": vars(args),
        "results": [],
    }
    for case in args.cases.split(","):
        for _ in range(50):
            client.get(next(paths[case]))
        backend = psutil.Process(connection.connection.info.backend_pid)
        for round_number in range(args.rounds):
            statements[0] = 0
            cpu, db, started = me.cpu_times(), backend.cpu_times(), time.perf_counter()
            with connection.execute_wrapper(count):
                for _ in range(args.requests):
                    response = rng.choice(clients).get(next(paths[case]))
                    assert response.status_code == 200, response.content[:500]
            wall = time.perf_counter() - started
            cpu_after, db_after = me.cpu_times(), backend.cpu_times()
            row = {
                "case": case,
                "round": round_number + 1,
                "requests": args.requests,
                "wall_ms": round(wall / args.requests * 1e3, 2),
                "process_cpu_ms": round(
                    (cpu_after.user + cpu_after.system - cpu.user - cpu.system) / args.requests * 1e3, 2
                ),
                "backend_cpu_ms": round(
                    (db_after.user + db_after.system - db.user - db.system) / args.requests * 1e3, 2
                ),
                "statements": round(statements[0] / args.requests, 2),
            }
            report["results"].append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
