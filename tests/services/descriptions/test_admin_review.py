"""The review queue end to end through the Django admin (test client): diff, edit, approve, publish, restore."""

import pytest
from django.urls import reverse

from ragrec_django.models import DescriptionDraft, GenerationJob, PublishedDescription
from ragrec_django.services import descriptions
from shop_demo.catalog.models import Product
from shop_demo.celery import app as celery_app

pytestmark = pytest.mark.django_db


def step_url(draft, step):
    return reverse("admin:ragrec_django_descriptiondraft_step", args=[draft.pk, step])


def change_url(draft):
    return reverse("admin:ragrec_django_descriptiondraft_change", args=[draft.pk])


def test_review_page_shows_side_by_side_flags_and_sources_escaped(client, reviewer, product):
    Product.objects.filter(pk=product.pk).update(description="<b>old</b> text")
    draft = descriptions.generate_draft(str(product.pk))
    client.force_login(reviewer)
    page = client.get(change_url(draft)).content.decode()
    assert "Current" in page and "Draft" in page and "<del>" in page and "<ins>" in page
    assert "&lt;b&gt;old&lt;/b&gt;" in page and "<b>old</b>" not in page
    assert "this product: " in page and "material: copper" in page
    assert step_url(draft, "approve") in page and step_url(draft, "publish") not in page


def test_full_flow_edit_approve_publish_and_restore(client, reviewer, publisher, product):
    draft = descriptions.generate_draft(str(product.pk))
    client.force_login(reviewer)
    response = client.post(change_url(draft), {"text": "Edited by a human reviewer."})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.text == "Edited by a human reviewer." and draft.events.filter(action="edited", user=reviewer).exists()

    client.post(step_url(draft, "publish"))  # a reviewer cannot publish
    draft.refresh_from_db()
    assert draft.status == "pending"
    client.post(step_url(draft, "approve"))
    draft.refresh_from_db()
    assert draft.status == "approved"
    assert Product.objects.get(pk=product.pk).description == "A copper fitting."  # approved is not published

    client.force_login(publisher)
    client.post(step_url(draft, "publish"))
    assert Product.objects.get(pk=product.pk).description == "Edited by a human reviewer."

    original = PublishedDescription.objects.get(item__key=str(product.pk), text="A copper fitting.")
    restore = reverse("admin:ragrec_django_publisheddescription_restore", args=[original.pk])
    assert "Restore this text" in client.get(restore).content.decode()
    client.post(restore)
    assert Product.objects.get(pk=product.pk).description == "A copper fitting."


def test_bulk_actions_reject_with_reason_and_approve(client, reviewer, product):
    first = descriptions.generate_draft(str(product.pk))
    second = descriptions.generate_draft(str(product.pk))
    client.force_login(reviewer)
    changelist = reverse("admin:ragrec_django_descriptiondraft_changelist")
    client.post(changelist, {"action": "reject_selected", "_selected_action": [first.pk], "reason": "wrong size"})
    client.post(changelist, {"action": "approve_selected", "_selected_action": [second.pk]})
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, first.reject_reason, second.status) == ("rejected", "wrong size", "approved")
    listing = client.get(changelist + "?status__exact=pending").content.decode()
    assert "0 description drafts" in listing or "0 results" in listing


def test_staff_without_review_permission_cannot_act(client, django_user_model, product):
    draft = descriptions.generate_draft(str(product.pk))
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(change_url(draft)).status_code == 403
    client.post(step_url(draft, "approve"))
    assert DescriptionDraft.objects.get(pk=draft.pk).status == "pending"


def test_bulk_generation_job_runs_as_celery_tasks_with_progress(
    client, reviewer, product, django_capture_on_commit_callbacks
):
    from ragrec_django.services.encoding import sync_host_items

    sync_host_items([product.pk])
    client.force_login(reviewer)
    add = reverse("admin:ragrec_django_generationjob_add")
    assert "Hardware" in client.get(add).content.decode()
    celery_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            client.post(add, {"category": "Hardware", "generator": ""})
    finally:
        celery_app.conf.task_always_eager = False
    job = GenerationJob.objects.get()
    assert (job.total, job.done, job.failed, job.status) == (1, 1, 0, "done")
    assert DescriptionDraft.objects.filter(job=job, status="pending").count() == 1
    assert 'value="100"' in client.get(reverse("admin:ragrec_django_generationjob_changelist")).content.decode()
