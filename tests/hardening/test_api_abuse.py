"""Abusive API input beyond what tests/api covers: each is a 4xx with a message (JSON), nothing stored.

Already covered elsewhere, not repeated here: k over MAX_K / 0 / -1 / "abc" / "2.5" as query parameters
(400, refused rather than clamped), unknown item ids (404), unknown configs, malformed and deeply nested
JSON, wrong content types, 501 events in a batch, oversized photos (tests/api); NaN and wrong-dimension
vectors (tests/storage/test_storage.py); NaN and negative prices in serving rules (tests/ranking).
"""

from __future__ import annotations

import io
import json
import math
from decimal import Decimal

import numpy as np
import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from ragrec_django import storage
from ragrec_django.ml.base import DimensionMismatch
from ragrec_django.models import Embedding, Interaction, Item
from ragrec_django.registry import SpaceConfig
from ragrec_django.services.events import MAX_BATCH
from shop_demo.catalog.models import Product
from tests.ml.samples import build_samples

pytestmark = pytest.mark.django_db

WITH_HANDLER = {"EXCEPTION_HANDLER": "ragrec_django.api.exceptions.exception_handler"}


def post_json(api, body, url=None, **extra):
    url = url or reverse("ragrec_api:events") + "?session=s"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return api.generic("POST", url, data, content_type=extra.pop("content_type", "application/json"), **extra)


# ---------------------------------------------------------------- k as a form field of search by photo


def test_bad_k_in_the_photo_form_is_a_400(api, catalogue):
    url = reverse("ragrec_api:search-photo")
    for k, message in [
        ("1000", "less than or equal to 100"),
        ("0", "greater than or equal to 1"),
        ("abc", "valid integer"),
        ("99999999999999999999", "less than or equal to 100"),
    ]:
        upload = io.BytesIO(build_samples().jpeg)
        upload.name = "p.jpg"
        response = api.post(url, {"image": upload, "k": k}, format="multipart")
        assert response.status_code == 400, k
        assert message in response.json()["k"][0], k


# ---------------------------------------------------------------- event fields


def test_out_of_range_and_mistyped_event_fields_are_400_by_index(api, catalogue):
    lamp = str(catalogue["Brass desk lamp"].pk)
    cases = [
        (
            {"event": "view", "item": lamp, "created_at": "0001-01-01T00:00:00+05:00"},
            "created_at: Datetime value out of range.",
        ),
        (
            {"event": "view", "item": lamp, "created_at": "9999-12-31T23:59:59-05:00"},
            "created_at: Datetime value out of range.",
        ),
        (
            {"event": "view", "item": lamp, "created_at": "2024-02-30T00:00:00Z"},
            "created_at: Datetime has wrong format.",
        ),
        (
            {"event": "purchase", "item": lamp, "quantity": 10**30},
            "quantity: Ensure this value is less than or equal to 10000.",
        ),
        (
            {"event": "purchase", "item": lamp, "quantity": -3},
            "quantity: Ensure this value is greater than or equal to 1.",
        ),
        ({"event": "purchase", "item": lamp, "quantity": 2.5}, "quantity: A valid integer is required."),
        ({"event": "view", "item": "a\x00b"}, "item: Null characters are not allowed."),
        ({"event": "view", "item": {"id": lamp}}, "item: Not a valid string."),
        ({"event": ["view"], "item": lamp}, "event: "),
        (
            {"event": "view", "item": lamp, "idempotency_key": "k" * 129},
            "idempotency_key: Ensure this field has no more than 128",
        ),
        ({"event": "search", "query": "q" * 501}, "query: Ensure this field has no more than 500 characters."),
    ]
    response = post_json(api, [body for body, _ in cases])
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {str(i) for i in range(len(cases))}
    for index, (_, message) in enumerate(cases):
        assert errors[str(index)][0].startswith(message), (index, errors[str(index)])
    assert Interaction.objects.count() == 0


