"""REST endpoints: thin views over ``ragrec_django.services`` (no retrieval logic here).

Endpoints (relative to where the host includes ``ragrec_django.api.urls``; URL
names in the ``ragrec_api`` namespace)::

    GET  items/<key>/similar/          similar          k, config
    GET  items/<key>/bought-together/  bought-together  k, config
    GET  search/?q=...                 search           k, config, sort, facets, filter, min_price, max_price
    GET  search/suggest/?q=...         search-suggest   k, session (autocomplete; ``api.search``)
    POST search/photo/  (multipart)    search-photo     image, k, config
    GET  for-you/                      for-you          k, config, session
    GET  recently-viewed/              recently-viewed  k, config, session
    GET  buy-again/                    buy-again        k, config, session
    GET  trending/                     trending         k, config, category
    GET  assistant/?q=...              assistant        k, config
    POST events/  (JSON)               events           one event or a list; Idempotency-Key header
    GET  click/<impression>/<key>/     click            click-tracking redirect (ragrec_django.views.click)
    GET  schema/                       schema           OpenAPI 3 (drf-spectacular)
    GET  docs/                         docs             plain HTML reference of these endpoints

Errors are 4xx, never 500, for bad input: ``k`` outside 1..``RAGREC["MAX_K"]``
or not an integer, an unknown serving configuration, an empty or too long
query, a bad upload and malformed JSON are 400 (field errors as
``{"field": ["message"]}``, others as ``{"detail": "message"}``); an unknown
item is 404; a photo over ``RAGREC["MAX_UPLOAD_BYTES"]`` is 413; an event for
another user is 403; refused events are 400 with ``{"detail", "errors": {index:
[messages]}}``; too many requests are 429 (see ``throttling``); a space that
has not been encoded yet (``SpaceNotReady``) is 503. The errors are those of
``ragrec_django.exceptions``; ``exceptions.translate_service_error`` maps them to HTTP.

Measurement (``services.experiments``). Every non-empty recommendation list is recorded as an
impression and answered with its ``impression_id`` (``null`` for an empty list), plus the
``experiment`` and ``variant`` the visitor is in. A request without ``config`` is served the
configuration of the visitor's variant when an experiment of ``RAGREC["EXPERIMENTS"]`` covers the
endpoint; naming ``config`` opts out. Every endpoint takes the ``session`` parameter to identify
an anonymous visitor (assignment and attribution). Clicks are posted to ``events/`` with the
``impression_id``; an unknown impression, or one that did not show the item, is a 400.

``k`` over the cap is refused rather than clamped, so a client learns the
limit instead of silently getting fewer results than it asked for.

Visitor endpoints (for-you, recently-viewed, buy-again, and events without a
user or session) use the signed-in user, else the ``session`` query parameter,
else the Django session key (``ragrec_django.services.visitors``). A session id
works like a bearer token for that visitor's history: use unguessable ids.

Authentication and permissions: the views are open to anonymous shoppers
(``AllowAny``) and use the host's ``DEFAULT_AUTHENTICATION_CLASSES``; with
DRF's session authentication a signed-in browser must send the CSRF token with
its POSTs, as for any DRF endpoint. Throttling is described in ``throttling``.

Query encoding. Text search embeds the query in the web process, with the
space's own encoder, on the device the encoder is configured for (CPU in the
demo), through the services' per-process LRU cache
(``recommend.query_cache``, ``RAGREC["QUERY_CACHE_SIZE"]`` entries keyed by
space, encoder version and text). One short query costs a few milliseconds on
a CPU with MiniLM, far less than a round trip through Celery, and popular
queries are not encoded again; the first query of a process loads the model
(warm it at start-up to hide that). Search by photo encodes the upload with
the CLIP image tower in the web process as well; it is capped in size
(``MAX_UPLOAD_BYTES``) and has its own, lower throttle rate.
"""

from __future__ import annotations

