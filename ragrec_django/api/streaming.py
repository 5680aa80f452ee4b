"""A conversation turn answered as Server-Sent Events (``text/event-stream``), the JSON answer's streaming twin.

A client asks for the stream with ``Accept: text/event-stream`` (what ``EventSource`` and most SSE clients
send) or with the query parameter ``?stream=true`` (``false`` forces the JSON answer whatever ``Accept``
says). Everything known before the stream starts is answered as usual, as JSON: throttling (429), another
visitor's or an unknown conversation (404), a bad body or a bad ``stream`` value, feedback on a product that
was not shown (400). Then the events, in this order, each ``event: <name>`` and one line of JSON ``data``:

``state``
    ``{"state": {...}, "chips": [...]}``: the shopper's message and feedback folded into the conversation's
    state, before retrieval (the constraints the shopper can remove as chips).
``products``
    ``{"products": [...], "reasons": {key: [...]}}``: the products of the answer, as in the JSON answer (an
    empty list when the assistant asks a clarifying question).
``answer``
    ``{"text": "..."}``, one event per sentence of the answer (only sentences citing retrieved products are
    kept, as in the JSON answer); their texts, concatenated, are the answer.
``done``
    The whole answer, exactly the JSON body of the non-streaming request (turn number, question, quick
    replies, state, chips). The turn is saved before this event is sent.

If the turn fails once the stream has started (the database, an embedding space not encoded yet, the
generator), the stream sends ``error`` with ``{"detail": "message", "status": <the HTTP status the JSON
answer would have had>}`` and ends; nothing of the turn is saved. The first event (``state``) is sent before
retrieval; the others once the turn is answered and saved (``services.conversation.finish_turn``), one right
after the other. Headers: ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``
(nginx passes the events on as they come).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

from django.http import StreamingHttpResponse
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.utils.encoders import JSONEncoder

from ..services import conversation
from . import serializers as s
from .exceptions import translate_service_error

EVENT_STREAM = "text/event-stream"
STREAM_PARAMETER = "stream"
_SENTENCE_END = re.compile(r"(?<=[.!?])(?=\s)")

logger = logging.getLogger(__name__)


class StreamQuerySerializer(serializers.Serializer):
    stream = serializers.BooleanField(
        required=False, help_text="true: answer as Server-Sent Events; false: JSON (default: from Accept)."
    )


def accepts_event_stream(request) -> bool:
    """Whether the ``Accept`` header names ``text/event-stream``."""
    return EVENT_STREAM in request.META.get("HTTP_ACCEPT", "").lower()


def stream_wanted(request) -> bool:
    """Whether to answer ``request`` as a stream: its ``stream`` parameter when given (a bad value is a 400),
    else whether it accepts ``text/event-stream``."""
    if STREAM_PARAMETER not in request.query_params:
        return accepts_event_stream(request)
    serializer = StreamQuerySerializer(data={STREAM_PARAMETER: request.query_params[STREAM_PARAMETER]})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data[STREAM_PARAMETER]


def event(name: str, data) -> bytes:
    """One Server-Sent Event: its name and its data as one line of JSON."""
    return ("event: %s\ndata: %s\n\n" % (name, json.dumps(data, cls=JSONEncoder, ensure_ascii=False))).encode()


def sentences(text: str) -> list[str]:
    """``text`` cut after each sentence's end; the pieces, concatenated, are ``text``."""
    return [piece for piece in _SENTENCE_END.split(text) if piece]


def turn_events(pending: conversation.PendingTurn) -> Iterator[bytes]:
    """The events of one turn (see the module's docstring), answering ``pending`` as the stream is read."""
    state = pending.state
    shown_state = {key: value for key, value in state.as_dict().items() if key != "shown"}  # as in the answer
    yield event("state", {"state": shown_state, "chips": state.chips()})
    try:
        result = conversation.finish_turn(pending)
        answer = s.ConversationAnswerSerializer(result).data
    except Exception as exc:  # noqa: BLE001 - the headers are sent: the client learns of it from this event
        error = translate_service_error(exc)
        if not isinstance(error, APIException):
            logger.exception("Conversation %s: the streamed turn failed", pending.conversation.pk)
            error = APIException("The assistant failed to answer; try again.")
        yield event("error", {"detail": str(error.detail), "status": error.status_code})
        return
    yield event("products", {"products": answer["products"], "reasons": answer["reasons"]})
    for text in sentences(answer["answer"]):
        yield event("answer", {"text": text})
    yield event("done", answer)


def turn_response(pending: conversation.PendingTurn) -> StreamingHttpResponse:
    """The streaming response of one turn."""
    response = StreamingHttpResponse(turn_events(pending), content_type=EVENT_STREAM + "; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
