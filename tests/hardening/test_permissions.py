"""Who may review and publish description drafts, through every door the admin has.

tests/services/descriptions covers the happy paths (reviewer approves, publisher publishes, restore) and staff
without permissions getting 403 on the change page. Here: anonymous visitors, and each permission
alone against each step, bulk action, restore and the bulk-generation page.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from ragrec_django.models import DescriptionDraft, GenerationJob, PublishedDescription
from ragrec_django.services import descriptions
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:ragrec_django_descriptiondraft_changelist"


def user_with(*codenames, username):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="ragrec_django", codename__in=codenames)
    )
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def people(db):
    return {
        "staff": user_with(username="staff"),
        "viewer": user_with("view_descriptiondraft", "view_publisheddescription", username="viewer"),
        "reviewer": user_with(
            "review_descriptiondraft", "view_descriptiondraft", "change_descriptiondraft", username="reviewer"
        ),
        "publisher": user_with(
            "publish_descriptiondraft",
            "view_descriptiondraft",
            "change_descriptiondraft",
            "view_publisheddescription",
            username="publisher",
        ),
    }


@pytest.fixture
def drafts(db, people):
    category = Category.objects.create(name="Hardware", slug="hardware")
    product = Product.objects.create(
        title="Copper pipe fitting",
        slug="copper",
        category=category,
        price="4.20",
        stock=9,
        colour="orange",
        material="copper",
        description="A copper fitting.",
    )
    pending = descriptions.generate_draft(str(product.pk))
    approved = descriptions.approve(descriptions.generate_draft(str(product.pk)), people["reviewer"])
    return pending, approved


def step(client, draft, name, **data):
    return client.post(reverse("admin:ragrec_django_descriptiondraft_step", args=[draft.pk, name]), data)


def status_of(draft):
    return DescriptionDraft.objects.get(pk=draft.pk).status


def test_anonymous_visitors_are_sent_to_the_login_page_and_change_nothing(client, drafts):
    pending, approved = drafts
    for url in (
        reverse(CHANGELIST),
        reverse("admin:ragrec_django_descriptiondraft_change", args=[pending.pk]),
        reverse("admin:ragrec_django_generationjob_add"),
        reverse("admin:ragrec_django_publisheddescription_changelist"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), url
    for draft, name in ((pending, "approve"), (pending, "reject"), (pending, "regenerate"), (approved, "publish")):
        response = step(client, draft, name, reason="no")
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    response = client.post(reverse(CHANGELIST), {"action": "publish_selected", "_selected_action": [approved.pk]})
    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
    assert (status_of(pending), status_of(approved)) == ("pending", "approved")
    assert not PublishedDescription.objects.exists()


@pytest.mark.parametrize("who", ["staff", "viewer", "publisher"])
def test_only_reviewers_approve_reject_or_regenerate(client, people, drafts, who):
    pending, _ = drafts
    client.force_login(people[who])
    drafts_before = DescriptionDraft.objects.count()
    for name in ("approve", "reject", "regenerate"):
        response = step(client, pending, name, reason="no")
        assert response.status_code in (302, 403), name
        assert status_of(pending) == "pending", (who, name)
    for action in ("approve_selected", "reject_selected", "regenerate_selected"):
        client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [pending.pk], "reason": "no"})
        assert status_of(pending) == "pending", (who, action)
    assert DescriptionDraft.objects.count() == drafts_before  # nothing regenerated


@pytest.mark.parametrize("who", ["staff", "viewer", "reviewer"])
def test_only_publishers_publish(client, people, drafts, who):
    _, approved = drafts
    client.force_login(people[who])
    step(client, approved, "publish")
    client.post(reverse(CHANGELIST), {"action": "publish_selected", "_selected_action": [approved.pk]})
    assert status_of(approved) == "approved"
    assert not PublishedDescription.objects.exists()


def test_the_reviewer_is_told_why_publishing_failed(client, people, drafts):
    _, approved = drafts
    client.force_login(people["reviewer"])
    page = client.post(reverse("admin:ragrec_django_descriptiondraft_step", args=[approved.pk, "publish"]), follow=True)
    assert "publish_descriptiondraft" in page.content.decode()


def test_restoring_an_earlier_text_needs_the_publish_permission(client, people, drafts):
    _, approved = drafts
    first = descriptions.publish(approved, people["publisher"])
    second_draft = descriptions.approve(descriptions.generate_draft(first.item.key), people["reviewer"])
    descriptions.publish(second_draft, people["publisher"])
    restore = reverse("admin:ragrec_django_publisheddescription_restore", args=[first.pk])
    for who in ("staff", "viewer", "reviewer"):
        client.force_login(people[who])
        client.post(restore)
        assert PublishedDescription.objects.get(is_current=True).draft_id == second_draft.pk, who
    client.force_login(people["publisher"])
    client.post(restore)
    assert PublishedDescription.objects.get(is_current=True).text == first.text


def test_bulk_generation_needs_the_review_permission(client, people, drafts):
    url = reverse("admin:ragrec_django_generationjob_add")
    for who in ("staff", "viewer", "publisher"):
        client.force_login(people[who])
        assert client.get(url).status_code == 403, who
        client.post(url, {"scope": ""})
    assert not GenerationJob.objects.exists()
    client.force_login(people["reviewer"])
    assert client.get(url).status_code == 200
