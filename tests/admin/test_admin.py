"""The plugin's admin pages render for staff and escape item data."""

import numpy as np
import pytest
from django.urls import reverse

from ragrec_django import storage
from ragrec_django.models import Item
from ragrec_django.registry import SpaceConfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def encoded_item():
    item = Item.objects.create(key="1", title="<script>alert(1)</script> mug")
    generation = storage.write_generation(SpaceConfig("text", "minilm", "text"), version="v1", dimension=3)
    storage.upsert_embeddings(generation, [item.id], np.array([[1, 0, 0]], dtype=np.float32), ["h"])
    storage.record_failures(generation, [(Item.objects.create(key="2", title="bad").id, "", "bad image: truncated")])
    return item


@pytest.mark.parametrize(
    "url_name",
    [
        "admin:ragrec_django_item_changelist",
        "admin:ragrec_django_spacegeneration_changelist",
        "admin:ragrec_django_encodingfailure_changelist",
    ],
)
def test_admin_lists_render_and_escape(admin_client, encoded_item, url_name):
    response = admin_client.get(reverse(url_name))
    assert response.status_code == 200
    assert b"<script>alert(1)</script>" not in response.content


def test_generation_list_shows_coverage_counts(admin_client, encoded_item):
    content = admin_client.get(reverse("admin:ragrec_django_spacegeneration_changelist")).content.decode()
    assert '<td class="field-vectors">1</td>' in content
    assert '<td class="field-failures_count">1</td>' in content


def test_failures_list_shows_the_reason(admin_client, encoded_item):
    assert (
        "bad image: truncated"
        in admin_client.get(reverse("admin:ragrec_django_encodingfailure_changelist")).content.decode()
    )
