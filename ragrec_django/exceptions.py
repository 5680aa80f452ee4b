"""Every error ragrec_django raises for a host to catch, in one module: ``from ragrec_django.exceptions import ...``.

Recommendations (``services.recommend``, ``services.assistant``, the REST API, the template tags):

* ``RecommendationError``: base of the errors whose message can be shown to the shopper or API client
  (the REST API answers 400 for it and for the subclasses not listed below);
* ``ItemNotFound`` (a ``RecommendationError``): no item with the key asked about (REST API: 404);
* ``BadQuery`` (a ``RecommendationError``): an empty or too long query, a bad ``k``, an upload that is
  not a usable image (400);
* ``UnknownServingConfig`` (a ``RecommendationError``): a serving configuration that is neither in the
  admin nor in ``RAGREC["SERVING_CONFIGS"]``, or whose rules are invalid (400, on the ``config`` field);
* ``ImpressionError`` (a ``RecommendationError``): a click names an impression that does not exist, or an
  item it did not show (``services.experiments.impression_for_click``; the click redirect answers 404);
* ``SpaceNotReady``: an embedding space needed has no active generation yet, nothing was encoded (run
  ``ragrec_reindex``; REST API: 503);
* ``SpaceMismatch``: a space's stored generation does not match its configured encoder (``ragrec_reindex``
  and ``ragrec_spaces`` report it; the template tags render nothing);
* ``ImageDecodeError`` (a ``ValueError``): bytes that cannot be used as an image; ``reason`` says why
  (``ml.images``; search by photo turns it into ``BadQuery``);
* ``GenerationError``: a text generator could not produce text: unreachable server, bad response, model
  failure (``ml.generation``; the assistant endpoint answers 503).

Events and descriptions:

* ``EventError`` (a ``ValueError``): ``services.events.record_events`` refused a batch (nothing stored);
  ``errors`` maps each refused event's index to its messages (REST API: 400);
* ``IdempotencyConflict`` (an ``EventError``): an idempotency key the visitor already used for another event
  came back with a different one (nothing stored; REST API: 409);
* ``InvalidSearchRule`` (a ``ValueError``): a merchandiser's per-query search rule that cannot be saved (a
  redirect to something that is not a URL, or that loops; a pin of an item that does not exist...); ``field``
  names the field at fault (``services.search.check_search_rule``; the admin shows it on that field);
* ``ReviewError``: a description review step that the draft's current state does not allow
  (``services.descriptions``: edit, approve, reject or publish out of order).

``SpaceNotReady``, ``SpaceMismatch``, ``ImageDecodeError`` and ``GenerationError`` are defined beside the
code that raises them (``storage``, ``ml``) and re-exported here; the others are defined here and keep
their old import paths (``services.results``, ``services.recommend``, ``services.events``,
``services.experiments``, ``services.descriptions``).
"""

from __future__ import annotations

from .ml.generation import GenerationError
from .ml.images import ImageDecodeError
from .storage import SpaceMismatch, SpaceNotReady

__all__ = [
    "BadQuery",
    "EventError",
    "GenerationError",
    "IdempotencyConflict",
    "ImageDecodeError",
    "ImpressionError",
    "InvalidSearchRule",
    "ItemNotFound",
    "RecommendationError",
    "ReviewError",
    "SpaceMismatch",
    "SpaceNotReady",
    "UnknownServingConfig",
]


class RecommendationError(Exception):
    """Base of the errors a caller can show to the shopper or API client."""


class ItemNotFound(RecommendationError):
    """No item with the key asked about."""


class BadQuery(RecommendationError):
    """Bad input to a recommender: an empty or too long query, a bad ``k``, an unusable image."""


class UnknownServingConfig(RecommendationError):
    """A serving configuration that does not exist, or whose rules are invalid."""


class ImpressionError(RecommendationError):
    """A click names an impression that does not exist, or an item it did not show."""


class EventError(ValueError):
    """A batch of events was refused; ``errors`` maps event index to messages."""

    def __init__(self, errors: dict[int, list[str]]):
        self.errors = errors
        super().__init__("; ".join("event %d: %s" % (i, ", ".join(m)) for i, m in sorted(errors.items())))


class IdempotencyConflict(EventError):
    """An idempotency key came back with a different event than the one it was first used for."""


class InvalidSearchRule(ValueError):
    """A per-query search rule that cannot be saved; ``field`` names the field at fault (None: the rule as a whole)."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class ReviewError(Exception):
    """A review step that is not allowed in the draft's current state."""