from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import limits
from ..conf import ragrec_settings
from ..exceptions import EventError, IdempotencyConflict
from ..models import Impression
from ..services import assistant, conversation, recommend, serving
from ..services.events import MAX_BATCH, EventInput, record_events, request_origin
from ..services.visitors import ensure_session_key, for_you, visitor_for_request
from . import event_rows
from . import experiment_serializers as tracked
from . import serializers as s
from .exceptions import BadRequest, RequestTooLarge, too_large_message, translate_service_error
from .exceptions import exception_handler as ragrec_exception_handler
from .parsers import SafeJSONParser
from .streaming import EVENT_STREAM, StreamQuerySerializer, accepts_event_stream, stream_wanted, turn_response
from .throttling import RagrecScopedRateThrottle

ITEM_KEY_MAX_LENGTH = limits.ITEM_KEY_MAX_CHARS
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and small fields around the photo


# ---------------------------------------------------------------- documentation helpers

TAG_RECOMMEND = "recommendations"
TAG_EVENTS = "events"

RESULTS_200 = OpenApiResponse(
    response=tracked.TrackedRecommendationListSerializer,
    description="Results, best first, each with its reason and score components, and the list's impression_id.",
)
ERROR_400 = OpenApiResponse(
    response=OpenApiTypes.OBJECT,
    description='Bad input: field errors as {"field": ["message"]} (k, q, config...), otherwise {"detail": "message"}.',
)
ERROR_404 = OpenApiResponse(response=s.ErrorSerializer, description="No item with this key.")
ERROR_429 = OpenApiResponse(response=s.ErrorSerializer, description="Throttled: too many requests (see Retry-After).")
ERROR_503 = OpenApiResponse(
    response=s.ErrorSerializer,
    description="The embedding space needed has not been encoded yet (run ragrec_reindex), or the database is "
    "unavailable (see Retry-After).",
)
KEY_PARAMETER = OpenApiParameter(
    "key", OpenApiTypes.STR, OpenApiParameter.PATH, description="The shop's item primary key (as in `id` of results)."
)
SESSION_PARAMETER = OpenApiParameter(
    "session",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    description="Anonymous visitor id (at most %d characters), for A/B variant assignment and click attribution; "
    "ignored for a signed-in user. When absent, the Django session cookie's key." % s.SESSION_MAX_LENGTH,
)


def _list_responses(*extra_codes: int) -> dict:
    responses = {200: RESULTS_200, 400: ERROR_400, 429: ERROR_429, 503: ERROR_503}
    if 404 in extra_codes:
        responses[404] = ERROR_404
    return responses


# ---------------------------------------------------------------- base view


class RagrecAPIView(APIView):
    """Open to anonymous shoppers, throttled per scope, services' errors mapped to HTTP."""

    permission_classes = [AllowAny]
    throttle_classes = [RagrecScopedRateThrottle]
    throttle_scope = "ragrec"
    query_serializer_class = s.KConfigQuerySerializer
    recommender = ""  # name of the recommender, for impressions and experiments

    def get_authenticators(self):
        """``RAGREC["API_AUTHENTICATION_CLASSES"]`` (session only by default), read per request; None: the host's
        ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``."""
        paths = ragrec_settings.API_AUTHENTICATION_CLASSES
        if paths is None:
            return super().get_authenticators()
        return [import_string(path)() for path in paths]

    def handle_exception(self, exc):
        return super().handle_exception(translate_service_error(exc))

    def get_exception_handler(self):
        """DRF's handler, with Django's own request refusals (body too large, too many fields) as JSON 4xx."""
        return ragrec_exception_handler

    def params(self, data=None) -> dict:
        """Validated parameters, and ``self.visitor``; ``config`` is None unless the client named one."""
        source = self.request.query_params if data is None else data
        serializer = self.query_serializer_class(data=source)
        serializer.is_valid(raise_exception=True)
        params = dict(serializer.validated_data)
        session = params.get("session")
        if not session:
            session_param = _SessionParamSerializer(data=self.request.query_params)
            session_param.is_valid(raise_exception=True)
            session = session_param.validated_data.get("session")
        self.visitor = visitor_for_request(self.request, session=session)
        if "config" not in source:
            params["config"] = None
        return params

    def respond(self, params: dict, call, serializer_class=tracked.TrackedRecommendationListSerializer) -> Response:
        """``call(config)`` served to the visitor (``services.serving``), with its recorded impression's fields.

        The configuration served is the one named, else the visitor's variant's; an unknown one is a 400
        even when nothing is ranked.
        """
        served = serving.serve(self.recommender, self.visitor, params["config"], call, check_config=True)
        result = served.result
        result.impression_id = serving.record_impression(served, channel=Impression.Channel.API)
        result.experiment, result.variant = served.assignment.experiment, served.assignment.variant
        return Response(serializer_class(result).data)


