"""Shopper text checked once, in the services, for every caller (REST API, template tags, the host's views).

Text a shopper typed reaches PostgreSQL (keyword search, event rows), the encoders and the generator.
PostgreSQL refuses a NUL character in text, and a lone surrogate (half of a UTF-16 pair, e.g. from a
JSON ``"\\ud800"``) cannot be encoded to UTF-8 at all: either would fail deep inside a query, as a
server error. ``checked_text`` refuses them, and text over its limit (``ragrec_django.limits``), with
``BadQuery`` (the REST API answers 400, a page shows the message), before anything is run.
"""

from __future__ import annotations

import re

from ..exceptions import BadQuery

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str, max_chars: int) -> str | None:
    """Why ``text`` cannot be used ("contains a NUL character", ...), or None when it can."""
    if "\x00" in text:
        return "contains a NUL character"
    if _LONE_SURROGATE.search(text):
        return "contains a lone surrogate (text that is not valid Unicode)"
    if len(text) > max_chars:
        return "is longer than %d characters" % max_chars
    return None


def checked_text(value, *, what: str, max_chars: int, empty: str) -> str:
    """``value`` without surrounding whitespace; ``BadQuery`` when it is empty (message ``empty``) or unusable.

    ``what`` starts the message of the other refusals: "The search query" -> "The search query contains a
    NUL character."
    """
    text = str(value or "").strip()
    if not text:
        raise BadQuery(empty)
    problem = text_problem(text, max_chars)
    if problem:
        raise BadQuery("%s %s." % (what, problem))
    return text


def usable_key(value, max_chars: int) -> str | None:
    """``value`` as text when it can be looked up (an item key, a category), else None."""
    text = "" if value is None else str(value)
    return None if text_problem(text, max_chars) else text
