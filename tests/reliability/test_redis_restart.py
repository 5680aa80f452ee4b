"""Redis dies (SIGKILL) and comes back while a worker is in the middle of a queue of encode tasks.

The private Redis keeps an append-only file with ``appendfsync always``: every message the
producer was told is queued, and the unacknowledged one the worker holds, survive the crash.
The worker loses its broker connection, reconnects, and the queue is finished; a message whose
acknowledgement was lost with the connection comes back and is skipped (same content hashes).
Items queued while Redis is down are published once it is back (``enqueue_encoding`` keeps
trying for ``tasks.PUBLISH_PATIENCE_SECONDS``).
"""

from __future__ import annotations

import time

import pytest
from evidence import active_embeddings, broker_is_drained, count, embedding_writes, task_results
from private_servers import django_env, enqueue, product_pks, seed_products, start_enqueue, wait_for

pytestmark = pytest.mark.celery_worker

CHUNK = 64
CHUNKS = 3  # queued before the crash
LATE = 40  # queued while Redis is down
N = CHUNK * CHUNKS + LATE


def test_redis_crash_mid_queue_loses_nothing_and_encodes_each_item_once(
    private_pg, fresh_db, private_redis, processes, tmp_path
):
    pg, db = private_pg, fresh_db
    env = django_env(pg.url(db), broker_url=private_redis.url(), workdir=tmp_path, CELERY_VISIBILITY_TIMEOUT=8)
    assert seed_products(env, N + 1) == N + 1
    warm_up, *pks = product_pks(pg, db)

    worker = processes.start_worker(env, "only")
    # Warm-up: the pool process loads MiniLM on its first task, so the chunks below run for seconds,
    # well inside the visibility timeout.
    enqueue(env, [warm_up], 1)
    wait_for(lambda: active_embeddings(pg, db)[0] == 1, 300, "the warm-up task")
    pks, late = pks[:-LATE], pks[-LATE:]
    enqueue(env, pks, CHUNK)
    # A producer that will queue more items while Redis is down (Django loaded now, so the outage is short).
    go = tmp_path / "go"
    producer = start_enqueue(processes, env, late, CHUNK, go)
    wait_for(lambda: "ready" in producer.log_path.read_text(), 120, "the producer to start")

    def in_flight():
        return count(pg, db, "ragrec_django_taskdelivery") > 0

    # Crash Redis once the first chunk is written and the next one is running (messages still queued).
    wait_for(
        lambda: active_embeddings(pg, db)[0] > CHUNK and in_flight(), 300, "the second chunk to start", interval=0.05
    )
    queued_before = private_redis.client().llen("celery")
    with pg.connect(db) as conn:
        running = [row[0] for row in conn.execute("SELECT task_id FROM ragrec_django_taskdelivery").fetchall()]
    private_redis.crash()
    written_at_crash = active_embeddings(pg, db)[0]
    # The producer queues its items while Redis is down: publishing keeps trying until Redis is back.
    go.touch()
    wait_for(lambda: "publishing" in producer.log_path.read_text(), 120, "the producer to publish")
    redis_was_down = not private_redis.answers()
    time.sleep(1)  # the worker and the producer retry their connections
    private_redis.start()  # same port, same append-only file
    assert producer.wait(60) == 0, producer.log_path.read_text()[-3000:]
    producer_log = producer.log_path.read_text()
    assert redis_was_down and "Cannot reach the Celery broker" in producer_log  # it met the outage and waited
    assert "queued" in producer_log

    assert queued_before >= 1 and written_at_crash < N + 1, "the queue finished before the crash: proves nothing"
    # The queued and the unacknowledged messages came back with Redis.
    client = private_redis.client()
    assert client.llen("celery") + client.hlen("unacked") >= 1

    wait_for(lambda: active_embeddings(pg, db) == (N + 1, N + 1), 300, "every item encoded")
    wait_for(lambda: not in_flight() and broker_is_drained(private_redis), 120, "every task finished and acknowledged")

    writes = embedding_writes(pg, db)
    assert len(writes) == N + 1 and set(writes.values()) == {1}  # each item committed exactly once
    assert count(pg, db, "ragrec_django_encodingfailure") == 0

    log = worker.log_path.read_text()
    assert "Connection to broker lost" in log or "Cannot connect to redis" in log, log[-3000:]
    results = task_results(worker.log_path)
    assert len(results) == CHUNKS + 2  # no message was lost: every chunk's task ran to the end
    assert set(running) <= set(results)  # including the one running when Redis died
    assert sum(r["encoded"] for runs in results.values() for r in runs) == N + 1  # and no item was encoded twice