def _item_key(key: str) -> str:
    if len(key) > ITEM_KEY_MAX_LENGTH or "\x00" in key:
        raise NotFound("No item with id %r." % key[:ITEM_KEY_MAX_LENGTH])
    return key


# ---------------------------------------------------------------- item pages


class SimilarItemsView(RagrecAPIView):
    recommender = "similar"

    @extend_schema(
        operation_id="ragrec_similar_items",
        summary="Items similar to an item",
        description='Text and image similarity fused (RAGREC["SIMILAR_WEIGHTS"]); variants of the item are left out.',
        tags=[TAG_RECOMMEND],
        parameters=[KEY_PARAMETER, s.KConfigQuerySerializer, SESSION_PARAMETER],
        responses=_list_responses(404),
    )
    def get(self, request, key: str):
        params = self.params()
        return self.respond(params, lambda c: recommend.similar_items(_item_key(key), k=params["k"], config=c))


class BoughtTogetherView(RagrecAPIView):
    recommender = "bought_together"

    @extend_schema(
        operation_id="ragrec_bought_together",
        summary="Items frequently bought together with an item",
        description="Co-purchases, then approved complements, then content-based complements (`fallback: content`).",
        tags=[TAG_RECOMMEND],
        parameters=[KEY_PARAMETER, s.KConfigQuerySerializer, SESSION_PARAMETER],
        responses=_list_responses(404),
    )
    def get(self, request, key: str):
        params = self.params()
        return self.respond(params, lambda c: recommend.bought_together(_item_key(key), k=params["k"], config=c))


class BasketBoughtTogetherView(RagrecAPIView):
    query_serializer_class = s.BasketQuerySerializer
    recommender = "bought_together"

    @extend_schema(
        operation_id="ragrec_basket_bought_together",
        summary="Items frequently bought with a basket",
        description="Co-purchase counts summed over the basket's items (never the basket's items or their variants), "
        "then approved and content-based complements; with `repeats=true`, also the visitor's repeat purchases."
        + " Whose history (for `repeats`): the signed-in user; else the `session` query parameter; else the Django "
        "session cookie's key.",
        tags=[TAG_RECOMMEND],
        parameters=[s.BasketQuerySerializer],
        responses=_list_responses(404),
    )
    def get(self, request):
        params = self.params()
        visitor = self.visitor if params["repeats"] else None
        return self.respond(
            params,
            lambda c: recommend.bought_together_for_basket(params["items"], k=params["k"], config=c, visitor=visitor),
        )


# ---------------------------------------------------------------- search (text search: ``api.search``)


class AssistantView(RagrecAPIView):
    query_serializer_class = s.AssistantQuerySerializer
    recommender = "assistant"

    @extend_schema(
        operation_id="ragrec_assistant",
        summary="Shopping assistant",
        description="Parses a budget and colours from the request, retrieves products with the hybrid search and "
        "answers in natural language citing only those products (others the generator names are dropped).",
        tags=[TAG_RECOMMEND],
        parameters=[s.AssistantQuerySerializer, SESSION_PARAMETER],
        responses={200: tracked.TrackedAssistantAnswerSerializer, 400: ERROR_400, 429: ERROR_429, 503: ERROR_503},
    )
    def get(self, request):
        params = self.params()
        return self.respond(
            params,
            lambda c: assistant.answer(params["q"], k=params["k"], config=c),
            tracked.TrackedAssistantAnswerSerializer,
        )


