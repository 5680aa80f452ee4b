"""Request parsers that turn every malformed or oversized body into a 4xx, never a 500 or an unbounded read."""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .exceptions import RequestTooLarge, too_large_message


def body_limit() -> int | None:
    """Largest JSON body read, in bytes: Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (None: no limit)."""
    limit = getattr(settings, "DATA_UPLOAD_MAX_MEMORY_SIZE", None)
    return None if limit is None else int(limit)


class SafeJSONParser(JSONParser):
    """DRF's JSON parser with two guards.

    * At most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes are read (Django's limit for bodies it buffers,
      2.5 MB by default; a full batch of the largest allowed events fits in it): a declared
      ``Content-Length`` over it is refused before anything is read, and a longer body (no or a false
      length) after reading one byte past the limit; both are 413. DRF 3.16+ buffers JSON bodies through
      ``request.body``, where Django raises ``RequestDataTooBig`` first (answered as 413 by
      ``exceptions.exception_handler``); this guard covers parsers handed the raw stream.
    * A document nested too deeply for Python's decoder (RecursionError) is a 400.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = body_limit()
        if stream is not None and limit is not None:
            request = (parser_context or {}).get("request")
            meta = getattr(request, "META", {}) if request is not None else {}
            try:
                declared = int(meta.get("CONTENT_LENGTH") or 0)
            except (TypeError, ValueError):
                declared = 0
            if declared > limit:
                raise RequestTooLarge(too_large_message(limit))
            data = stream.read(limit + 1)
            if len(data) > limit:
                raise RequestTooLarge(too_large_message(limit))
            stream = io.BytesIO(data)
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None
