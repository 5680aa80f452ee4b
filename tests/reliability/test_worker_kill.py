"""kill -9 during a batch of encode tasks: every item ends encoded exactly once.

Real parts: the bundled MiniLM in Celery prefork workers consuming from a private Redis,
writing into a private PostgreSQL + pgvector. Two faults in one run of three chunks:

1. the pool process running a chunk is killed (an OOM kill): the worker's main process
   rejects the message (``reject_on_worker_lost``) and runs it again in a new pool process;
2. later the whole worker (main process and pool) is killed mid-chunk: its unacknowledged
   message (``acks_late``) comes back from Redis after the visibility timeout, to a new worker.

Each time the items the killed run had committed are skipped (same content hash), the rest
are encoded, and the ``TaskDelivery`` bookkeeping is gone once the task finishes.
"""

from __future__ import annotations

import signal

import psutil
import pytest
from evidence import active_embeddings, broker_is_drained, count, embedding_writes, task_results
from private_servers import django_env, manage, seed_products, wait_for

pytestmark = pytest.mark.celery_worker

CHUNK = 128  # two database writes of 64 (encoding.WRITE_BATCH) per chunk
CHUNKS = 2
N = CHUNK * CHUNKS


def test_kill9_worker_mid_batch_encodes_every_item_exactly_once(
    private_pg, fresh_db, private_redis, processes, tmp_path
):
    pg, db = private_pg, fresh_db
    # Short visibility timeout so the killed worker's message comes back within seconds; a chunk that
    # runs longer than it is restored while running and runs twice: the invariants below still hold.
    env = django_env(pg.url(db), broker_url=private_redis.url(), workdir=tmp_path, CELERY_VISIBILITY_TIMEOUT=8)
    assert seed_products(env, N) == N
    pks = [str(pk) for pk in sorted(r[0] for r in pg.connect(db).execute("SELECT id FROM catalog_product").fetchall())]
    chunks = [pks[i : i + CHUNK] for i in range(0, N, CHUNK)]

    def written(chunk) -> int:
        return pg.scalar(
            db,
            "SELECT count(*) FROM ragrec_django_embedding e JOIN ragrec_django_item i ON i.id = e.item_id "
            "WHERE i.key = ANY(%s)",
            [chunk],
        )

    def in_flight() -> dict[str, int]:
        with pg.connect(db) as conn:
            return dict(conn.execute("SELECT task_id, attempts FROM ragrec_django_taskdelivery").fetchall())

    def partial_chunk(exclude=()):
        """Index of a chunk with some but not all of its items committed (a run is mid-chunk)."""
        for index, chunk in enumerate(chunks):
            if index not in exclude and 0 < written(chunk) < CHUNK:
                return ("chunk", index)
        return None

    first = processes.start_worker(env, "first")
    queued = manage(env, "ragrec_reindex", "--space", "text", "--chunk-size", str(CHUNK))
    assert "Queuing %d item(s) into space 'text' in %d chunk(s)" % (N, CHUNKS) in queued.stdout

    # Fault 1: SIGKILL the pool process mid-chunk; the worker's main process survives.
    _, child_chunk = wait_for(partial_chunk, 300, "a chunk to be half written", interval=0.05)
    deliveries = in_flight()
    pool = psutil.Process(first.pid).children()
    assert len(pool) == 1
    pool[0].send_signal(signal.SIGKILL)
    pool[0].wait(30)
    child_written = written(chunks[child_chunk])
    assert 0 < child_written < CHUNK, "the chunk finished before the kill; the test proves nothing"
    assert list(deliveries.values()) == [1]  # the running message, first start
    (child_task,) = deliveries

    # Fault 2: SIGKILL the whole worker (main process and pool) in the middle of another chunk.
    _, worker_chunk = wait_for(
        lambda: partial_chunk(exclude={child_chunk}), 300, "another chunk to be half written", interval=0.05
    )
    deliveries = in_flight()
    processes.kill(first)
    worker_written = written(chunks[worker_chunk])
    assert 0 < worker_written < CHUNK, "the chunk finished before the kill; the test proves nothing"
    assert deliveries, "a message was in flight"
    assert not broker_is_drained(private_redis)  # its message is unacknowledged in Redis, not lost
    (worker_task,) = [task for task in deliveries if task != child_task] or [child_task]

    # A new worker: the unacknowledged message comes back after the visibility timeout.
    second = processes.start_worker(env, "second")
    wait_for(lambda: active_embeddings(pg, db) == (N, N), 300, "every item encoded")
    wait_for(lambda: not in_flight() and broker_is_drained(private_redis), 120, "every task finished and acknowledged")

    # Exactly once: one committed write per item (the audit trigger counts inserts and updates).
    writes = embedding_writes(pg, db)
    assert len(writes) == N
    assert set(writes.values()) == {1}
    assert count(pg, db, "ragrec_django_encodingfailure") == 0
    assert count(pg, db, "ragrec_django_taskdelivery") == 0

    # The killed runs' messages ran again and skipped what had been committed before the kills.
    results = task_results(first.log_path, second.log_path)
    assert len(results) == CHUNKS, results  # every chunk's task finished (some more than once)
    assert {"encoded": CHUNK - child_written, "skipped": child_written} in [
        {"encoded": r["encoded"], "skipped": r["skipped"]} for r in results[child_task]
    ]
    assert {"encoded": CHUNK - worker_written, "skipped": worker_written} in [
        {"encoded": r["encoded"], "skipped": r["skipped"]} for r in results[worker_task]
    ]
    # Nothing encoded twice: what the successful runs encoded plus what the killed runs had committed is N.
    assert sum(r["encoded"] for runs in results.values() for r in runs) + child_written + worker_written == N
    assert all(r["failed"] == {} for runs in results.values() for r in runs)