class PhotoSearchView(RagrecAPIView):
    throttle_scope = "ragrec_photo"
    parser_classes = [MultiPartParser, FormParser]
    query_serializer_class = s.PhotoSearchSerializer
    recommender = "photo"

    @extend_schema(
        operation_id="ragrec_search_by_photo",
        summary="Search by photo",
        description="Items that look like the uploaded photo (CLIP image space). `k` and `config` may be form fields "
        "or query parameters (the form field wins).",
        tags=[TAG_RECOMMEND],
        parameters=[SESSION_PARAMETER],
        request={"multipart/form-data": s.PhotoSearchSerializer},
        responses={
            **_list_responses(),
            400: OpenApiResponse(
                response=OpenApiTypes.OBJECT,
                description="No file, an empty file, or bytes that are not a usable image.",
            ),
            413: OpenApiResponse(
                response=s.ErrorSerializer, description='The photo is over RAGREC["MAX_UPLOAD_BYTES"].'
            ),
            415: OpenApiResponse(response=s.ErrorSerializer, description="Not a multipart or form upload."),
        },
    )
    def post(self, request):
        limit = int(ragrec_settings.MAX_UPLOAD_BYTES)
        if _content_length(request) > limit + MULTIPART_OVERHEAD:  # refuse before parsing the body
            raise RequestTooLarge(too_large_message(limit, "The photo"))
        data = {name: request.query_params[name] for name in ("k", "config") if name in request.query_params}
        data.update({name: request.data[name] for name in ("k", "config") if name in request.data})
        if "image" in request.data:
            data["image"] = request.data["image"]
        params = self.params(data)

        def search_by_photo(config: str):
            upload = params["image"]
            if upload.size > limit:
                raise RequestTooLarge(too_large_message(limit, "The photo"))
            return recommend.search_by_image(upload.read(), k=params["k"], config=config)

        return self.respond(params, search_by_photo)


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


# ---------------------------------------------------------------- visitor lists


class _VisitorView(RagrecAPIView):
    query_serializer_class = s.VisitorQuerySerializer
    service = None

    def get(self, request):
        params = self.params()
        return self.respond(params, lambda c: type(self).service(self.visitor, k=params["k"], config=c))


_VISITOR_DESCRIPTION = (
    " Whose history: the signed-in user; else the `session` query parameter; else the Django session cookie's key."
)


class ForYouView(_VisitorView):
    service = staticmethod(for_you)
    recommender = "for_you"

    @extend_schema(
        operation_id="ragrec_for_you",
        summary="Recommended for the visitor",
        description="The visitor's repeat purchases, items bought with what they bought, and items near their "
        'recency-weighted history, fused (weights: RAGREC["FOR_YOU_WEIGHTS"]); items they only viewed are left out; '
        "the trending list (`fallback: trending`) for a visitor without history." + _VISITOR_DESCRIPTION,
        tags=[TAG_RECOMMEND],
        parameters=[s.VisitorQuerySerializer],
        responses=_list_responses(),
    )
    def get(self, request):
        return super().get(request)


class RecentlyViewedView(_VisitorView):
    service = staticmethod(recommend.recently_viewed)
    recommender = "recently_viewed"

    @extend_schema(
        operation_id="ragrec_recently_viewed",
        summary="The visitor's recently viewed items",
        description="Newest first; empty for an unknown visitor." + _VISITOR_DESCRIPTION,
        tags=[TAG_RECOMMEND],
        parameters=[s.VisitorQuerySerializer],
        responses=_list_responses(),
    )
    def get(self, request):
        return super().get(request)


class BuyAgainView(_VisitorView):
    service = staticmethod(recommend.buy_again)
    recommender = "buy_again"

    @extend_schema(
        operation_id="ragrec_buy_again",
        summary="Items the visitor bought before",
        description="Most recently bought first; empty for an unknown visitor." + _VISITOR_DESCRIPTION,
        tags=[TAG_RECOMMEND],
        parameters=[s.VisitorQuerySerializer],
        responses=_list_responses(),
    )
    def get(self, request):
        return super().get(request)


