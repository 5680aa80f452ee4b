"""A recommendation's JSON from the serializer's own ``to_representation`` equals what DRF makes of its declared
fields (the OpenAPI schema's), for every kind of value."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework import serializers

from ragrec_django.api.serializers import RecommendationSerializer
from ragrec_django.models import Item
from ragrec_django.services.results import Recommendation

pytestmark = pytest.mark.django_db


def through_drf(recommendation) -> dict:
    return serializers.Serializer.to_representation(RecommendationSerializer(), recommendation)


@pytest.mark.parametrize(
    "price, in_stock, score, components",
    [
        (Decimal("19.9"), True, 0.5, {"text": 0.25, "image": 1}),
        (None, False, 1, {}),
        (Decimal("1234567.005"), True, -2.5e-9, {"rrf": 0.0164}),
        (Decimal("0"), False, 3.0, {"keyword": None}),
    ],
)
def test_the_same_json_as_drf_makes_of_the_declared_fields(price, in_stock, score, components):
    item = Item.objects.create(key="k-%s" % score, title="Blue mug", category="mugs", price=price, in_stock=in_stock)
    recommendation = Recommendation(
        item=item, score=score, reason="similar to Red mug", reasons=["similar to Red mug", 7], components=components
    )
    assert RecommendationSerializer(recommendation).data == through_drf(recommendation)
    assert (
        RecommendationSerializer([recommendation, recommendation], many=True).data == [through_drf(recommendation)] * 2
    )
