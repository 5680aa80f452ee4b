"""The Celery topology of docs/scaling.md with real workers: queues per workload, two workers on one reindex.

Real parts: Celery prefork workers of the demo project consuming from this run's Redis database,
writing into the test PostgreSQL + pgvector through the production encoder (open_clip, the image
decoder) with a tiny random CLIP, so 5,000 items take seconds (``tests/helpers/topology_settings.py``).
"Encoded exactly once" is one committed write per (generation, item), counted by the audit triggers.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ragrec_django.models import Embedding, EncodingFailure, SpaceGeneration, TaskDelivery
from shop_demo.catalog.models import Category, Product
from tests.helpers.workers import ROOT, wait_for

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

N = 5000
TASK_LINE = re.compile(r"Task ragrec_django\.tasks\.encode_items_task\[(?P<id>[^\]]+)\] (?P<what>received|succeeded)")
RESULT_LINE = re.compile(
    r"Task ragrec_django\.tasks\.encode_items_task\[(?P<id>[^\]]+)\] succeeded in [\d.e-]+s: (?P<result>\{.*\})"
)


@pytest.fixture
def topology_env(worker_env, tmp_path):
    """The workers' environment: the topology settings with a tiny CLIP, a visibility timeout of 60 s.

    A chunk, the first one with the model's loading included, must finish within it even on a busy machine.
    """
    from ragrec_django.ml.testing import make_tiny_clip_checkpoint

    options = make_tiny_clip_checkpoint(tmp_path, seed=0)
    return {
        **worker_env,
        "DJANGO_SETTINGS_MODULE": "tests.helpers.topology_settings",
        "RAGREC_TEST_TINY_CLIP": json.dumps(options),
        "RAGREC_CLIP_CHECKPOINT": "off",
        "CELERY_VISIBILITY_TIMEOUT": "60",
    }


@pytest.fixture
def start_queue_worker(topology_env, tmp_path):
    """``start(name, queues, **env)``: a worker consuming ``queues`` as docs/scaling.md runs one per GPU."""
    started = []

    def start(name: str, queues: str, **env):
        log_path = tmp_path / ("worker-%s.log" % name)
        log = open(log_path, "w")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "-Q", queues, "--concurrency", "1",
             "--prefetch-multiplier", "1", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", "%s@%%h" % name],
            cwd=ROOT, env={**topology_env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        process.log_path = log_path
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def tasks_in(log_path: Path) -> tuple[list[str], dict[str, dict]]:
    """(ids of the encode tasks received, {id: result} of those that succeeded) from a worker's log."""
    text = Path(log_path).read_text()
    received = [m["id"] for m in TASK_LINE.finditer(text) if m["what"] == "received"]
    results = {m["id"]: ast.literal_eval(m["result"]) for m in RESULT_LINE.finditer(text)}
    return received, results


def create_products(n: int, image: str = "") -> list[int]:
    category = Category.objects.create(name="Lamps", slug="lamps")
    Product.objects.bulk_create(
        Product(
            title="Desk lamp model %d" % i,
            slug="lamp-%d" % i,
            description="An adjustable desk lamp, number %d, with a warm LED and a weighted base." % i,
            category=category,
            price="30.00",
            stock=3,
            image=image,
        )
        for i in range(n)
    )
    return list(Product.objects.order_by("pk").values_list("pk", flat=True))


