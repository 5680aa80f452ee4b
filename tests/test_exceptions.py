"""``ragrec_django.exceptions`` is the one module a host catches errors from; the old import paths name the same classes."""

import pytest

from ragrec_django import exceptions, storage
from ragrec_django.ml import generation, images
from ragrec_django.services import descriptions, events, experiments, recommend, results

OLD_PATHS = [
    (results, "RecommendationError"),
    (results, "ItemNotFound"),
    (results, "BadQuery"),
    (results, "UnknownServingConfig"),
    (recommend, "RecommendationError"),
    (recommend, "ItemNotFound"),
    (recommend, "BadQuery"),
    (recommend, "UnknownServingConfig"),
    (recommend, "ImageDecodeError"),
    (experiments, "ImpressionError"),
    (events, "EventError"),
    (descriptions, "ReviewError"),
    (storage, "SpaceNotReady"),
    (storage, "SpaceMismatch"),
    (images, "ImageDecodeError"),
    (generation, "GenerationError"),
]


@pytest.mark.parametrize(("module", "name"), OLD_PATHS, ids=lambda value: getattr(value, "__name__", value))
def test_old_import_paths_name_the_same_classes(module, name):
    assert getattr(module, name) is getattr(exceptions, name)


def test_every_exported_name_is_an_exception_described_in_the_module_docstring():
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), Exception)
        assert "``%s``" % name in exceptions.__doc__


def test_errors_a_caller_may_show_share_one_base():
    for name in ("ItemNotFound", "BadQuery", "UnknownServingConfig", "ImpressionError"):
        assert issubclass(getattr(exceptions, name), exceptions.RecommendationError)


def test_event_error_lists_the_refused_events():
    error = exceptions.EventError({2: ["item: unknown"], 0: ["event: bad", "quantity: bad"]})
    assert str(error) == "event 0: event: bad, quantity: bad; event 2: item: unknown"
    assert isinstance(error, ValueError) and error.errors[2] == ["item: unknown"]