def test_null_and_non_object_entries_of_a_batch_are_400_by_index(api, catalogue):
    """Found by schemathesis: a batch of nulls was a 500 (DRF reports null entries as a bare list)."""
    lamp = str(catalogue["Brass desk lamp"].pk)
    response = post_json(api, [None, {"event": "view", "item": lamp}, None, 7, [], "view"])
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors == {
        "0": ["Invalid data. Expected a dictionary, but got null."],
        "2": ["Invalid data. Expected a dictionary, but got null."],
        "3": ["Invalid data. Expected a dictionary, but got int."],
        "4": ["Invalid data. Expected a dictionary, but got list."],
        "5": ["Invalid data. Expected a dictionary, but got str."],
    }
    assert post_json(api, [None] * 6).status_code == 400
    assert Interaction.objects.count() == 0


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"event": "purchase", "item": "1", "quantity": 1e400}', "quantity: A valid integer is required."),
        ('{"event": "purchase", "item": "1", "quantity": Infinity}', "JSON parse error"),
        ('{"event": "purchase", "item": "1", "quantity": -Infinity}', "JSON parse error"),
        (b'{"event": "view", "item": "\xff\xfe"}', "JSON parse error"),
        ('{"event": "view", "item": "1"}'.encode("utf-16-le"), "JSON parse error"),
        ('{"event": "view", "item": ' + "[" * 500 + "]" * 500 + "}", "item: Not a valid string."),
    ],
)
def test_json_that_python_would_accept_but_the_api_must_not(api, db, body, message):
    response = post_json(api, body)
    assert response.status_code == 400, response.content
    text = json.dumps(response.json())
    assert message in text
    assert Interaction.objects.count() == 0


def test_a_full_batch_is_accepted_and_one_more_refused(api, catalogue):
    lamp = str(catalogue["Brass desk lamp"].pk)
    batch = [{"event": "view", "item": lamp, "idempotency_key": "k%d" % i} for i in range(MAX_BATCH)]
    assert post_json(api, batch).json() == {"accepted": MAX_BATCH, "stored": MAX_BATCH, "duplicates": 0}
    response = post_json(api, batch + [{"event": "view", "item": lamp}])
    assert (
        response.status_code == 400 and "at most %d events" % MAX_BATCH in response.json()["errors"][str(MAX_BATCH)][0]
    )
    assert Interaction.objects.count() == MAX_BATCH


# ---------------------------------------------------------------- bodies and query strings over Django's limits


def too_big_body(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    return json.dumps([{"event": "search", "query": "x" * 400, "session_key": "s"}] * 200)  # ~90 KB


def test_a_json_body_over_the_limit_is_a_413_with_a_message(api, settings, db):
    response = post_json(api, too_big_body(settings))
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large: at most 64 KB (65536 bytes)."}


def test_the_exception_handler_answers_a_json_body_over_the_limit_with_413(api, settings, db):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, **WITH_HANDLER}
    response = post_json(api, too_big_body(settings))
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large: at most 64 KB (65536 bytes)."}
    assert Interaction.objects.count() == 0


def test_too_many_query_parameters_are_a_400_with_a_message(api, settings, db):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    response = api.get(reverse("ragrec_api:trending") + "?" + "&".join("p%d=1" % i for i in range(60)))
    assert response.status_code == 400
    assert response.json() == {"detail": "Too many fields in the query string or form: at most 50."}


def test_the_exception_handler_answers_too_many_fields_with_400(api, settings, db):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, **WITH_HANDLER}
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    response = api.get(reverse("ragrec_api:trending") + "?" + "&".join("p%d=1" % i for i in range(60)))
    assert response.status_code == 400
    assert response.json() == {"detail": "Too many fields in the query string or form: at most 50."}
    fields = {"f%d" % i: "1" for i in range(60)}
    response = api.post(reverse("ragrec_api:search-photo"), fields, format="multipart")
    assert response.status_code == 400 and "Too many fields" in response.json()["detail"]


def test_without_the_handler_those_are_still_4xx_never_500(api, settings, db):
    """Today (handler not wired): Django's own 400 page, not a server error."""
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 50
    assert api.get(reverse("ragrec_api:trending") + "?" + "&".join("p%d=1" % i for i in range(60))).status_code == 400
    assert post_json(api, too_big_body(settings)).status_code in (400, 413)