def test_text_and_image_workers_drain_one_reindex_from_their_own_queues(
    start_queue_worker, topology_env, committed_writes, redis_broker, tmp_path
):
    media = Path(topology_env["SHOP_DEMO_MEDIA_ROOT"]) / "products"
    media.mkdir(parents=True)
    Image.new("RGB", (40, 40), (200, 120, 30)).save(media / "lamp.png")
    create_products(N, image="products/lamp.png")
    text_worker = start_queue_worker("text", "gpu-text", CUDA_VISIBLE_DEVICES="0")
    image_worker = start_queue_worker("image", "gpu-image", CUDA_VISIBLE_DEVICES="1")

    result = subprocess.run(
        [sys.executable, "manage.py", "ragrec_reindex", "--space", "clip-text", "--space", "image", "--wait",
         "--timeout", "300"],
        cwd=ROOT, env=topology_env, capture_output=True, text=True, timeout=360,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Queuing %d item(s) into space 'clip-text' in 50 chunk(s)" % N in result.stdout
    assert "Queuing %d item(s) into space 'image' in 50 chunk(s)" % N in result.stdout
    assert "ragrec.W006" not in result.stderr  # 100 items at the configured rates fit in 60 s

    # Each worker ran exactly the chunks of its queue's modality, and between them every chunk once. (A task
    # finishes its bookkeeping, which --wait watches, just before the worker logs its result.)
    wait_for(lambda: [len(tasks_in(w.log_path)[1]) for w in (text_worker, image_worker)] == [50, 50], 30, "the results")
    _, text_results = tasks_in(text_worker.log_path)
    _, image_results = tasks_in(image_worker.log_path)
    assert len(text_results) == 50 and {r["space"] for r in text_results.values()} == {"clip-text"}
    assert len(image_results) == 50 and {r["space"] for r in image_results.values()} == {"image"}
    assert sum(r["encoded"] for r in text_results.values()) == N
    assert sum(r["encoded"] for r in image_results.values()) == N

    # Exactly once: N vectors per space, one committed write each, nothing failed, nothing left queued.
    for space in ("clip-text", "image"):
        assert Embedding.objects.filter(generation__space=space).count() == N
    writes = committed_writes()
    assert len(writes) == 2 * N and set(writes.values()) == {1}
    assert not EncodingFailure.objects.exists()
    assert not TaskDelivery.objects.exists()
    import redis

    client = redis.Redis.from_url(redis_broker)
    assert [client.llen(queue) for queue in ("gpu-text", "gpu-image", "celery")] == [0, 0, 0]
    # Left for a cpu worker: one computation of each new generation's category centroids, queued by the workers.
    queued = [json.loads(message)["headers"] for message in client.lrange("cpu", 0, -1)]
    assert [h["task"] for h in queued] == ["ragrec_django.tasks.refresh_centroids_task"] * 2
    generations = SpaceGeneration.objects.filter(space__in=["clip-text", "image"]).values_list("pk", flat=True)
    assert sorted(h["argsrepr"] for h in queued) == sorted("(%d,)" % pk for pk in generations)


ENQUEUE = """
import django, json, sys
django.setup()
from ragrec_django.tasks import enqueue_encoding
ids = []
enqueue_encoding(json.loads(sys.argv[1]), ["clip-text"], tracked=ids)
print(json.dumps(ids))
"""


def test_killing_one_of_two_workers_leaves_the_other_to_finish_every_item_once(
    start_queue_worker, topology_env, committed_writes
):
    chunk = 250  # 4 vector writes of 64: a chunk is part written long enough to be caught
    pks = [str(pk) for pk in create_products(N)]
    chunks = [pks[i : i + chunk] for i in range(0, N, chunk)]
    # A short visibility timeout, so that the killed worker's chunk comes back within the test.
    env = {**topology_env, "RAGREC_TEST_CHUNK_SIZE": str(chunk), "CELERY_VISIBILITY_TIMEOUT": "30"}
    workers = {
        name: start_queue_worker(
            name,
            "gpu-text",
            CUDA_VISIBLE_DEVICES=gpu,
            RAGREC_TEST_CHUNK_SIZE=str(chunk),
            CELERY_VISIBILITY_TIMEOUT="30",
        )
        for name, gpu in (("gpu0", "0"), ("gpu1", "1"))
    }
    queued = subprocess.run(
        [sys.executable, "-c", ENQUEUE, json.dumps(pks)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert queued.returncode == 0, queued.stderr
    task_ids = json.loads(queued.stdout.strip().splitlines()[-1])
    assert len(task_ids) == len(chunks) == 20

    def written(index: int) -> int:
        return Embedding.objects.filter(generation__space="clip-text", item__key__in=chunks[index]).count()

    def victim_mid_chunk():
        """(worker name, chunk index) of a worker that has finished a chunk and is half-way through another."""
        for name, process in workers.items():
            received, results = tasks_in(process.log_path)
            if not results:
                continue
            for task in received:
                if task not in results:
                    index = task_ids.index(task)
                    if 0 < written(index) < chunk:
                        return name, index
        return None

    victim, index = wait_for_value(victim_mid_chunk, 240, "a worker half-way through its second chunk")
    os.killpg(workers[victim].pid, signal.SIGKILL)  # the whole worker: main process and pool
    workers[victim].wait()
    written_before_kill = written(index)
    assert 0 < written_before_kill < chunk, "the chunk finished before the kill; the test proves nothing"
    (survivor,) = set(workers) - {victim}

    # The survivor drains the queue, and the killed worker's unacknowledged chunk comes back to it after the
    # visibility timeout: it skips what was committed before the kill and encodes the rest.
    text_rows = Embedding.objects.filter(generation__space="clip-text")
    wait_for(lambda: text_rows.count() == N, 240, "every item encoded")
    wait_for(lambda: not TaskDelivery.objects.exists(), 120, "every task finished")

    def results():
        return tasks_in(workers[victim].log_path)[1], tasks_in(workers[survivor].log_path)[1]

    wait_for(lambda: set().union(*results()) == set(task_ids), 30, "a result for every chunk in the logs")
    victim_results, survivor_results = results()
    assert victim_results and survivor_results  # both did work
    redelivered = survivor_results[task_ids[index]]  # the killed worker's chunk, finished by the other
    assert (redelivered["encoded"], redelivered["skipped"]) == (chunk - written_before_kill, written_before_kill)

    writes = committed_writes()
    assert len(writes) == N and set(writes.values()) == {1}
    assert not EncodingFailure.objects.exists()


def wait_for_value(predicate, timeout: float, what: str):
    """Poll ``predicate`` every 20 ms until it returns a value (returned); AssertionError after ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)
