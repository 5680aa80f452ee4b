"""A real Celery worker process, consuming from a real Redis broker, encodes items into PostgreSQL."""

import os
import signal
import subprocess
import sys

import pytest

from ragrec_django.models import Embedding, EncodingFailure, TaskDelivery
from tests.helpers.workers import ROOT, wait_for

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def reindex(worker_env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", "ragrec_reindex", "--space", "text", *args],
        cwd=ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_worker_encodes_items_from_redis_into_postgres(many_products, start_worker, worker_env):
    pks = many_products(30)
    start_worker()
    result = reindex(worker_env, "--chunk-size", "10", "--wait", "--timeout", "180")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Queuing 30 item(s) into space 'text' in 3 chunk(s)" in result.stdout
    assert Embedding.objects.filter(generation__space="text").count() == len(pks)
    assert not EncodingFailure.objects.exists()
    assert not TaskDelivery.objects.exists()  # finished tasks leave no delivery record


def test_killed_worker_leaves_every_item_encoded_exactly_once(
    many_products, start_worker, worker_env, committed_writes
):
    pks = many_products(1500)
    worker = start_worker()
    queued = reindex(worker_env, "--chunk-size", "1500")
    assert queued.returncode == 0, queued.stderr
    text_rows = Embedding.objects.filter(generation__space="text")
    wait_for(lambda: text_rows.count() >= 64, 240, "the first written batch")
    written_before_kill = text_rows.count()
    os.killpg(worker.pid, signal.SIGKILL)  # the whole worker, mid-batch
    worker.wait()
    assert written_before_kill < len(pks), "the batch finished before the kill; the test proves nothing"

    start_worker()  # the unacknowledged message comes back after the visibility timeout
    wait_for(lambda: text_rows.count() == len(pks), 240, "all items encoded after restart")
    wait_for(lambda: not TaskDelivery.objects.exists(), 60, "the redelivered task to finish")
    # One committed write per item: what the killed batch wrote is rolled back, what was committed before the
    # kill is skipped by the redelivered task, the rest is written once.
    writes = committed_writes()
    assert len(writes) == len(pks)
    assert set(writes.values()) == {1}
    assert not EncodingFailure.objects.exists()