class TrendingView(RagrecAPIView):
    query_serializer_class = s.TrendingQuerySerializer
    recommender = "trending"

    @extend_schema(
        operation_id="ragrec_trending",
        summary="Trending items",
        description='Time-decayed popularity (views, clicks, carts, purchases weighted by RAGREC["EVENT_WEIGHTS"]).',
        tags=[TAG_RECOMMEND],
        parameters=[s.TrendingQuerySerializer, SESSION_PARAMETER],
        responses=_list_responses(),
    )
    def get(self, request):
        params = self.params()
        category = params.get("category") or None
        return self.respond(params, lambda c: recommend.trending(k=params["k"], config=c, category=category))


# ---------------------------------------------------------------- events


class EventRefused(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_events"

    def __init__(self, message: str, errors: dict[int, list[str]], status_code: int | None = None):
        super().__init__({"detail": message, "errors": {str(i): list(m) for i, m in sorted(errors.items())}})
        if status_code is not None:
            self.status_code = status_code


class _SessionParamSerializer(serializers.Serializer):
    session = serializers.CharField(required=False, allow_blank=True, max_length=s.SESSION_MAX_LENGTH)


class EventsView(RagrecAPIView):
    throttle_scope = "ragrec_events"
    parser_classes = [SafeJSONParser]

    @extend_schema(
        operation_id="ragrec_record_events",
        summary="Record shopper events (one or a batch)",
        description=(
            "Send one event object or a list of up to %d. A batch is all-or-nothing: if one event is invalid, none "
            "is stored and the errors are reported by index.\n\n"
            "Idempotency keys: retrying is safe. A key belongs to the event's visitor (its user, else its session "
            "key), so visitors never share keys. The same key with the same event is a replay: accepted, not stored "
            "again (counted in `duplicates`; 200 when every event was a replay). The same key with a different event "
            "(another item, type, quantity...) is refused with 409 and nothing of the batch is stored: a key names "
            "one event. For a single event the key may come in the `Idempotency-Key` header instead.\n\n"
            "Whose events: a signed-in client may post events as itself (`user_id` omitted or its own id), never "
            "with another `user_id`, nor (unless staff) with a `session_key` other than its own session's (403). An "
            "event with neither gets the signed-in user, else the `session` query parameter, else the Django "
            "session cookie's key. Events of an anonymous `session_key` the server never issued are stored (that "
            "visitor's history) but count toward nobody else's trending or co-purchases "
            '(`RAGREC["API_VERIFY_SESSIONS"]`).\n\n'
            "A click on a recommendation names the list it was shown in with `impression_id` (from the "
            "recommendation response); an unknown impression, or one that did not show the item, is refused (400). "
            "One click per (impression, item) is stored; a repeated click is a duplicate. Clicks are what CTR and "
            "conversions are measured on (see the admin's experiments dashboard)." % MAX_BATCH
        ),
        tags=[TAG_EVENTS],
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Idempotency key of a single event (not allowed with a list).",
            ),
            OpenApiParameter(
                "session",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                description="Anonymous visitor id for events that name neither a user nor a session.",
            ),
        ],
        request=PolymorphicProxySerializer(
            component_name="EventOrBatch",
            serializers=[tracked.TrackedEventSerializer, tracked.TrackedEventSerializer(many=True)],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            201: OpenApiResponse(response=s.EventReceiptSerializer, description="At least one event was stored."),
            200: OpenApiResponse(
                response=s.EventReceiptSerializer, description="All events were repeats (already stored)."
            ),
            400: OpenApiResponse(
                response=s.EventErrorSerializer, description="Malformed JSON or refused events (nothing stored)."
            ),
            403: OpenApiResponse(
                response=s.EventErrorSerializer,
                description="An event names another user, or (signed in, not staff) another session than yours.",
            ),
            409: OpenApiResponse(
                response=s.EventErrorSerializer,
                description="An idempotency key you used before came back with a different event (nothing stored).",
            ),
            413: OpenApiResponse(
                response=s.ErrorSerializer, description="The body is over Django's DATA_UPLOAD_MAX_MEMORY_SIZE."
            ),
            415: OpenApiResponse(response=s.ErrorSerializer, description="The body is not JSON (Content-Type)."),
            429: ERROR_429,
            503: OpenApiResponse(
                response=s.ErrorSerializer,
                description="The database is unavailable (see Retry-After); retry with the same idempotency keys.",
            ),
        },
    )
    def post(self, request):
        rows = self._rows(request.data, request.headers.get("Idempotency-Key"))
        validated = event_rows.validated_rows(rows)  # the serializer's result, without its cost per event
        if validated is None:
            serializer = tracked.TrackedEventSerializer(data=rows, many=True)
            if not serializer.is_valid():
                raise EventRefused("Some events are invalid; nothing was stored.", _flatten(serializer.errors))
            validated = serializer.validated_data
        events = self._events(request, validated)
        try:
            result = record_events(events, verify_sessions=bool(ragrec_settings.API_VERIFY_SESSIONS))
        except IdempotencyConflict as exc:
            raise EventRefused(
                "An idempotency key was reused for a different event; nothing was stored.",
                exc.errors,
                status.HTTP_409_CONFLICT,
            ) from None
        except EventError as exc:
            raise EventRefused("Some events were refused; nothing was stored.", exc.errors) from None
        body = s.EventReceiptSerializer(result).data
        return Response(body, status=status.HTTP_201_CREATED if result.stored else status.HTTP_200_OK)

    @staticmethod
    def _rows(data, header_key: str | None) -> list:
        if isinstance(data, dict):
            rows = [dict(data)]
        elif isinstance(data, list):
            rows = data
        else:
            raise BadRequest("Send one event object or a list of event objects.")
        if len(rows) > MAX_BATCH:
            raise EventRefused("Too many events.", {MAX_BATCH: ["at most %d events per batch" % MAX_BATCH]})
        if header_key is not None:
            if not isinstance(data, dict):
                raise BadRequest(
                    "The Idempotency-Key header is for a single event; give each event of a batch its own idempotency_key."
                )
            body_key = rows[0].get("idempotency_key")
            if body_key not in (None, "") and body_key != header_key:
                raise BadRequest("The Idempotency-Key header and the event's idempotency_key differ.")
            rows[0]["idempotency_key"] = header_key
        return rows

    def _events(self, request, rows: list[dict]) -> list[EventInput]:
        user = request.user if request.user and request.user.is_authenticated else None
        forbidden = {
            index: ["user_id: you can only post events as yourself or for a session_key"]
            for index, row in enumerate(rows)
            if row.get("user_id") is not None and (user is None or row["user_id"] != user.pk)
        }
        if forbidden:
            raise EventRefused("Events may not be posted for another user.", forbidden, status.HTTP_403_FORBIDDEN)
        own_session = getattr(getattr(request, "session", None), "session_key", None)
        foreign = {
            index: ["session_key: signed in, you can only post events for your own session (or omit it)"]
            for index, row in enumerate(rows)
            if user is not None and not user.is_staff and row.get("session_key") and row["session_key"] != own_session
        }
        if foreign:
            raise EventRefused(
                "Events may not be posted for another visitor's session.", foreign, status.HTTP_403_FORBIDDEN
            )
        session_param = _SessionParamSerializer(data=request.query_params)
        session_param.is_valid(raise_exception=True)
        default_session = visitor_for_request(request, session=session_param.validated_data.get("session")).session_key
        origin = request_origin(request)
        events = []
        for row in rows:
            user_id, session_key = row.get("user_id"), row.get("session_key") or ""
            if user_id is None and not session_key:
                if user is not None:
                    user_id = user.pk
                else:
                    session_key = default_session
            events.append(
                EventInput(
                    event=row["event"],
                    item=row.get("item") or None,
                    user_id=user_id,
                    session_key=session_key,
                    order_id=row.get("order_id") or "",
                    quantity=row.get("quantity", 1),
                    query=row.get("query") or "",
                    source=row.get("source") or "",
                    idempotency_key=row.get("idempotency_key") or None,
                    created_at=row.get("created_at"),
                    impression_id=row.get("impression_id"),
                    origin=origin,
                )
            )
        return events


