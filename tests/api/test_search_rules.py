"""The search endpoint returns the merchandiser's redirect for a query (and still the results)."""

import pytest
from django.urls import reverse

from ragrec_django.services import search as search_service
from ragrec_django.services.encoding import sync_host_items
from shop_demo.catalog.models import Category, Product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_search_caches():
    search_service.forget_caches()


def test_the_search_endpoint_returns_the_redirect(api, settings):
    settings.RAGREC = {**settings.RAGREC, "SEARCH_WEIGHTS": {"keyword": 1.0, "text": 0.0, "image": 0.0}}
    category = Category.objects.create(name="Gifts", slug="gifts")
    product = Product.objects.create(title="Gift card", slug="gift-card", category=category, price="25.00", stock=9)
    sync_host_items([product.pk])
    search_service.save_search_rule("gift card", "https://shop.example/gift-cards/")
    body = api.get(reverse("ragrec_api:search"), {"q": "Gift Card"}).json()
    assert body["redirect"] == "https://shop.example/gift-cards/"
    assert [r["title"] for r in body["results"]] == ["Gift card"]
    assert api.get(reverse("ragrec_api:search"), {"q": "card"}).json()["redirect"] is None
