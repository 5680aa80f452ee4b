"""Serializers of the REST API: query parameters in, recommendation lists and event receipts out."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.settings import api_settings

from .. import limits
from ..conf import ragrec_settings
from ..models import Interaction

DEFAULT_K = 10
CONFIG_MAX_LENGTH = 64
SESSION_MAX_LENGTH = limits.SESSION_KEY_MAX_CHARS
QUERY_MAX_LENGTH = limits.SEARCH_QUERY_MAX_CHARS


# ---------------------------------------------------------------- query parameters


class KConfigQuerySerializer(serializers.Serializer):
    """``k`` and ``config``, accepted by every recommendation endpoint."""

    k = serializers.IntegerField(
        required=False,
        default=DEFAULT_K,
        min_value=1,
        help_text='How many results, 1 to RAGREC["MAX_K"] (default %d). A larger value is refused (400), '
        "not clamped; a serving configuration's own max_k may return fewer." % DEFAULT_K,
    )
    config = serializers.CharField(
        required=False,
        default="default",
        max_length=CONFIG_MAX_LENGTH,
        help_text='Name of a serving configuration (ranking rules): a ServingConfig row or a key of RAGREC["SERVING_CONFIGS"].',
    )

    def get_fields(self):
        fields = super().get_fields()
        max_k = int(ragrec_settings.MAX_K)  # read per request: settings may change (tests, reloads)
        fields["k"] = serializers.IntegerField(
            required=False, default=min(DEFAULT_K, max_k), min_value=1, max_value=max_k, help_text=fields["k"].help_text
        )
        return fields


class SearchQuerySerializer(KConfigQuerySerializer):
    q = serializers.CharField(
        max_length=QUERY_MAX_LENGTH,
        help_text="What to look for. Typos are corrected; the corrected query is returned as `query`.",
    )


class TrendingQuerySerializer(KConfigQuerySerializer):
    category = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=limits.CATEGORY_MAX_CHARS,
        help_text="Only items of this category (its name).",
    )


class VisitorQuerySerializer(KConfigQuerySerializer):
    session = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=SESSION_MAX_LENGTH,
        help_text="Anonymous visitor id whose history to use. Ignored for a signed-in user (their own history is "
        "used); when absent, the Django session cookie's key is used.",
    )


BASKET_MAX_ITEMS = limits.BASKET_MAX_ITEMS


class BasketQuerySerializer(VisitorQuerySerializer):
    items = serializers.CharField(
        max_length=BASKET_MAX_ITEMS * (limits.ITEM_KEY_MAX_CHARS + 1),
        help_text="The basket: item ids separated by commas (at most %d). Unknown ids are skipped; if none is known, "
        "404." % BASKET_MAX_ITEMS,
    )
    repeats = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Also offer what the visitor buys again and again (their repeat purchases, minus the basket).",
    )

    def validate_items(self, value: str) -> list[str]:
        keys = list(dict.fromkeys(key.strip() for key in value.split(",") if key.strip()))
        if not keys:
            raise serializers.ValidationError("Name at least one item id.")
        if len(keys) > BASKET_MAX_ITEMS:
            raise serializers.ValidationError("At most %d items." % BASKET_MAX_ITEMS)
        if any(len(key) > limits.ITEM_KEY_MAX_CHARS or "\x00" in key for key in keys):
            raise serializers.ValidationError("An item id is at most %d characters." % limits.ITEM_KEY_MAX_CHARS)
        return keys


class PhotoSearchSerializer(KConfigQuerySerializer):
    """The multipart body of search by photo (``k`` and ``config`` may also come in the query string)."""

    image = serializers.FileField(
        help_text='The photo (JPEG, PNG, WEBP, GIF, BMP or TIFF), at most RAGREC["MAX_UPLOAD_BYTES"] bytes.'
    )


# ---------------------------------------------------------------- results


class RecommendationSerializer(serializers.Serializer):
    id = serializers.CharField(source="item.key", help_text="The shop's item primary key, as text.")
    title = serializers.CharField(source="item.title")
    url = serializers.CharField(source="item.url", help_text="The item's page (the host model's get_absolute_url).")
    category = serializers.CharField(source="item.category")
    price = serializers.DecimalField(
        source="item.price",
        max_digits=12,
        decimal_places=2,
        allow_null=True,
        coerce_to_string=True,
        help_text='Decimal as a string (e.g. "19.90"), null when the item has no price.',
    )
    in_stock = serializers.BooleanField(source="item.in_stock")
    score = serializers.FloatField(help_text="Ranking score (comparable within one response only).")
    reason = serializers.CharField(help_text='Why it is shown, for people (e.g. "similar to Red mug").')
    reasons = serializers.ListField(child=serializers.CharField(), help_text="All reasons, the main one first.")
    components = serializers.DictField(
        child=serializers.FloatField(), help_text="Score components by retriever/signal (text, image, keyword, rrf...)."
    )

    def to_representation(self, instance):
        """What DRF makes of the fields above (the schema), without its lookups per field: this runs for every
        result of every list (``tests/api/test_recommendation_representation.py`` holds the two equal)."""
        item = instance.item
        return {
            "id": _text(item.key),
            "title": _text(item.title),
            "url": _text(item.url),
            "category": _text(item.category),
            "price": None if item.price is None else _PRICE.to_representation(item.price),
            "in_stock": None if item.in_stock is None else bool(item.in_stock),
            "score": None if instance.score is None else float(instance.score),
            "reason": _text(instance.reason),
            "reasons": None if instance.reasons is None else [_text(reason) for reason in instance.reasons],
            "components": None
            if instance.components is None
            else {str(name): None if value is None else float(value) for name, value in instance.components.items()},
        }


_PRICE = RecommendationSerializer._declared_fields["price"]


def _text(value) -> str | None:
    return None if value is None else str(value)


class RecommendationListSerializer(serializers.Serializer):
    recommender = serializers.CharField(
        help_text="similar, bought_together, search, photo, for_you, recently_viewed, buy_again or trending."
    )
    config = serializers.CharField(help_text="The serving configuration used.")
    query = serializers.CharField(allow_null=True, help_text="For text search: the query after typo correction.")
    fallback = serializers.CharField(
        allow_null=True,
        help_text='Set when another recommender answered: "trending" (for you), "content" (bought together).',
    )
    results = RecommendationSerializer(many=True, source="items")


class AssistantQuerySerializer(KConfigQuerySerializer):
    q = serializers.CharField(
        max_length=limits.ASSISTANT_REQUEST_MAX_CHARS,
        help_text='A request in plain words, e.g. "a warm jacket for hiking under 100".',
    )


class AssistantAnswerSerializer(serializers.Serializer):
    request = serializers.CharField()
    answer = serializers.CharField(help_text="The answer; it only ever recommends the products listed in `products`.")
    products = RecommendationSerializer(many=True, help_text="Retrieved products the answer cites, in order.")
    filters = serializers.DictField(
        child=serializers.CharField(), help_text="Query and price range parsed from the request."
    )
    generator_version = serializers.CharField()
    prompt_version = serializers.CharField()


# ---------------------------------------------------------------- events


class EventListSerializer(serializers.ListSerializer):
    """A batch of events whose errors are always ``{field: [messages]}`` per event.

    DRF reports a ``null`` entry of a list as a bare list of messages (not a dict of fields like every
    other invalid entry); here it is a non-field error like any other entry that is not an object.
    """

    def run_child_validation(self, data):
        if data is None:
            raise serializers.ValidationError(
                {api_settings.NON_FIELD_ERRORS_KEY: ["Invalid data. Expected a dictionary, but got null."]}
            )
        try:
            return super().run_child_validation(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                raise
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: exc.detail}) from exc


class EventSerializer(serializers.Serializer):
    event = serializers.ChoiceField(choices=Interaction.Event.choices)
    item = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=limits.ITEM_KEY_MAX_CHARS,
        help_text="The shop's item key; needed by every event but search.",
    )
    user_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Only your own user id (signed in); omitted, a signed-in user's events are theirs.",
    )
    session_key = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=SESSION_MAX_LENGTH,
        help_text="Anonymous visitor id; omitted by an anonymous client, the `session` parameter or the session cookie is used.",
    )
    order_id = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=limits.ORDER_ID_MAX_CHARS,
        help_text="Basket or order id (purchases).",
    )
    quantity = serializers.IntegerField(required=False, default=1, min_value=1, max_value=limits.EVENT_QUANTITY_MAX)
    query = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=limits.EVENT_QUERY_MAX_CHARS,
        help_text="The query of a search event.",
    )
    source = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=limits.EVENT_SOURCE_MAX_CHARS,
        help_text="Recommender that showed the item (for clicks).",
    )
    idempotency_key = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=limits.IDEMPOTENCY_KEY_MAX_CHARS,
        help_text="Client-chosen key of this event, unique per visitor: posted again with the same event it is not "
        "stored twice; with a different event it is refused (409).",
    )
    created_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When it happened (default: now); at most %d minutes in the future."
        % limits.EVENT_CLOCK_SKEW_MINUTES,
    )

    class Meta:
        list_serializer_class = EventListSerializer


class EventReceiptSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Events in the request (all valid).")
    stored = serializers.IntegerField(help_text="Events stored now.")
    duplicates = serializers.IntegerField(help_text="Events whose idempotency key was seen before (not stored again).")


# ---------------------------------------------------------------- errors (documentation only)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class EventErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Problems by event index (0 for a single event): nothing of the batch was stored. Absent when the "
        "body itself is refused (malformed JSON, not an event or a list, a misused Idempotency-Key header).",
    )


class ConversationTurnSerializer(serializers.Serializer):
    """A turn posted to a conversation: a message and/or feedback on a product shown last."""

    message = serializers.CharField(required=False, allow_blank=True, max_length=limits.ASSISTANT_REQUEST_MAX_CHARS)
    feedback = serializers.DictField(child=serializers.CharField(max_length=100), required=False)

    def validate(self, attrs):
        if not (attrs.get("message") or "").strip() and not attrs.get("feedback"):
            raise serializers.ValidationError("Send a message or feedback on a product.")
        return attrs


class ConversationAnswerSerializer(serializers.Serializer):
    conversation = serializers.UUIDField(source="conversation.pk")
    turn = serializers.IntegerField(source="number")
    answer = serializers.CharField()
    question = serializers.CharField()
    quick_replies = serializers.ListField(child=serializers.CharField())
    products = RecommendationSerializer(many=True)
    reasons = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    state = serializers.SerializerMethodField()
    chips = serializers.SerializerMethodField()

    def get_state(self, result) -> dict:
        return {key: value for key, value in result.state.as_dict().items() if key != "shown"}

    def get_chips(self, result) -> list[dict]:
        return result.state.chips()
