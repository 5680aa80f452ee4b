"""Bulk description generation on a real Celery worker: the admin's "Generate descriptions" queues the job on
Redis, a worker process writes the drafts into PostgreSQL and counts the job's progress."""

import re
import subprocess
import sys

import pytest
from django.urls import reverse

from ragrec_django.models import DescriptionDraft, DescriptionEvent, GenerationJob
from ragrec_django.services.encoding import sync_host_items
from shop_demo.catalog.models import Category, Product
from tests.helpers.workers import ROOT, wait_for

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]

#: The admin's add view of GenerationJob, posted as ``username`` in a web process of its own (the broker is Redis).
SUBMIT_JOB = """
import sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
username, category = sys.argv[1:]
client = Client()
client.force_login(get_user_model().objects.get(username=username))
response = client.post(reverse("admin:ragrec_django_generationjob_add"), {"category": category, "generator": ""})
print(response.status_code, response.get("Location", ""))
"""

CHUNK = 20  # tasks.enqueue_generation's chunk size: 21 items make two tasks
SUCCEEDED = re.compile(r"Task ragrec_django\.tasks\.generate_descriptions_task\[[^\]]+\] succeeded")


def shop(category_name: str, n: int) -> list[str]:
    """``n`` products of a new category, mirrored into the plugin's items; their keys."""
    category = Category.objects.create(name=category_name, slug=category_name.lower())
    products = [
        Product.objects.create(
            title="%s item %d" % (category_name, i), slug="%s-%d" % (category_name.lower(), i), category=category,
            price="4.20", stock=3, colour="orange", material="copper", description="A %s part." % category_name.lower(),
        )
        for i in range(n)
    ]  # fmt: skip
    keys = [str(p.pk) for p in products]
    sync_host_items(keys)
    return keys


def test_admin_job_is_generated_by_a_worker_with_drafts_events_and_progress(
    client, reviewer, start_worker, worker_env, tmp_path
):
    hardware = shop("Hardware", CHUNK + 1)
    garden = shop("Garden", 1)
    worker_env["RAGREC_CLIP_CHECKPOINT"] = "off"  # the demo's own CLIP, if one was trained, stays out of it
    worker = start_worker()

    submitted = subprocess.run(
        [sys.executable, "-c", SUBMIT_JOB, reviewer.username, "Hardware"],
        cwd=ROOT, env=worker_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.split() == ["302", reverse("admin:ragrec_django_generationjob_changelist")]

    job = GenerationJob.objects.get()
    assert (job.scope, job.total, job.created_by) == ("Hardware", len(hardware), reviewer)
    wait_for(lambda: GenerationJob.objects.get(pk=job.pk).status == "done", 240, "the worker to finish the job")

    job.refresh_from_db()
    assert (job.done, job.failed) == (len(hardware), 0) and job.finished_at is not None
    drafts = DescriptionDraft.objects.filter(job=job)
    assert sorted(drafts.values_list("item__key", flat=True)) == sorted(hardware)
    assert {(d.status, d.generator) for d in drafts} == {("pending", "default")}
    assert all(d.text for d in drafts)
    assert not DescriptionDraft.objects.filter(item__key__in=garden).exists()
    events = DescriptionEvent.objects.filter(draft__job=job)
    assert sorted(events.values_list("draft__item__key", "action")) == sorted((key, "generated") for key in hardware)
    assert set(events.values_list("generator_version", flat=True)) == set(
        drafts.values_list("generator_version", flat=True)
    )

    # The worker ran both chunks (nothing was generated eagerly in the web process) and the admin shows 100%.
    log = (tmp_path / "worker-0.log").read_text()
    assert len(SUCCEEDED.findall(log)) == 2, log[-3000:]
    assert worker.poll() is None, log[-3000:]
    client.force_login(reviewer)
    assert 'value="100"' in client.get(reverse("admin:ragrec_django_generationjob_changelist")).content.decode()
