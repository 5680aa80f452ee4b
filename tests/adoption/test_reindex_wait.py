"""``ragrec_reindex --force --wait`` waits for the queued work itself, not for coverage (issue 21, item 9).

Coverage is complete before a forced re-encode starts, so a wait on coverage returns at once; the
command must still be waiting while no worker runs, and return once a real worker has finished.
"""

import subprocess
import sys
import time

import pytest
from django.utils import timezone

from ragrec_django.models import Embedding, TaskDelivery
from ragrec_django.services import encoding
from shop_demo.catalog.models import Category, Product
from tests.helpers.workers import ROOT

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


def test_force_wait_returns_only_after_the_worker_re_encoded_everything(ragrec_encoders, start_worker, worker_env):
    category = Category.objects.create(name="Lamps", slug="lamps")
    for i in range(6):
        Product.objects.create(title="Desk lamp %d" % i, slug="lamp-%d" % i, description="A warm LED desk lamp.",
                               category=category, price="30.00", stock=3)  # fmt: skip
    pks = list(Product.objects.values_list("pk", flat=True))
    encoding.encode_items("text", pks)
    before = timezone.now()

    command = subprocess.Popen(
        [sys.executable, "manage.py", "ragrec_reindex", "--space", "text", "--force", "--wait", "--chunk-size", "2",
         "--timeout", "240"],
        cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while TaskDelivery.objects.count() < 3 and time.monotonic() < deadline:  # the three tasks are queued
            time.sleep(0.2)
        time.sleep(2)
        assert command.poll() is None, "returned before any worker ran: %s" % (command.communicate(),)
        start_worker()
        stdout, stderr = command.communicate(timeout=240)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 0, stdout + stderr
    assert "Traceback" not in stderr
    assert not TaskDelivery.objects.exists()
    rows = Embedding.objects.filter(generation__space="text")
    assert rows.count() == len(pks)
    assert not rows.filter(updated_at__lt=before).exists()  # every vector re-written by the forced run
