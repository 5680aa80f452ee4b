"""prepare_demo: complement proposals and a sample of description drafts, once."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from ragrec_django.models import ComplementPair, DescriptionDraft, GenerationJob
from tests.services.conftest import catalogue, jpeg  # noqa: F401  (the encoded catalogue fixture)

pytestmark = pytest.mark.django_db


def run(**options) -> str:
    out = io.StringIO()
    call_command("prepare_demo", stdout=out, **options)
    return out.getvalue()


def test_proposes_complements_and_generates_drafts_in_process_once(catalogue):
    output = run(category="Mugs", drafts=3, in_process=True)
    assert ComplementPair.objects.filter(status="proposed").exists() and "await review" in output
    job = GenerationJob.objects.get()
    assert (job.scope, job.total, job.done, job.status) == ("Mugs", 3, 3, "done")
    drafts = DescriptionDraft.objects.filter(status="pending")
    assert drafts.count() == 3 and {d.item.category for d in drafts} == {"Mugs"}
    assert "3 draft(s) of Mugs generated for review" in output

    pairs = ComplementPair.objects.count()
    again = run(category="Mugs", drafts=3, in_process=True)
    assert "proposed before" in again and "generated before (3 draft(s) await review)" in again
    assert ComplementPair.objects.count() == pairs and DescriptionDraft.objects.count() == 3


def test_queues_the_drafts_on_the_worker(catalogue, monkeypatch):
    queued = []
    monkeypatch.setattr("ragrec_django.tasks.enqueue_generation", lambda job, keys: queued.append((job.pk, keys)))
    output = run(category="Kettles", drafts=50, no_complements=True)
    job = GenerationJob.objects.get()
    assert queued == [(job.pk, queued[0][1])] and len(queued[0][1]) == 3 == job.total
    assert "3 item(s) of Kettles queued on the worker" in output and not ComplementPair.objects.exists()


def test_an_unknown_category_generates_nothing(catalogue):
    assert "no encoded items in category 'Nope'" in run(category="Nope", no_complements=True)
    assert not GenerationJob.objects.exists()
