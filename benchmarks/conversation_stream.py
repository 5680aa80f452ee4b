"""The assistant's streamed turns through the real HTTP server: time to the first streamed byte and to ``done``.

    python benchmarks/conversation_stream.py [--items 100000] [--conversations 60] [--clients 1]
                                             [--db-name ragrec_bench_convapi] [--keep-db] [--json out.json]

What it does (the catalogue, the server and the machine description are ``serve_load.py``'s):

1. creates a scratch database (``--db-name``; never the lead's ``ragrec_bench_serve``) and loads
   ``--items`` synthetic items with their "text" and "image" vectors and HNSW indexes
   (``serve_load.load_catalogue``); dropped at the end unless ``--keep-db``;
2. serves it with the demo's gunicorn (gthread, ``shop_demo/gunicorn.conf.py``; ``serve_load.start_server``:
   the real MiniLM and a CLIP ViT-B-32 text tower, API throttling off), with the offline answer generator
   (the default);
3. ``--clients`` closed-loop clients each run conversations of five turns, every turn alternately asked
   as a stream (``Accept: text/event-stream``) or as JSON, over a keep-alive connection with the
   conversation's session cookie: a request the query-understanding benchmark reads ("olive rattan
   chair under 50"), "cheaper", "not <colour>", a dislike of the first product shown, "show me more";
4. reports per mode: time to the first byte of the body (for the stream, the ``state`` event), to the
   ``done`` event (stream) or the last byte (JSON), p50/p90/p99/max, plus errors and the load average.

Times run from sending the request to reading the byte, on 127.0.0.1; the first conversation of each
client is a warm-up (the server loads its models on the first query) and is not counted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

import serve_load  # noqa: E402  (catalogue, server, machine description)
import synthetic_catalogue as synth  # noqa: E402
from private_servers import ProcessGroup  # noqa: E402  (tests/reliability, on the path through serve_load)
from serve_load import log, percentile  # noqa: E402

TURNS = ("request", "cheaper", "not colour", "dislike", "more")
PROTECTED_DATABASE = "ragrec_bench_serve"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000, help="catalogue size (default 100000)")
    parser.add_argument("--conversations", type=int, default=60, help="measured conversations per client")
    parser.add_argument("--clients", type=int, default=1, help="concurrent clients (default 1)")
    parser.add_argument("--db-name", default="ragrec_bench_convapi", help="scratch database (dropped at the end)")
    parser.add_argument("--keep-db", action="store_true", help="keep the scratch database and reuse its catalogue")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every figure and the machine description to this file")
    args = parser.parse_args(argv)
    if args.db_name == PROTECTED_DATABASE:
        parser.error("%s belongs to serve_load.py runs: name another scratch database" % PROTECTED_DATABASE)
    # The server and catalogue options of serve_load.py, at their defaults, under this run's names.
    server_args = serve_load.parse_args(
        ["--items", str(args.items), "--db-name", args.db_name, "--seed", str(args.seed), "--shoppers", "0"]
        + (["--keep-db"] if args.keep_db else [])
    )
    for name, value in vars(server_args).items():
        setattr(args, name, getattr(args, name, value))
    return args


class Client:
    """One shopper's keep-alive connection; ``turn`` posts a turn and times its answer."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=serve_load.CLIENT_TIMEOUT_S)
        self.cookie = ""

    def start(self) -> str:
        sent = time.perf_counter()
        self.connection.request(
            "POST", "/api/recommend/assistant/conversations/", headers={"Accept": "application/json"}
        )
        response = self.connection.getresponse()
        body = response.read()
        cookie = response.getheader("Set-Cookie", "")
        self.cookie = cookie.split(";", 1)[0] if cookie else ""
        if response.status != 201:  # a 503 at once: the server's line was full; after ~5 s: it waited in line
            waited = time.perf_counter() - sent
            raise RuntimeError("start: HTTP %d after %.0f s %s" % (response.status, waited, body[:80]))
        return json.loads(body)["conversation"]

    def turn(self, chat: str, body: dict, stream: bool) -> tuple[float, float, dict]:
        """(seconds to the first body byte, seconds to done / the last byte, the answer)."""
        headers = {"Content-Type": "application/json", "Cookie": self.cookie}
        headers["Accept"] = "text/event-stream" if stream else "application/json"
        sent = time.perf_counter()
        self.connection.request(
            "POST", "/api/recommend/assistant/conversations/%s/turns/" % chat, json.dumps(body), headers
        )
        response = self.connection.getresponse()
        if response.status != 200:
            waited = time.perf_counter() - sent
            raise RuntimeError("turn: HTTP %d after %.0f s %s" % (response.status, waited, response.read()[:80]))
        first = response.read1(65536)
        first_byte = time.perf_counter() - sent
        if not stream:
            answer = json.loads(first + response.read())
            return first_byte, time.perf_counter() - sent, answer
        buffer, done = first, None
        while done is None:
            if b"event: error\n" in buffer:
                raise RuntimeError("error event: %s" % buffer.decode()[-300:])
            if b"event: done\n" in buffer and buffer.endswith(b"\n\n"):
                done = time.perf_counter() - sent
                break
            chunk = response.read1(65536)
            if not chunk:
                raise RuntimeError("the stream ended without done")
            buffer += chunk
        response.read()  # the end of the chunked body
        data = buffer.split(b"event: done\ndata: ", 1)[1].split(b"\n", 1)[0]
        return first_byte, done, json.loads(data)


