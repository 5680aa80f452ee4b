"""The assistant endpoint answers from retrieved products and refuses bad requests clearly."""

import pytest
from django.urls import reverse

from shop_demo.catalog.models import Product

pytestmark = pytest.mark.django_db


def test_assistant_answers_with_cited_products_in_budget(api, catalogue):
    Product.objects.filter(title="Blue ceramic coffee mug").update(price="9.00")
    from ragrec_django.services.encoding import sync_host_items

    sync_host_items([p.pk for p in catalogue.values()])
    response = api.get(reverse("ragrec_api:assistant"), {"q": "a ceramic coffee mug under 10"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [p["title"] for p in body["products"]] == ["Blue ceramic coffee mug"]
    assert body["filters"]["max_price"] == "10"
    assert "Blue ceramic coffee mug" in body["answer"]


@pytest.mark.parametrize(
    "params, status", [({}, 400), ({"q": ""}, 400), ({"q": "x" * 501}, 400), ({"q": "mug", "k": "-1"}, 400)]
)
def test_bad_assistant_requests_are_4xx(api, catalogue, params, status):
    assert api.get(reverse("ragrec_api:assistant"), params).status_code == status


def test_unreachable_generator_is_503_not_500(api, catalogue, settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "ASSISTANT_GENERATOR": "down",
        "GENERATORS": {
            "default": {"BACKEND": "ragrec_django.ml.generators.FactsGenerator"},
            "down": {
                "BACKEND": "ragrec_django.ml.generators.OpenAICompatibleGenerator",
                "OPTIONS": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "max_retries": 0, "timeout": 1},
            },
        },
    }
    response = api.get(reverse("ragrec_api:assistant"), {"q": "a mug"})
    assert response.status_code == 503 and "assistant" in response.json()["detail"]
