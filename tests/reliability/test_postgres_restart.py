"""PostgreSQL crashes (SIGKILL of the postmaster and every backend) while events are posted and items encoded.

Real parts: the demo app under gunicorn posting to the events endpoint over loopback, a Celery
worker encoding with the bundled MiniLM from a private Redis, a private PostgreSQL that is
killed and started again (crash recovery from its WAL). The client retries a batch that got
no answer or a 5xx with the same idempotency keys, as a client SDK would; the worker's tasks
retry on database errors.

Afterwards every accepted event is stored exactly once and every item has exactly one
committed embedding write (audit triggers in the test's own database count them).
"""

from __future__ import annotations

import threading
import time

import pytest
from evidence import active_embeddings, broker_is_drained, count, embedding_writes, event_writes
from private_servers import (
    EventPoster,
    django_env,
    enqueue,
    free_port,
    make_events,
    product_pks,
    seed_products,
    start_gunicorn,
    wait_for,
)

pytestmark = pytest.mark.celery_worker

ITEMS = 193  # one warm-up item + 3 chunks of 64
CHUNK = 64
BATCH = 25


class Client(threading.Thread):
    """Posts batches of events until stopped, each batch retried until accepted."""

    def __init__(self, port: int, item_keys: list[str], name: str):
        super().__init__(daemon=True)
        self.poster = EventPoster(port)
        self.item_keys, self.prefix = item_keys, name
        self.stop = threading.Event()
        self.accepted_keys: list[str] = []
        self.receipts: list[dict] = []
        self.failed_attempts = 0
        self.error: BaseException | None = None

    def run(self):
        try:
            batch_no = 0
            while not self.stop.is_set():
                batch = make_events(self.prefix, batch_no * BATCH, BATCH, self.item_keys)
                receipt, failures = self.poster.post_until_accepted(batch, pause=0.1)
                self.failed_attempts += failures
                self.receipts.append(receipt)
                self.accepted_keys.extend(event["idempotency_key"] for event in batch)
                batch_no += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.poster.close()


def test_postgres_crash_mid_write_loses_and_duplicates_nothing(
    private_pg, fresh_db, private_redis, processes, tmp_path
):
    pg, db = private_pg, fresh_db
    started = time.monotonic()

    def mark(what):  # a timeline, printed when the test fails
        print("%6.1f s  %s" % (time.monotonic() - started, what))

    env = django_env(
        pg.url(db), broker_url=private_redis.url(), workdir=tmp_path, CELERY_VISIBILITY_TIMEOUT=30, DJANGO_DEBUG="0"
    )
    assert seed_products(env, ITEMS) == ITEMS
    warm_up, *pks = product_pks(pg, db)

    port = free_port()
    start_gunicorn(processes, env, port=port, workers=2, threads=2)
    processes.start_worker(env, "only")
    enqueue(env, [warm_up], 1)
    wait_for(lambda: active_embeddings(pg, db)[0] == 1, 300, "the warm-up task (MiniLM loaded)")
    mark("worker warm")

    clients = [Client(port, pks, "client%d" % i) for i in range(2)]
    for client in clients:
        client.start()
    enqueue(env, pks, CHUNK)

    # Crash PostgreSQL while both writers are busy: events are being stored and a chunk is being encoded.
    def stored_events():
        return count(pg, db, "ragrec_django_interaction")

    wait_for(
        lambda: (
            stored_events() >= 4 * BATCH
            and count(pg, db, "ragrec_django_taskdelivery") > 0
            and active_embeddings(pg, db)[0] < ITEMS
        ),
        300,
        "events stored and a chunk being encoded",
        interval=0.05,
    )
    accepted_before = sum(len(c.accepted_keys) for c in clients)
    pg.crash()
    mark("PostgreSQL killed with %d events accepted" % accepted_before)
    time.sleep(1.5)  # clients and the worker meet a dead database
    pg.start()  # crash recovery replays the WAL
    mark("PostgreSQL up again")

    # Let the clients go on after recovery, then stop them.
    wait_for(
        lambda: all(len(c.accepted_keys) >= accepted_before // 2 + 8 * BATCH for c in clients),
        300,
        "events accepted after the restart",
    )
    mark("clients stopping")
    for client in clients:
        client.stop.set()
    for client in clients:
        client.join(180)
        assert client.error is None, client.error
        assert not client.is_alive()

    # The crash hit the write path: some posts got no answer or a 5xx and were retried; a database
    # that is down is a 503 with Retry-After, never a 500.
    assert sum(c.failed_attempts for c in clients) > 0
    server_errors = {status for c in clients for status in c.poster.statuses if status >= 500}
    assert server_errors <= {503}, server_errors

    # Every accepted event is stored exactly once.
    accepted = [key for c in clients for key in c.accepted_keys]
    assert len(accepted) == len(set(accepted))
    with pg.connect(db) as conn:
        stored = [row[0] for row in conn.execute("SELECT idempotency_key FROM ragrec_django_interaction").fetchall()]
    inserts = event_writes(pg, db)
    assert sorted(stored) == sorted(accepted)
    assert set(inserts) == set(accepted) and set(inserts.values()) == {1}
    receipts = [r for c in clients for r in c.receipts]
    assert sum(r["accepted"] for r in receipts) == len(accepted)
    assert sum(r["stored"] for r in receipts) + sum(r["duplicates"] for r in receipts) == len(accepted)

    # Every item is encoded exactly once, and the task bookkeeping is clean.
    mark(
        "clients done: %d events accepted, %d failed attempts"
        % (len(accepted), sum(c.failed_attempts for c in clients))
    )
    wait_for(lambda: active_embeddings(pg, db) == (ITEMS, ITEMS), 300, "every item encoded")
    mark("every item encoded")
    wait_for(
        lambda: count(pg, db, "ragrec_django_taskdelivery") == 0 and broker_is_drained(private_redis),
        120,
        "every task finished and acknowledged",
    )
    mark("tasks finished")
    writes = embedding_writes(pg, db)
    assert len(writes) == ITEMS and set(writes.values()) == {1}
    assert count(pg, db, "ragrec_django_encodingfailure") == 0