def _flatten(errors) -> dict[int, list[str]]:
    """ListSerializer errors ({index: {field: [msg]}}, or a list in older DRF) as {index: ["field: msg", ...]}."""
    if isinstance(errors, dict):
        if not all(isinstance(index, int) for index in errors):  # the whole payload, not one event
            return {0: [str(m) for messages in errors.values() for m in messages]}
        by_index = errors.items()
    else:
        by_index = enumerate(errors)
    flat = {}
    for index, fields in by_index:
        messages = []
        for field, field_errors in (fields or {}).items():
            for message in field_errors if isinstance(field_errors, list) else [field_errors]:
                messages.append(str(message) if field == "non_field_errors" else "%s: %s" % (field, message))
        if messages:
            flat[index] = messages
    return flat


# ---------------------------------------------------------------- documentation page


def api_docs(request):
    """A plain HTML reference of the ragrec endpoints, built from the OpenAPI schema (no JavaScript, no CDN)."""
    namespace = request.resolver_match.namespace if request.resolver_match else ""
    try:
        prefix = reverse("%sdocs" % (namespace + ":" if namespace else ""))[: -len("docs/")]
        schema_url = reverse("%sschema" % (namespace + ":" if namespace else ""))
    except NoReverseMatch:  # pragma: no cover - included without its names
        prefix, schema_url = "/", ""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = []
    for path, methods in schema.get("paths", {}).items():
        if not path.startswith(prefix):
            continue
        for method, operation in methods.items():
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "anchor": operation.get("operationId", method + path),
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": _type_name(p.get("schema", {})),
                            "description": p.get("description", ""),
                        }
                        for p in operation.get("parameters", [])
                    ],
                    "request": sorted(operation.get("requestBody", {}).get("content", {})),
                    "responses": [
                        {"code": code, "description": response.get("description", "")}
                        for code, response in sorted(operation.get("responses", {}).items())
                    ],
                }
            )
    context = {"title": schema.get("info", {}).get("title", "API"), "operations": operations, "schema_url": schema_url}
    return render(request, "ragrec/api_docs.html", context)


