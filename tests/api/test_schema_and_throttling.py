"""The OpenAPI schema is valid and complete; the docs page lists every endpoint; throttling uses RAGREC."""

import json

import pytest
from django.core.cache import caches
from django.urls import reverse
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/api/recommend/items/{key}/similar/": "get",
    "/api/recommend/items/{key}/bought-together/": "get",
    "/api/recommend/search/": "get",
    "/api/recommend/search/suggest/": "get",
    "/api/recommend/search/photo/": "post",
    "/api/recommend/for-you/": "get",
    "/api/recommend/recently-viewed/": "get",
    "/api/recommend/buy-again/": "get",
    "/api/recommend/trending/": "get",
    "/api/recommend/events/": "post",
    "/api/recommend/assistant/": "get",
}


@pytest.fixture
def schema(api):
    GENERATOR_STATS.reset()
    response = api.get(reverse("ragrec_api:schema"), {"format": "json"})
    assert response.status_code == 200
    assert not GENERATOR_STATS, "drf-spectacular warned: %s" % dict(
        GENERATOR_STATS._warn_cache or GENERATOR_STATS._error_cache
    )
    return json.loads(response.content)


def test_schema_is_valid_openapi_with_every_endpoint(schema):
    validate_schema(schema)  # raises on an invalid document
    for path, method in ENDPOINTS.items():
        assert method in schema["paths"].get(path, {}), path
    operation_ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_schema_describes_parameters_bodies_and_errors(schema):
    paths, components = schema["paths"], schema["components"]["schemas"]
    similar = paths["/api/recommend/items/{key}/similar/"]["get"]
    parameters = {p["name"]: p for p in similar["parameters"]}
    assert parameters["key"]["in"] == "path"
    assert parameters["k"]["schema"] == {"type": "integer", "maximum": 100, "minimum": 1, "default": 10}
    assert set(similar["responses"]) == {"200", "400", "404", "429", "503"}
    # session: the anonymous visitor, for A/B variant assignment and click attribution (docs/experiments.md)
    assert {p["name"] for p in paths["/api/recommend/search/"]["get"]["parameters"]} == {
        "q",
        "k",
        "config",
        "session",
        "sort",
        "facets",
        "filter",
        "min_price",
        "max_price",
    }
    assert {p["name"] for p in paths["/api/recommend/trending/"]["get"]["parameters"]} == {
        "k",
        "config",
        "category",
        "session",
    }
    assert [p["name"] for p in paths["/api/recommend/for-you/"]["get"]["parameters"]].count("session") == 1

    result_list = components["TrackedRecommendationList"]
    assert set(result_list["properties"]) == {
        "recommender",
        "config",
        "query",
        "fallback",
        "results",
        "impression_id",
        "experiment",
        "variant",
    }
    assert result_list["properties"]["impression_id"] == {
        "type": "string",
        "format": "uuid",
        "nullable": True,
        "description": result_list["properties"]["impression_id"]["description"],
    }
    assert set(components["Recommendation"]["properties"]) == {
        "id",
        "title",
        "url",
        "category",
        "price",
        "in_stock",
        "score",
        "reason",
        "reasons",
        "components",
    }

    photo = paths["/api/recommend/search/photo/"]["post"]
    ref = photo["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert components[ref]["properties"]["image"] == {
        "type": "string",
        "format": "binary",
        "description": components[ref]["properties"]["image"]["description"],
    }
    assert components[ref]["required"] == ["image"]
    assert {"413", "400", "503"} <= set(photo["responses"])

    events = paths["/api/recommend/events/"]["post"]
    ref = events["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    one_of = components[ref]["oneOf"]
    assert one_of[0]["$ref"].endswith("/TrackedEventRequest") and one_of[1]["type"] == "array"
    assert components["TrackedEventRequest"]["properties"]["impression_id"]["format"] == "uuid"
    assert "Idempotency-Key" in {p["name"] for p in events["parameters"] if p["in"] == "header"}
    assert {"200", "201", "400", "403", "429"} <= set(events["responses"])
    assert set(components["EventReceipt"]["properties"]) == {"accepted", "stored", "duplicates"}


def test_docs_page_lists_every_endpoint_without_a_cdn(api):
    response = api.get(reverse("ragrec_api:docs"))
    assert response.status_code == 200
    html = response.content.decode()
    for path, method in ENDPOINTS.items():
        assert path in html and method.upper() in html
    assert "Idempotency-Key" in html and "Search by photo" in html
    assert reverse("ragrec_api:schema") in html
    assert "<script" not in html and "cdn" not in html.lower()


# ---------------------------------------------------------------- throttling


def test_throttle_rates_come_from_ragrec_settings(api, settings, catalogue):
    settings.RAGREC = {**settings.RAGREC, "API_THROTTLE_RATES": {"ragrec": "2/min"}}
    url = reverse("ragrec_api:trending")
    assert [api.get(url).status_code for _ in range(3)] == [200, 200, 429]
    response = api.get(url)
    assert "throttled" in response.json()["detail"].lower() and int(response["Retry-After"]) > 0
    # Other scopes keep their own (default) rates.
    events = reverse("ragrec_api:events")
    lamp = str(catalogue["Brass desk lamp"].pk)
    assert api.post(events, {"event": "view", "item": lamp, "session_key": "s"}, format="json").status_code == 201


def test_throttle_scope_can_be_switched_off(api, settings, db):
    settings.RAGREC = {**settings.RAGREC, "API_THROTTLE_RATES": {"ragrec": None}}
    assert {api.get(reverse("ragrec_api:trending")).status_code for _ in range(5)} == {200}


def test_throttle_counters_live_in_the_configured_cache(api, settings, db):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default-test"},
        "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle-test"},
    }
    settings.RAGREC = {
        **settings.RAGREC,
        "API_THROTTLE_CACHE": "throttle",
        "API_THROTTLE_RATES": {"ragrec_events": "1/hour"},
    }
    caches["throttle"].clear()
    url = reverse("ragrec_api:events")
    api.post(url, {"event": "search", "query": "mug", "session_key": "s"}, format="json")
    assert len(caches["throttle"].get("ragrec:throttle_ragrec_events_127.0.0.1")) == 1
    assert caches["default"].get("ragrec:throttle_ragrec_events_127.0.0.1") is None
    response = api.post(url, {"event": "search", "query": "mug", "session_key": "s"}, format="json")
    assert response.status_code == 429
    caches["throttle"].clear()


def test_photo_search_has_its_own_scope(api, settings, db):
    settings.RAGREC = {**settings.RAGREC, "API_THROTTLE_RATES": {"ragrec_photo": "1/min"}}
    url = reverse("ragrec_api:search-photo")
    assert api.post(url, {}, format="multipart").status_code == 400  # counted, then refused as bad input
    assert api.post(url, {}, format="multipart").status_code == 429
    assert api.get(reverse("ragrec_api:trending")).status_code == 200
