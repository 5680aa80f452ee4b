"""OpenAICompatibleGenerator against a real local HTTP server speaking the chat-completions protocol."""

from __future__ import annotations

import json
import threading
import time

import pytest

from ragrec_django.ml.generation import GenerationError, GenerationRequest
from ragrec_django.ml.generators import OpenAICompatibleGenerator
from ragrec_django.ml.generators.openai_compat import _retry_after

from .fakeserver import completion, unused_port

KEY = "sk-test-SECRET-0123456789"
MESSAGES = [
    {"role": "system", "content": "You write product descriptions."},
    {"role": "user", "content": "<product>Linen Shirt</product>"},
]


def request(**overrides) -> GenerationRequest:
    values = {"task": "description", "messages": MESSAGES, "max_tokens": 64, "temperature": 0.3}
    values.update(overrides)
    return GenerationRequest(**values)


class Sleeps(list):
    """Stands in for time.sleep: records the delays instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


def make(server, **options) -> OpenAICompatibleGenerator:
    options.setdefault("api_key", KEY)
    generator = OpenAICompatibleGenerator(
        server.base_url if hasattr(server, "base_url") else server, "tiny-llm", **options
    )
    generator.sleep = Sleeps()
    return generator


def assert_no_key(error: pytest.ExceptionInfo):
    assert KEY not in str(error.value)
    assert KEY not in repr(error.value)


def test_happy_path_sends_the_protocol_request(chat_server):
    chat_server.reply(200, completion("  A breezy linen shirt.\n"))
    generator = make(chat_server, extra_headers={"X-Request-Source": "ragrec-tests"})

    assert generator.generate(request()) == "A breezy linen shirt."

    [received] = chat_server.received
    assert received.method == "POST" and received.path == "/v1/chat/completions"
    assert received.json == {
        "model": "tiny-llm",
        "messages": MESSAGES,
        "max_tokens": 64,
        "temperature": 0.3,
        "stream": False,
    }
    assert received.headers["Authorization"] == "Bearer " + KEY
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Request-Source"] == "ragrec-tests"
    assert generator.version == "openai-compatible:tiny-llm@127.0.0.1:%d" % chat_server.port
    assert generator.sleep == []


def test_key_from_environment_or_none(chat_server, monkeypatch):
    monkeypatch.setenv("RAGREC_TEST_LLM_KEY", "env-key-42")
    monkeypatch.delenv("RAGREC_TEST_NO_SUCH_KEY", raising=False)
    chat_server.reply(200, completion("one")).reply(200, completion("two"))

    assert make(chat_server, api_key=None, api_key_env="RAGREC_TEST_LLM_KEY").generate(request()) == "one"
    assert make(chat_server, api_key=None, api_key_env="RAGREC_TEST_NO_SUCH_KEY").generate(request()) == "two"

    with_key, without_key = chat_server.received
    assert with_key.headers["Authorization"] == "Bearer env-key-42"
    assert "Authorization" not in without_key.headers


def test_429_honours_retry_after_then_succeeds(chat_server):
    chat_server.reply(
        429, {"error": {"message": "Rate limit reached", "type": "rate_limit"}}, headers={"Retry-After": "2"}
    )
    chat_server.reply(200, completion("ok"))
    generator = make(chat_server, backoff=0.01)

    assert generator.generate(request()) == "ok"
    assert len(chat_server.received) == 2
    assert generator.sleep == [2.0]  # Retry-After wins over the (shorter) backoff


def test_by_default_retry_after_is_waited_out_with_time_sleep_before_the_retry(chat_server, monkeypatch):
    waits = []  # (seconds, requests the server had seen when the wait began)
    monkeypatch.setattr(time, "sleep", lambda seconds: waits.append((seconds, len(chat_server.received))))
    chat_server.reply(429, {"error": "slow down"}, headers={"Retry-After": "0.3"}).reply(200, completion("ok"))
    generator = OpenAICompatibleGenerator(chat_server.base_url, "tiny-llm", api_key=KEY, backoff=0)

    assert generator.generate(request()) == "ok"
    assert waits == [(0.3, 1)]  # one blocking wait, between the refused request and the retry
    assert len(chat_server.received) == 2


def test_500_twice_then_success_backs_off_exponentially(chat_server):
    chat_server.reply(500, {"error": {"message": "boom"}}).reply(502, raw=b"<html>Bad gateway</html>")
    chat_server.reply(200, completion("third time lucky"))
    generator = make(chat_server, backoff=0.1, max_retries=3)

    assert generator.generate(request()) == "third time lucky"
    assert len(chat_server.received) == 3
    first, second = generator.sleep
    assert 0.05 <= first <= 0.1 and 0.1 <= second <= 0.2  # doubling, with jitter


def test_server_errors_exhaust_the_retries(chat_server):
    for _ in range(3):
        chat_server.reply(503, {"object": "error", "message": "model is still loading"})
    generator = make(chat_server, backoff=0.01, max_retries=2)

    with pytest.raises(GenerationError) as error:
        generator.generate(request())
    message = str(error.value)
    assert "HTTP 503" in message and "model is still loading" in message and "3 attempts" in message
    assert len(chat_server.received) == 3 and len(generator.sleep) == 2
    assert_no_key(error)


def test_400_fails_at_once_with_the_servers_message(chat_server):
    chat_server.reply(
        400, {"error": {"message": "The model `tiny-llm` does not exist", "type": "invalid_request_error"}}
    )
    generator = make(chat_server)

    with pytest.raises(GenerationError) as error:
        generator.generate(request())
    assert "HTTP 400" in str(error.value) and "does not exist" in str(error.value)
    assert len(chat_server.received) == 1 and generator.sleep == []
    assert_no_key(error)


def test_the_key_is_never_in_an_error_message(chat_server):
    # A server that echoes the Authorization header back in its error.
    chat_server.reply(401, {"error": {"message": "Incorrect API key provided: Bearer %s" % KEY}})
    chat_server.reply(500, raw=("internal error while handling key %s" % KEY).encode())
    chat_server.reply(200, raw=("not json %s" % KEY).encode())

    # The key straddling the point where long messages are cut.
    chat_server.reply(403, {"error": {"message": "x" * 290 + KEY + "y" * 50}})

    for _ in range(4):
        with pytest.raises(GenerationError) as error:
            make(chat_server, max_retries=0).generate(request())
        assert_no_key(error)
        assert "***" in str(error.value)


def test_long_error_messages_are_truncated(chat_server):
    chat_server.reply(422, {"error": {"message": "x" * 5000}})
    with pytest.raises(GenerationError) as error:
        make(chat_server).generate(request())
    assert "HTTP 422" in str(error.value) and len(str(error.value)) < 600


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"{not json", "invalid JSON"),
        (json.dumps({"object": "chat.completion"}).encode(), "no choices"),
        (json.dumps({"choices": []}).encode(), "no choices"),
        (
            json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "tool_calls"}]}
            ).encode(),
            "tool_calls",
        ),
        (json.dumps({"choices": [{"text": "legacy completions shape"}]}).encode(), "choices[0].message.content"),
        (json.dumps(completion("   ")).encode(), "empty"),
        (json.dumps({"error": {"message": "context length exceeded"}}).encode(), "context length exceeded"),
    ],
    ids=["invalid-json", "no-choices", "empty-choices", "null-content", "legacy-shape", "blank", "error-with-200"],
)
def test_malformed_responses_raise(chat_server, body, expected):
    chat_server.reply(200, raw=body)
    generator = make(chat_server)
    with pytest.raises(GenerationError) as error:
        generator.generate(request())
    assert expected in str(error.value)
    assert len(chat_server.received) == 1  # a bad answer is not retried


def test_think_block_of_reasoning_models_is_dropped(chat_server):
    chat_server.reply(200, completion("<think>\nThe user wants...\n</think>\n\nA linen shirt."))
    assert make(chat_server).generate(request()) == "A linen shirt."


def test_timeout_is_retried_then_fails(chat_server):
    # The server answers only after generate() has returned: it can only return by giving up on both attempts.
    answer = threading.Event()
    chat_server.reply(200, completion("too late"), hold=answer).reply(200, completion("too late"), hold=answer)
    generator = make(chat_server, timeout=0.25, max_retries=1, backoff=0)

    try:
        with pytest.raises(GenerationError) as error:
            generator.generate(request())
    finally:
        answer.set()
    assert "No answer from" in str(error.value) and "within 0.25s" in str(error.value)
    assert "2 attempts" in str(error.value)
    assert len(chat_server.received) == 2 and len(generator.sleep) == 1
    assert_no_key(error)


def test_connection_refused_is_retried_then_fails():
    generator = make("http://127.0.0.1:%d/v1" % unused_port(), max_retries=2, backoff=0.01)
    with pytest.raises(GenerationError) as error:
        generator.generate(request())
    assert "Cannot reach" in str(error.value) and "3 attempts" in str(error.value)
    assert len(generator.sleep) == 2
    assert_no_key(error)


def test_retry_after_longer_than_we_wait_fails_at_once(chat_server):
    chat_server.reply(429, {"error": "quota"}, headers={"Retry-After": "3600"})
    generator = make(chat_server)
    with pytest.raises(GenerationError, match="retry after 3600s"):
        generator.generate(request())
    assert len(chat_server.received) == 1 and generator.sleep == []


def test_retry_after_parsing():
    class Headers(dict):
        pass

    assert _retry_after(Headers({"Retry-After": "7"})) == 7.0
    assert _retry_after(Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert _retry_after(Headers({"Retry-After": "soon"})) is None
    assert _retry_after(Headers()) is None


def test_no_messages_sends_nothing(chat_server):
    with pytest.raises(GenerationError, match="no messages"):
        make(chat_server).generate(request(messages=[]))
    assert chat_server.received == []


@pytest.mark.parametrize(
    "options",
    [
        {"base_url": "ftp://example.com/v1"},
        {"base_url": "not a url"},
        {"base_url": "http://example.com:99999/v1"},
        {"model": ""},
        {"max_retries": -1},
        {"timeout": 0},
        {"backoff": -1},
        {"extra_headers": {"X-Bad": "a\r\nInjected: 1"}},
    ],
)
def test_bad_options_are_rejected(options):
    values = {"base_url": "http://localhost:8000/v1", "model": "m", **options}
    with pytest.raises(GenerationError):
        OpenAICompatibleGenerator(**values)


def test_version_names_model_and_host():
    generator = OpenAICompatibleGenerator("https://api.example.com/v1/", "gpt-x", api_key=KEY)
    assert generator.version == "openai-compatible:gpt-x@api.example.com"
    assert generator.url == "https://api.example.com/v1/chat/completions"
    assert KEY not in repr(generator)
    local = OpenAICompatibleGenerator("http://localhost:11434/v1", "llama3.2")
    assert local.version == "openai-compatible:llama3.2@localhost:11434"


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(GenerationError) as error:
        OpenAICompatibleGenerator("https://user:hunter2@api.example.com/v1", "gpt-x")
    assert "hunter2" not in str(error.value)