def conversation_turns(rng: random.Random, request: str):
    """The turns of one conversation: a callable per turn taking the last answer and giving the body."""
    colour = rng.choice(synth.COLOURS)
    return [
        lambda last: {"message": request},
        lambda last: {"message": "cheaper"},
        lambda last: {"message": "not %s" % colour},
        lambda last: (
            {"feedback": {"item": last["products"][0]["id"], "action": "dislike"}}
            if last["products"]
            else {"message": "start over"}
        ),
        lambda last: {"message": "show me more"},
    ]


def run_clients(args, port: int, requests: list[str]) -> dict:
    timings = {"stream": {"first_byte": [], "done": []}, "json": {"first_byte": [], "done": []}}
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def client(index: int):
        rng = random.Random(args.seed * 1000 + index)
        shopper = Client(port)
        for number in range(args.conversations + 1):  # the first is a warm-up
            request = requests[(index * (args.conversations + 1) + number) % len(requests)]
            try:
                chat, last = shopper.start(), None
                for position, make_body in enumerate(conversation_turns(rng, request)):
                    stream = (number + position) % 2 == 0
                    first_byte, done, last = shopper.turn(chat, make_body(last), stream)
                    if number:
                        with lock:
                            mode = timings["stream" if stream else "json"]
                            mode["first_byte"].append(first_byte)
                            mode["done"].append(done)
            except (RuntimeError, OSError, http.client.HTTPException, ValueError) as exc:
                with lock:
                    kind = str(exc)[:120]
                    errors[kind] = errors.get(kind, 0) + 1
                shopper.connection.close()
                shopper = Client(port)
        shopper.connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = {"seconds": round(time.perf_counter() - started, 1), "errors": errors}
    for mode, values in timings.items():
        results[mode] = {
            "turns": len(values["first_byte"]),
            **{
                "%s_p%d_ms" % (what, q): percentile(values[what], q)
                for what in ("first_byte", "done")
                for q in (50, 90, 99)
            },
            "done_max_ms": round(max(values["done"]) * 1000, 1) if values["done"] else None,
        }
    results["load_average_1min"] = round(os.getloadavg()[0], 2)
    return results


def run(args) -> dict:
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "shop_demo.settings"
    os.environ.setdefault("RAGREC_CLIP_CHECKPOINT", "off")
    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import override_settings

    ragrec = serve_load.encoders_settings(args)
    with serve_load.scratch_database(args, connection):
        processes = ProcessGroup(Path(os.environ.get("TMPDIR", "/tmp")) / ("ragrec-conversation-%d" % os.getpid()))
        report = {"benchmark": "conversation_stream", "args": {k: v for k, v in vars(args).items() if k != "case_list"}}
        try:
            with override_settings(RAGREC={**settings.RAGREC, **ragrec}, DEBUG=False):
                catalogue = synth.make_catalogue(args.items, seed=args.seed)
                report["load"] = serve_load.load_catalogue(args, catalogue, connection)
                report["machine"] = serve_load.machine_info()
            url = serve_load.database_url(connection.settings_dict, args.db_name)
            connection.close()
            port, server = serve_load.start_server(args, processes, url, ragrec)
            report["config"] = {
                "items": args.items,
                "clients": args.clients,
                "conversations_per_client": args.conversations,
                "turns_per_conversation": len(TURNS),
                "server": serve_load.server_description(args, server),
                "generator": "offline (the default)",
            }
            log("serving on 127.0.0.1:%d: %s" % (port, report["config"]["server"]))
            requests = synth.understood_queries(catalogue, (args.conversations + 1) * args.clients, seed=args.seed + 7)
            report["results"] = run_clients(args, port, requests)
            report["server_log_tail"] = Path(server.log_path).read_text()[-2000:]
            return report
        finally:
            processes.stop_all(signal.SIGINT)


def print_report(report: dict) -> None:
    config, results = report["config"], report["results"]
    print(
        "\n%d items; %s; %d client(s) x %d conversations x %d turns; load average %s"
        % (
            config["items"],
            config["server"],
            config["clients"],
            config["conversations_per_client"],
            config["turns_per_conversation"],
            results["load_average_1min"],
        )
    )
    print(
        "%-7s %6s %14s %14s %14s %14s %14s %14s"
        % ("mode", "turns", *("%s p%d ms" % (w, q) for w in ("first", "done") for q in (50, 90, 99)))
    )
    for mode in ("stream", "json"):
        row = results[mode]
        print(
            "%-7s %6d %14s %14s %14s %14s %14s %14s"
            % (mode, row["turns"], *(row["%s_p%d_ms" % (w, q)] for w in ("first_byte", "done") for q in (50, 90, 99)))
        )
    print("errors: %s" % (results["errors"] or "none"))


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print("wrote %s" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
