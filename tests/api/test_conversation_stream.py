"""A conversation turn as Server-Sent Events: the events and their order, the content negotiation and the JSON
fallback, the refusals known before streaming (JSON 4xx), throttling, and a failure once streaming has started."""

import json

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from ragrec_django.models import Turn
from tests.api.test_conversation import turn
from tests.generators.fakeserver import completion
from tests.services.test_conversation import gift_shop  # noqa: F401  (the encoded catalogue, reused)
from tests.services.test_conversation_llm import llm  # noqa: F401  (a scripted OpenAI-compatible generator)

pytestmark = pytest.mark.django_db

STREAM = "text/event-stream"


def start(api) -> str:
    response = api.post(reverse("ragrec_api:conversations"))
    assert response.status_code == 201
    return response.json()["conversation"]


def streamed(api, chat, query: str = "", accept: str = STREAM, **body):
    url = reverse("ragrec_api:conversation-turns", args=[chat]) + query
    return api.post(url, body, format="json", HTTP_ACCEPT=accept)


def events(response) -> list[tuple[str, dict]]:
    """The (name, data) of each event of a streamed response, checking the wire format on the way."""
    assert response.streaming and response["Content-Type"].startswith(STREAM)
    text = b"".join(response.streaming_content).decode()
    assert text.endswith("\n\n")
    parsed = []
    for block in text[:-2].split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        parsed.append((name[len("event: ") :], json.loads(data[len("data: ") :])))
    return parsed


def test_a_streamed_turn_sends_state_products_answer_then_done(api, gift_shop):  # noqa: F811
    chat = start(api)
    response = streamed(api, chat, message="a gift for my dad under 40")
    assert response.status_code == 200 and response["Cache-Control"] == "no-cache"
    stream = events(response)
    names = [name for name, _ in stream]
    assert names[:2] == ["state", "products"] and names[-1] == "done"
    assert set(names[2:-1]) == {"answer"}, names

    state = stream[0][1]
    assert state["state"]["max_price"] == 40.0 and "shown" not in state["state"]
    assert {"kind": "recipient", "value": "dad", "label": "for dad"} in state["chips"]
    products = stream[1][1]["products"]
    assert products and all(float(p["price"]) <= 40 for p in products)
    done = stream[-1][1]
    assert done["turn"] == 1 and done["products"] == products and done["question"]
    assert "".join(data["text"] for name, data in stream if name == "answer") == done["answer"]
    assert Turn.objects.filter(conversation_id=chat).count() == 1

    # The JSON answer of the next turn has exactly the fields of "done".
    plain = turn(api, chat, feedback={"item": products[0]["id"], "action": "dislike"})
    assert plain.status_code == 200 and plain["Content-Type"] == "application/json"
    assert set(plain.json()) == set(done) and plain.json()["turn"] == 2


def test_the_stream_parameter_overrides_accept(api, gift_shop):  # noqa: F811
    chat = start(api)
    asked = streamed(api, chat, "?stream=true", accept="application/json", message="a mug")
    assert [name for name, _ in events(asked)][-1] == "done"
    refused = streamed(api, chat, "?stream=false", message="cheaper")
    assert refused.status_code == 200 and not refused.streaming
    assert refused["Content-Type"] == "application/json" and refused.json()["turn"] == 2
    plain = turn(api, chat, message="not black")  # no Accept, no parameter: JSON, as before
    assert plain.status_code == 200 and plain.json()["turn"] == 3


def test_a_vague_request_streams_the_clarifying_question(api, gift_shop):  # noqa: F811
    stream = events(streamed(api, start(api), message="a gift"))
    assert [name for name, _ in stream][:2] == ["state", "products"] and stream[1][1]["products"] == []
    done = stream[-1][1]
    assert done["question"] and done["quick_replies"] and not done["products"]


def test_refusals_known_before_streaming_are_json(api, gift_shop):  # noqa: F811
    chat = start(api)
    cases = {
        404: [
            streamed(APIClient(), chat, message="a mug"),  # another visitor's conversation
            streamed(api, "not-a-uuid", message="a mug"),
        ],
        400: [
            streamed(api, chat),  # neither message nor feedback
            streamed(api, chat, message="x" * 501),
            streamed(api, chat, feedback={"item": "never-shown", "action": "like"}),
            streamed(api, chat, "?stream=maybe", message="a mug"),
        ],
    }
    for status, responses in cases.items():
        for response in responses:
            assert response.status_code == status, response.content
            assert not response.streaming and response["Content-Type"] == "application/json"
            assert response.json(), response.content  # a message: {"detail": ...} or {"field": [...]}
    assert "stream" in cases[400][-1].json()
    assert not Turn.objects.exists()


def test_the_stream_is_throttled_like_the_json_answer(api, settings, gift_shop):  # noqa: F811
    settings.RAGREC = {**settings.RAGREC, "API_THROTTLE_RATES": {"ragrec": "3/min"}}
    chat = start(api)
    for message in ("a mug", "cheaper"):
        assert events(streamed(api, chat, message=message))[-1][0] == "done"
    throttled = streamed(api, chat, message="not black")
    assert throttled.status_code == 429 and not throttled.streaming
    assert "throttled" in throttled.json()["detail"].lower() and int(throttled["Retry-After"]) > 0
    assert Turn.objects.filter(conversation_id=chat).count() == 2


def test_a_failure_once_streaming_has_started_is_an_error_event(api, llm, gift_shop):  # noqa: F811
    llm.reply(json_body=completion(json.dumps({"category": "Mugs", "max_price": 20})))  # the constraints: fine
    llm.reply(status=400, json_body={"error": {"message": "model unavailable"}})  # the answer: refused
    chat = start(api)
    stream = events(streamed(api, chat, message="something to drink tea from"))
    assert [name for name, _ in stream] == ["state", "error"]
    assert stream[0][1]["state"]["category"] == "Mugs"
    assert stream[1][1] == {"detail": "The assistant is not available right now.", "status": 503}
    assert not Turn.objects.exists()  # nothing of the failed turn is saved


def test_get_gives_the_state_and_the_last_answer(api, gift_shop):  # noqa: F811
    chat = start(api)
    url = reverse("ragrec_api:conversation", args=[chat])
    empty = api.get(url)
    assert empty.status_code == 200 and empty.json()["turn"] == 0 and empty.json()["products"] == []
    done = events(streamed(api, chat, message="a gift for my dad under 40"))[-1][1]
    again = api.get(url).json()
    assert again["turn"] == 1 and again["answer"] == done["answer"] and again["chips"] == done["chips"]
    assert [p["id"] for p in again["products"]] == [p["id"] for p in done["products"]]
    assert APIClient().get(url).status_code == 404
