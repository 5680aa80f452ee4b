"""Errors of the REST API: the services' errors as HTTP answers, and a DRF exception handler for the
request errors Django raises itself.

:func:`translate_service_error` is the one table from the errors of ``ragrec_django.exceptions`` (and
database outages) to HTTP: ``ItemNotFound`` 404, ``UnknownServingConfig`` 400 on the ``config`` field,
any other ``RecommendationError`` and ``ImageDecodeError`` 400, ``SpaceNotReady`` and ``GenerationError``
503, a database that cannot be reached 503 with ``Retry-After: 1``.

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
from django.db import InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, ParseError, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

from ..exceptions import (
    GenerationError,
    ImageDecodeError,
    ItemNotFound,
    RecommendationError,
    SpaceNotReady,
    UnknownServingConfig,
)

logger = logging.getLogger(__name__)


class BadRequest(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "Bad request."
    default_code = "bad_request"


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Recommendations are not available yet."
    default_code = "not_ready"


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


def too_large_message(limit: int, what: str = "The request body") -> str:
    return "%s is too large: at most %s (%d bytes)." % (what, human_size(limit), limit)


def translate_service_error(exc: Exception) -> Exception:
    """The services' errors as HTTP errors (see the table above); anything else unchanged."""
    if isinstance(exc, ItemNotFound):
        return NotFound(str(exc))
    if isinstance(exc, UnknownServingConfig):
        return ValidationError({"config": [str(exc)]})
    if isinstance(exc, (RecommendationError, ImageDecodeError)):  # BadQuery and any other
        return BadRequest(str(exc))
    if isinstance(exc, SpaceNotReady):
        logger.warning("ragrec API: %s", exc)
        return ServiceUnavailable("Recommendations are not available yet: %s" % exc)
    if isinstance(exc, GenerationError):
        logger.warning("ragrec API: generator failed: %s", exc)
        return ServiceUnavailable("The assistant is not available right now.")
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("ragrec API: database unavailable: %s", exc)
        unavailable = ServiceUnavailable("The database is unavailable; retry (events: with the same idempotency keys).")
        unavailable.wait = 1  # DRF sends it as Retry-After
        return unavailable
    return exc


def translate_request_error(exc: Exception) -> Exception:
    """Django's request-reading refusals as DRF exceptions (with a message); anything else unchanged."""
    if isinstance(exc, RequestDataTooBig):
        return RequestTooLarge(too_large_message(int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0)))
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