def _type_name(schema: dict) -> str:
    kind = schema.get("type", "")
    if schema.get("enum"):
        return "%s (%s)" % (kind, ", ".join(str(v) for v in schema["enum"]))
    bounds = []
    if "minimum" in schema:
        bounds.append("≥ %s" % schema["minimum"])
    if "maximum" in schema:
        bounds.append("≤ %s" % schema["maximum"])
    if "maxLength" in schema:
        bounds.append("≤ %s chars" % schema["maxLength"])
    return kind + (" (%s)" % ", ".join(bounds) if bounds else "")


# ---------------------------------------------------------------- conversations (issue 15)

TAG_CONVERSATION = "assistant conversations"
CONVERSATION_ID = OpenApiParameter(
    "conversation", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The conversation's id (from its start)."
)
CONVERSATION_404 = OpenApiResponse(
    response=s.ErrorSerializer, description="No such conversation for this visitor (another visitor's is a 404 too)."
)


class ConversationMixin:
    """The visitor of a conversation request: the signed-in user, else the Django session (created if needed)."""

    def conversation_visitor(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return visitor_for_request(request)
        ensure_session_key(request)
        return visitor_for_request(request)


class ConversationStartView(ConversationMixin, RagrecAPIView):
    recommender = "assistant"

    @extend_schema(
        operation_id="ragrec_conversation_start",
        summary="Start a conversation with the shopping assistant",
        description="A new, empty conversation owned by the signed-in user, else by the session cookie.",
        tags=[TAG_CONVERSATION],
        request=None,
        responses={201: OpenApiTypes.OBJECT, 429: ERROR_429},
    )
    def post(self, request):
        chat = conversation.start(self.conversation_visitor(request))
        return Response({"conversation": str(chat.pk)}, status=201)


class ConversationView(ConversationMixin, RagrecAPIView):
    recommender = "assistant"

    @extend_schema(
        operation_id="ragrec_conversation_get",
        summary="Get a conversation's state and last answer",
        description="The last turn as it was answered (as the turn endpoint's answer, products re-read from the "
        "catalogue), or turn 0 with an empty answer before the first turn.",
        tags=[TAG_CONVERSATION],
        parameters=[CONVERSATION_ID],
        responses={200: s.ConversationAnswerSerializer, 404: CONVERSATION_404, 429: ERROR_429},
    )
    def get(self, request, conversation_id):
        chat = conversation.get(conversation_id, self.conversation_visitor(request))
        last = conversation.latest(chat)
        if last is not None:
            return Response(s.ConversationAnswerSerializer(last).data)
        empty = {"answer": "", "question": "", "quick_replies": [], "products": [], "reasons": {}, "chips": []}
        return Response({"conversation": str(chat.pk), "turn": 0, "state": {}, **empty})

    @extend_schema(
        operation_id="ragrec_conversation_delete",
        summary="Delete a conversation",
        description="Deletes the conversation and its turns.",
        tags=[TAG_CONVERSATION],
        parameters=[CONVERSATION_ID],
        responses={204: None, 404: CONVERSATION_404, 429: ERROR_429},
    )
    def delete(self, request, conversation_id):
        conversation.delete(conversation_id, self.conversation_visitor(request))
        return Response(status=204)


class ConversationTurnView(ConversationMixin, RagrecAPIView):
    recommender = "assistant"
    parser_classes = [SafeJSONParser]

    @extend_schema(
        operation_id="ragrec_conversation_turn",
        summary="Post a turn: a message and/or feedback on a shown product",
        description="Folds the message (refinements such as 'under 40', 'not pink', 'cheaper', 'more like the "
        "second one', 'show me more', 'start over') and the feedback (like, dislike, too_expensive, wrong_colour, "
        "basket) into the conversation's state, then answers with products citing only those retrieved, and a "
        "question (a clarifying one when the request is vague, else a request for feedback).",
        tags=[TAG_CONVERSATION],
        request=s.ConversationTurnSerializer,
        parameters=[CONVERSATION_ID, StreamQuerySerializer],
        responses={
            (200, "application/json"): s.ConversationAnswerSerializer,
            (200, EVENT_STREAM): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="With `Accept: text/event-stream` or `?stream=true`: Server-Sent Events, in this order: "
                "`state` (the state before retrieval), `products`, `answer` (one per sentence), `done` (the JSON "
                "answer); `error` with {detail, status} if the turn fails once streaming has started. Errors known "
                "before (400, 404, 429) are JSON.",
            ),
            400: ERROR_400,
            404: CONVERSATION_404,
            429: ERROR_429,
            503: ERROR_503,
        },
    )
    def post(self, request, conversation_id):
        chat = conversation.get(conversation_id, self.conversation_visitor(request))
        stream = stream_wanted(request)
        serializer = s.ConversationTurnSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        pending = conversation.begin_turn(chat, data.get("message", ""), data.get("feedback") or None)
        if stream:
            return turn_response(pending)
        return Response(s.ConversationAnswerSerializer(conversation.finish_turn(pending)).data)

    def perform_content_negotiation(self, request, force=False):
        """A client that accepts only ``text/event-stream`` still gets the errors known before streaming as JSON."""
        if accepts_event_stream(request):
            renderers = [r for r in self.get_renderers() if r.media_type == "application/json"]
            return (renderers or [JSONRenderer()])[0], "application/json"
        return super().perform_content_negotiation(request, force)
