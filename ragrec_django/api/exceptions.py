"""Errors of the REST API, and a DRF exception handler for the request errors Django raises itself.

Django refuses some requests while DRF reads them, with ``SuspiciousOperation`` subclasses that DRF
does not handle: a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (``RequestDataTooBig``), more fields than
``DATA_UPLOAD_MAX_NUMBER_FIELDS`` in a query string or form (``TooManyFieldsSent``), more files than
``DATA_UPLOAD_MAX_NUMBER_FILES`` (``TooManyFilesSent``). Left alone they become Django's plain HTML
"Bad Request (400)" page. :func:`exception_handler` answers them like every other API error, as JSON
``{"detail": "message"}``: 413 for a body too large, 400 for too many fields or files.

Use it for the ragrec views (``RagrecAPIView.get_exception_handler``) or for a whole DRF API::

    REST_FRAMEWORK = {"EXCEPTION_HANDLER": "ragrec_django.api.exceptions.exception_handler"}
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return "%g MB" % round(size / (1024 * 1024), 1)
    if size >= 1024:
        return "%g KB" % round(size / 1024, 1)
    return "%d bytes" % size


def body_too_large_message(limit: int) -> str:
    return "The request body is too large: at most %s (%d bytes)." % (human_size(limit), limit)


def translate_request_error(exc: Exception) -> Exception:
    """Django's request-reading refusals as DRF exceptions (with a message); anything else unchanged."""
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge(body_too_large_message(int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)))
    if isinstance(exc, TooManyFieldsSent):
        return ParseError(
            "Too many fields in the query string or form: at most %s." % settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        )
    if isinstance(exc, TooManyFilesSent):
        return ParseError("Too many files: at most %s." % settings.DATA_UPLOAD_MAX_NUMBER_FILES)
    return exc


def exception_handler(exc, context):
    """DRF's exception handler, first turning Django's request-reading refusals into JSON 4xx answers."""
    translated = translate_request_error(exc)
    if translated is not exc:
        logger.warning("ragrec API: refused a request: %s", exc)
    return drf_exception_handler(translated, context)
