"""Serializers of the measurement fields the API adds to its responses and events (see services.experiments)."""

from __future__ import annotations

from rest_framework import serializers

from . import serializers as s

IMPRESSION_HELP = (
    "Id of this list's impression: post clicks on its results to events/ with this impression_id. "
    "Null when the list is empty (nothing shown, nothing recorded)."
)


class TrackingFieldsMixin(serializers.Serializer):
    impression_id = serializers.UUIDField(allow_null=True, help_text=IMPRESSION_HELP)
    experiment = serializers.CharField(
        allow_blank=True, help_text='RAGREC["EXPERIMENTS"] name the visitor is in here, or "".'
    )
    variant = serializers.CharField(allow_blank=True, help_text='Variant of that experiment, or "".')


class TrackedRecommendationListSerializer(s.RecommendationListSerializer, TrackingFieldsMixin):
    pass


class TrackedAssistantAnswerSerializer(s.AssistantAnswerSerializer, TrackingFieldsMixin):
    pass


class TrackedEventSerializer(s.EventSerializer):
    impression_id = serializers.UUIDField(
        required=False,
        allow_null=True,
        help_text="For a click: the `impression_id` of the list it was shown in. It must exist and have shown the item.",
    )
