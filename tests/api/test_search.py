"""The search endpoints: understanding, facets, filters, sorting and the no-results notice through the REST API,
autocomplete, and each search logged for the visitor."""

import pytest
from django.urls import reverse

from ragrec_django.models import SearchLog
from ragrec_django.services import search as search_service

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_search_caches():
    search_service.forget_caches()


def search(api, **params):
    return api.get(reverse("ragrec_api:search"), params)


def test_search_reads_the_query_and_counts_facets(api, catalogue, settings):
    settings.RAGREC = {**settings.RAGREC, "SEARCH_CURRENCY": "£"}
    response = search(api, q="red t-shirt under 25", k=3, facets="all", session="visitor-1")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["results"][0]["title"] == "Red cotton t-shirt"
    assert body["results"][0]["reason"] == "red, T-shirts, under £25"
    assert {r["category"] for r in body["results"]} == {"T-shirts"}
    assert body["understood"] == [
        {"attribute": "colour", "value": "red", "text": "red", "use": "boost"},
        {"attribute": "category", "value": "T-shirts", "text": "t-shirt", "use": "filter"},
        {"attribute": "price", "value": "under £25", "text": "under 25", "use": "filter"},
    ]
    assert body["notice"] is None and body["sort"] == "relevance" and body["impression_id"]
    facets = {f["name"]: {v["value"]: v["count"] for v in f["values"]} for f in body["facets"]}
    assert facets["category"] == {"T-shirts": 4} and facets["price"] == {"10-25": 4}
    assert sum(facets["colour"].values()) == 4
    log = SearchLog.objects.get()
    assert (log.query, log.session_key, log.item_keys) == (
        "red t-shirt under 25",
        "visitor-1",
        [r["id"] for r in body["results"]],
    )


def test_filters_sort_and_the_no_results_notice(api, catalogue):
    body = search(api, q="mug", k=10, filter=["colour:blue", "colour:green"], sort="price_asc").json()
    assert sorted(r["title"] for r in body["results"]) == ["Blue ceramic coffee mug", "Green enamel camping mug"]
    body = search(api, q="mug under 5", k=3).json()
    assert body["notice"] == "No results for 'mug under 5'; showing 'mug'" and body["results"]
    for params, field in (
        ({"filter": "colour"}, "filter"),
        ({"sort": "cheapest"}, "sort"),
        ({"min_price": "-1"}, "min_price"),
    ):
        response = search(api, q="mug", **params)
        assert response.status_code == 400 and field in response.json(), response.json()
    response = search(api, q="mug", facets="shape")
    assert response.status_code == 400 and "Unknown facet" in response.json()["detail"]


def test_autocomplete_endpoint(api, catalogue):
    response = api.get(reverse("ragrec_api:search-suggest"), {"q": "ceramic mu", "k": 4})
    assert response.status_code == 200
    body = response.json()
    assert body["query"] == "ceramic mu"
    kinds = {(s["text"], s["kind"]) for s in body["suggestions"]}
    assert ("ceramic mug", "completion") in kinds
    assert ("Red ceramic coffee mug", "product") in kinds
    assert all(s["url"] for s in body["suggestions"] if s["kind"] == "product")
    assert api.get(reverse("ragrec_api:search-suggest")).status_code == 400
    assert api.get(reverse("ragrec_api:search-suggest"), {"q": "mug", "k": 21}).status_code == 400
