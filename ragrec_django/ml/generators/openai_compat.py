"""Generation through any server that speaks the OpenAI chat-completions protocol.

Works with OpenAI itself and with the usual self-hosted servers: vLLM
(``http://host:8000/v1``), Ollama (``http://host:11434/v1``), the llama.cpp
server (``http://host:8080/v1``), LM Studio, TGI's Messages API... Only the
standard library is used (``urllib.request`` + ``json``).

One call is one ``POST {base_url}/chat/completions`` with ``model``,
``messages``, ``max_tokens``, ``temperature`` and ``stream: false``; the answer
is ``choices[0].message.content``. Failures are retried with exponential
backoff and jitter when retrying can help: HTTP 408, 429 and 5xx, refused or
dropped connections and timeouts (a ``Retry-After`` header is honoured). Any
other 4xx fails at once. Every failure raises ``GenerationError`` with the
status and the server's own error message (truncated); the API key is never
part of a message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import os
import random
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from ..generation import GenerationError, GenerationRequest, Generator

#: Statuses worth retrying: request timeout, rate limit, and every server error.
RETRY_STATUSES = frozenset({408, 429})
#: Longest ``Retry-After`` (seconds) we wait for; a server asking for more fails the call at once.
MAX_RETRY_AFTER = 60.0
#: Longest exponential-backoff delay between two attempts (seconds).
MAX_BACKOFF = 30.0
#: How much of the server's error message goes into a ``GenerationError``.
ERROR_SNIPPET = 300
#: Most bytes of a response body read (a chat completion is far smaller).
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
USER_AGENT = "ragrec-django (openai-compatible generator)"
_THINK_BLOCK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)


class _Retryable(Exception):
    """One attempt failed in a way that another attempt may fix."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAICompatibleGenerator(Generator):
    """Chat completions from an OpenAI-compatible HTTP server.

    ``base_url`` is the API root that ``/chat/completions`` is appended to
    (e.g. ``https://api.openai.com/v1``, ``http://localhost:11434/v1``). The
    bearer key is ``api_key`` or else the environment variable named by
    ``api_key_env`` (read at each call); without either no ``Authorization``
    header is sent, as local servers expect. ``timeout`` applies to each
    attempt; ``max_retries`` is the number of attempts after the first;
    ``backoff`` is the first delay, doubled on each retry. ``extra_headers``
    are sent with every request (e.g. ``OpenAI-Organization``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        extra_headers: Mapping[str, str] | None = None,
    ):
        if not isinstance(base_url, str) or not base_url.strip():
            raise GenerationError("base_url must be the server's API root, e.g. 'http://localhost:8000/v1'.")
        try:
            parsed = urllib.parse.urlsplit(base_url.strip())
            port = parsed.port
        except ValueError:
            raise GenerationError("base_url is not a valid URL: %r." % _redact_url(base_url)) from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise GenerationError("base_url must be an http(s) URL with a host, got %r." % _redact_url(base_url))
        if "@" in parsed.netloc:
            raise GenerationError("base_url must not embed credentials; pass the key as api_key or api_key_env.")
        if parsed.query or parsed.fragment:
            raise GenerationError("base_url must not have a query or fragment: %r." % _redact_url(base_url))
        if not isinstance(model, str) or not model.strip():
            raise GenerationError("model must be the name the server knows the model by, got %r." % (model,))
        if api_key is not None and not isinstance(api_key, str):
            raise GenerationError("api_key must be a string or None.")
        if api_key_env is not None and not isinstance(api_key_env, str):
            raise GenerationError("api_key_env must be an environment variable name or None.")
        try:
            timeout = float(timeout)
            backoff = float(backoff)
        except (TypeError, ValueError):
            raise GenerationError("timeout and backoff must be numbers of seconds.") from None
        if not (timeout > 0 and math.isfinite(timeout)) or not (backoff >= 0 and math.isfinite(backoff)):
            raise GenerationError("timeout must be > 0 and backoff >= 0 seconds.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise GenerationError("max_retries must be an integer >= 0, got %r." % (max_retries,))
        headers = dict(extra_headers or {})
        for name, value in headers.items():
            if not isinstance(name, str) or not isinstance(value, str) or "\n" in name + value or "\r" in name + value:
                raise GenerationError("extra_headers must map header names to single-line strings.")
        self.base_url = base_url.strip().rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model.strip()
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.extra_headers = headers
        self.host = parsed.hostname + ("" if port is None else ":%d" % port)
        #: Called with the number of seconds to wait between attempts (tests replace it).
        self.sleep = time.sleep

    @property
    def version(self) -> str:
        return "openai-compatible:%s@%s" % (self.model, self.host)

    def generate(self, request: GenerationRequest) -> str:
        body = json.dumps(self._payload(request)).encode("utf-8")
        key = self._api_key()
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **self.extra_headers,
        }
        if key:
            headers["Authorization"] = "Bearer " + key
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._attempt(body, headers, key)
            except _Retryable as failure:
                if attempt + 1 >= attempts:
                    raise GenerationError(
                        "%s (gave up after %d attempt%s)." % (failure, attempts, "" if attempts == 1 else "s")
                    ) from None
                delay = self._delay(attempt, failure.retry_after, str(failure))
                self.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- one attempt -----------------------------------------------------------------

    def _attempt(self, body: bytes, headers: dict[str, str], key: str | None) -> str:
        http_request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        where = "%s at %s" % (self.model, _redact_url(self.url))
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                status = response.status
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as error:
            status = error.code
            try:
                raw = error.read(MAX_RESPONSE_BYTES)
            except Exception:  # the error body is only used for the message
                raw = b""
            finally:
                error.close()
            message = _error_message(_redact(raw.decode("utf-8", "replace"), key)) or _redact(
                str(error.reason or ""), key
            )
            text = "Server %s answered HTTP %d%s" % (where, status, ": " + message if message else "")
            if status in RETRY_STATUSES or status >= 500:
                raise _Retryable(text, _retry_after(error.headers)) from None
            raise GenerationError(text + ".") from None
        except TimeoutError as error:
            raise _Retryable(
                "No answer from %s within %gs (%s)" % (where, self.timeout, _redact(str(error), key))
            ) from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable("No answer from %s within %gs" % (where, self.timeout)) from None
            raise _Retryable("Cannot reach %s: %s" % (where, _redact(str(reason), key))) from None
        except (http.client.HTTPException, OSError) as error:
            # Dropped connections, resets, truncated bodies: the request may go through next time.
            detail = _redact(str(error), key) or type(error).__name__
            raise _Retryable("Connection to %s failed: %s" % (where, detail)) from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise GenerationError("Server %s sent a response over %d bytes." % (where, MAX_RESPONSE_BYTES))
        return self._content(raw, status, where, key)

    def _content(self, raw: bytes, status: int, where: str, key: str | None) -> str:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            snippet = _truncate(_redact(raw.decode("utf-8", "replace"), key))
            raise GenerationError(
                "Server %s answered HTTP %d with invalid JSON: %r" % (where, status, snippet)
            ) from None
        if isinstance(data, dict) and "error" in data and "choices" not in data:
            message = _error_message(_redact(raw.decode("utf-8", "replace"), key))
            raise GenerationError("Server %s answered HTTP %d with an error: %s" % (where, status, message))
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise GenerationError("Server %s sent no choices (expected choices[0].message.content)." % where)
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            finish = choice.get("finish_reason") if isinstance(choice, dict) else None
            raise GenerationError(
                "Server %s sent no text in choices[0].message.content (got %s%s)."
                % (where, type(content).__name__, ", finish_reason=%r" % finish if finish else "")
            )
        # Reasoning models served raw (e.g. through Ollama) put their chain of thought first.
        text = _THINK_BLOCK.sub("", content, count=1).strip()
        if not text:
            raise GenerationError("Server %s returned an empty completion." % where)
        return text

    # -- helpers ---------------------------------------------------------------------

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        messages = request.messages
        if not isinstance(messages, list) or not messages:
            raise GenerationError("The request has no messages to send.")
        for message in messages:
            if (
                not isinstance(message, dict)
                or not isinstance(message.get("role"), str)
                or not isinstance(message.get("content"), str)
            ):
                raise GenerationError("Each message must be a dict with string 'role' and 'content'.")
        try:
            max_tokens = int(request.max_tokens)
            temperature = float(request.temperature)
        except (TypeError, ValueError):
            raise GenerationError("max_tokens must be an integer and temperature a number.") from None
        if max_tokens < 1 or not (temperature >= 0 and math.isfinite(temperature)):
            raise GenerationError("max_tokens must be >= 1 and temperature >= 0.")
        return {
            "model": self.model,
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": False,
        }

    def _api_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None

    def _delay(self, attempt: int, retry_after: float | None, failure: str) -> float:
        """Seconds to wait before attempt ``attempt + 2``: doubling backoff with jitter, or Retry-After."""
        base = min(self.backoff * (2**attempt), MAX_BACKOFF)
        delay = base * random.uniform(0.5, 1.0) if base else 0.0  # "equal jitter": spreads clients apart
        if retry_after is not None:
            if retry_after > MAX_RETRY_AFTER:
                raise GenerationError("%s and asks to retry after %gs; not waiting that long." % (failure, retry_after))
            delay = max(delay, retry_after)
        return delay

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self.version)


def _retry_after(headers) -> float | None:
    """``Retry-After`` as seconds (a number of seconds or an HTTP date), or None."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _error_message(text: str) -> str:
    """The server's error message from an error body (OpenAI, vLLM, Ollama, llama.cpp shapes), truncated."""
    text = text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        return _truncate(" ".join(text.split()))
    message = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("msg")
        elif isinstance(error, str):
            message = error
        if not message:
            message = data.get("message") or data.get("detail")
    if not isinstance(message, str):
        message = json.dumps(data)
    return _truncate(" ".join(message.split()))


def _truncate(text: str, limit: int = ERROR_SNIPPET) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _redact(text: str, key: str | None) -> str:
    if key:
        text = text.replace(key, "***")
    return text


def _redact_url(url: str) -> str:
    """``url`` without user:password (never echo credentials embedded in a URL)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        if "@" in parts.netloc:
            parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
        return urllib.parse.urlunsplit(parts)
    except (AttributeError, ValueError):
        return "<invalid url>"