def test_other_protocol_errors_are_json_4xx(api, db):
    assert api.get(reverse("ragrec_api:trending"), HTTP_ACCEPT="application/xml").status_code == 406
    response = api.delete(reverse("ragrec_api:search"))
    assert response.status_code == 405 and response.json() == {"detail": 'Method "DELETE" not allowed.'}
    response = api.generic("POST", reverse("ragrec_api:search-photo"), b"xx", content_type="multipart/form-data")
    assert response.status_code == 400 and "Multipart form parse error" in response.json()["detail"]


# ---------------------------------------------------------------- prices


def test_negative_nan_and_infinite_prices_cannot_enter_the_demo_catalogue(catalogue):
    mug = catalogue["Red ceramic coffee mug"]
    for price in ("-5", "-0.01"):
        with pytest.raises(IntegrityError, match="price_not_negative"), transaction.atomic():
            Product.objects.filter(pk=mug.pk).update(price=Decimal(price))
    for price in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(Exception, match="must be a decimal number"), transaction.atomic():
            Product.objects.filter(pk=mug.pk).update(price=Decimal(price))


@pytest.mark.parametrize(
    "q",
    [
        "mug under -5",
        "mug under nan",
        "mug under inf",
        "mug under 1e400",
        "mug over -20 and under -10",
        "mug under 99999999999999999999999999999",
    ],
)
def test_budgets_in_assistant_requests_are_never_negative_or_not_finite(api, catalogue, q):
    response = api.get(reverse("ragrec_api:assistant"), {"q": q, "k": 3})
    assert response.status_code == 200
    filters = response.json()["filters"]
    for name in ("min_price", "max_price"):
        if filters.get(name) is not None:
            value = Decimal(filters[name])
            assert value.is_finite() and value >= 0, (q, filters)
    for product in response.json()["products"]:
        assert Decimal(product["price"]) >= 0


# ---------------------------------------------------------------- vectors written to storage


SPACE = SpaceConfig(name="text", encoder_alias="minilm", modality="text")


@pytest.fixture
def generation(db):
    generation = storage.write_generation(SPACE, version="v1", dimension=4)
    item = Item.objects.create(key="a", title="a")
    storage.upsert_embeddings(generation, [item.id], np.array([[1, 0, 0, 0]], dtype=np.float32), ["h0"])
    return generation, item


@pytest.mark.parametrize(
    "vectors, error, match",
    [
        (np.zeros((1, 0), dtype=np.float32), DimensionMismatch, "dimension 0 but the space stores 4"),
        (np.array([[np.inf, 1, 0, 0]], dtype=np.float32), ValueError, "NaN or infinite"),
        (np.array([[1, -np.inf, 0, 0]], dtype=np.float64), ValueError, "NaN or infinite"),
        (np.ones((1, 1, 4), dtype=np.float32), DimensionMismatch, "2-D array"),
        (None, DimensionMismatch, "2-D array"),
        (np.array([["a", "b", "c", "d"]]), ValueError, "could not convert"),
        (np.ones((2, 4), dtype=np.float32), ValueError, "differ in length"),  # two vectors, one id
    ],
)
def test_bad_vectors_are_named_errors_and_nothing_is_written(generation, vectors, error, match):
    generation, item = generation
    before = list(Embedding.objects.values_list("item_id", "content_hash"))
    with pytest.raises(error, match=match):
        storage.upsert_embeddings(generation, [item.id], vectors, ["h1"])
    assert list(Embedding.objects.values_list("item_id", "content_hash")) == before


def test_an_empty_batch_writes_nothing(generation):
    generation, _ = generation
    assert storage.upsert_embeddings(generation, [], np.zeros((0, 4), dtype=np.float32), []) == 0
    assert Embedding.objects.count() == 1


def test_finite_values_beyond_halfvec_range_are_a_named_error(generation):
    generation, item = generation
    with pytest.raises(ValueError, match="halfvec"):
        storage.upsert_embeddings(generation, [item.id], np.array([[70000.0, 1, 0, 0]], dtype=np.float32), ["h1"])
    assert math.isclose(float(Embedding.objects.get(item=item).vector[0]), 1.0, abs_tol=1e-3)
