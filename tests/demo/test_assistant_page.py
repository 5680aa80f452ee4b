"""The demo's assistant page shows a grounded answer with the products it cites."""

import pytest
from django.urls import reverse

from tests.services.conftest import catalogue, jpeg  # noqa: F401  (the encoded catalogue fixture)

pytestmark = pytest.mark.django_db


def test_assistant_page_answers_with_product_cards(client, catalogue):
    page = client.get(reverse("catalog:assistant"), {"q": "a copper tea kettle under 25"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Copper stovetop tea kettle" in html and "Products in the answer" in html
    assert "up to £25" in html


def test_assistant_page_explains_bad_requests(client, catalogue):
    page = client.get(reverse("catalog:assistant"), {"q": "x" * 501})
    assert page.status_code == 400 and "longer than 500 characters" in page.content.decode()
    assert client.get(reverse("catalog:assistant")).status_code == 200
