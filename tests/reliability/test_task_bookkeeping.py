"""TaskDelivery bookkeeping: retries after database errors are not counted as worker deaths.

``encode_items_task`` retries on database errors (``autoretry_for``): Celery sends a new message
with the same task id and ``retries + 1``. Starts are counted per message, so a batch whose
database went away a few times is encoded normally instead of being taken for a poison batch
(item by item, then its items marked failed with "worker died N times"); and a finished task
leaves no bookkeeping behind, its retries' included.

Runs the task in a Django subprocess (the real bundled MiniLM, eagerly) against the private
PostgreSQL, like the other tests of this folder.
"""

from __future__ import annotations

import json
import subprocess
import sys

from private_servers import ROOT, django_env, product_pks, seed_products

SCENARIOS = r"""
import django, json, sys
django.setup()
from ragrec_django.models import Embedding, EncodingFailure, TaskDelivery
from ragrec_django.tasks import encode_items_task

pks = json.loads(sys.argv[1])
out = {}

def run(task_id, items, retries, history):
    for key, attempts in history.items():
        TaskDelivery.objects.create(task_id=key, name=encode_items_task.name, attempts=attempts)
    result = encode_items_task.apply(args=("text", items), task_id=task_id, retries=retries).get()
    left = sorted(TaskDelivery.objects.filter(task_id__startswith=task_id).values_list("task_id", flat=True))
    return {"result": result, "left": left}

# The first message started once and met a database error; so did its retries 1 to 3. Retry 4 starts now.
out["after_db_errors"] = run(
    "t-db", pks[0:4], 4, {"t-db": 1, "t-db#retry1": 1, "t-db#retry2": 1, "t-db#retry3": 1}
)
# The first message killed its worker twice, then met a database error; its retry starts now (a fresh message).
out["retry_after_deaths"] = run("t-mixed", pks[4:8], 1, {"t-mixed": 3})
# A retry message that itself killed its worker 4 times is a poison batch like any other.
out["poison_retry"] = run("t-poison", pks[8:12], 1, {"t-poison": 1, "t-poison#retry1": 4})
out["failures"] = sorted(EncodingFailure.objects.values_list("reason", flat=True).distinct())
out["encoded"] = Embedding.objects.count()
print(json.dumps(out))
"""


def test_database_retries_are_not_counted_as_worker_deaths(private_pg, fresh_db, tmp_path):
    env = django_env(private_pg.url(fresh_db), workdir=tmp_path)
    env["RAGREC_LOG_LEVEL"] = "WARNING"
    assert seed_products(env, 12) == 12
    pks = product_pks(private_pg, fresh_db)
    result = subprocess.run(
        [sys.executable, "-c", SCENARIOS, json.dumps(pks)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    after_db_errors = out["after_db_errors"]
    assert after_db_errors["result"]["encoded"] == 4 and after_db_errors["result"]["failed"] == {}
    assert after_db_errors["left"] == []  # the bookkeeping of the first message and of every retry is gone

    retry_after_deaths = out["retry_after_deaths"]
    assert retry_after_deaths["result"]["encoded"] == 4 and retry_after_deaths["result"]["failed"] == {}
    assert retry_after_deaths["left"] == []

    poison = out["poison_retry"]
    assert poison["result"]["encoded"] == 0
    assert poison["left"] == []
    assert out["failures"] == ["worker died 4 times while encoding this batch"]
    assert out["encoded"] == 8
