"""The description audit trail is append-only ("Also reported" in issue 19).

The reported case: the admin let a manager delete description drafts, and their audit events went with
them (a cascade). Now no one deletes drafts, audit events or published texts in the admin (not even a
superuser: a draft is rejected, not deleted), and a draft deleted in code or with its product leaves its
events behind, with the item's key, listed under "Description audit trail".
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from ragrec_django.models import DescriptionDraft, DescriptionEvent, Item, PublishedDescription
from ragrec_django.services import descriptions

pytestmark = pytest.mark.django_db


@pytest.fixture
def published(catalogue, admin_user):
    """A draft of the lamp, approved and published: its events and its publication."""
    lamp = catalogue["Brass desk lamp"]
    draft = descriptions.generate_draft(str(lamp.pk))
    descriptions.approve(draft, admin_user)
    descriptions.publish(draft, admin_user)
    return draft


def test_no_one_deletes_drafts_events_or_publications_in_the_admin(admin_client, published):
    publication = PublishedDescription.objects.get(draft=published)
    event = published.events.first()
    for model, pk in (
        ("descriptiondraft", published.pk),
        ("publisheddescription", publication.pk),
        ("descriptionevent", event.pk),
    ):
        assert admin_client.get(reverse("admin:ragrec_django_%s_delete" % model, args=[pk])).status_code == 403, model
        assert (
            admin_client.post(reverse("admin:ragrec_django_%s_delete" % model, args=[pk]), {"post": "yes"}).status_code
            == 403
        )
        changelist = admin_client.get(reverse("admin:ragrec_django_%s_changelist" % model))
        assert changelist.status_code == 200 and "delete_selected" not in changelist.content.decode(), model
    response = admin_client.post(
        reverse("admin:ragrec_django_descriptiondraft_changelist"),
        {"action": "delete_selected", "_selected_action": [published.pk], "post": "yes"},
    )
    assert response.status_code in (200, 302)
    assert DescriptionDraft.objects.filter(pk=published.pk).exists()
    assert DescriptionEvent.objects.filter(pk=event.pk).exists()


def test_events_outlive_their_draft_and_its_product(admin_client, published, catalogue):
    actions = list(published.events.values_list("action", flat=True))
    assert actions == ["generated", "approved", "published"]
    key = published.item.key
    assert set(DescriptionEvent.objects.values_list("item_key", flat=True)) == {key}
    published.delete()  # in code (the admin refuses)
    assert list(DescriptionEvent.objects.filter(item_key=key, draft=None).values_list("action", flat=True)) == actions
    catalogue["Brass desk lamp"].delete()  # the shop deletes the product: the mirror and its drafts go
    assert not Item.objects.filter(key=key).exists()
    assert DescriptionEvent.objects.filter(item_key=key).count() == len(actions)
    page = admin_client.get(reverse("admin:ragrec_django_descriptionevent_changelist"), {"q": key})
    assert page.status_code == 200 and page.content.decode().count("<tr") >= len(actions)
