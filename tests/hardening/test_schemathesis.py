"""Schemathesis over the demo's served OpenAPI schema, in-process against Django's WSGI handler.

Every operation of ``/api/recommend/`` is fuzzed with data the schema allows (positive) and data it
forbids (negative), against a database holding the services' small encoded catalogue. Each response
must not be a server error, must use a status code the schema documents, and must match the schema
of that status code (body and content type). Failures are collected per operation, with the request
that caused them, so one run reports every distinct problem.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest
import schemathesis
from django.urls import reverse
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.drivers import CoverageGenerator
from schemathesis.generation.feedback import FeedbackSources
from schemathesis.generation.modes import GenerationMode
from schemathesis.generation.overrides import Override
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation and generation mode. A longer, randomised hunt: RAGREC_FUZZ_EXAMPLES=200 RAGREC_FUZZ_RANDOM=1.
MAX_EXAMPLES = int(os.environ.get("RAGREC_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = os.environ.get("RAGREC_FUZZ_RANDOM") != "1"

OPERATIONS = [
    "GET /api/recommend/items/{key}/similar/",
    "GET /api/recommend/items/{key}/bought-together/",
    "GET /api/recommend/basket/bought-together/",
    "GET /api/recommend/search/",
    "POST /api/recommend/search/photo/",
    "GET /api/recommend/for-you/",
    "GET /api/recommend/recently-viewed/",
    "GET /api/recommend/buy-again/",
    "GET /api/recommend/trending/",
    "GET /api/recommend/assistant/",
    "POST /api/recommend/events/",
    "GET /api/recommend/search/suggest/",
    "POST /api/recommend/assistant/conversations/",
    "POST /api/recommend/assistant/conversations/{conversation_id}/turns/",
    "GET /api/recommend/assistant/conversations/{conversation_id}/",
    "DELETE /api/recommend/assistant/conversations/{conversation_id}/",
]


@pytest.fixture
def fuzz_settings(settings, catalogue):
    """Throttling off (it is tested on its own; fuzzing would otherwise mostly meet 429s)."""
    settings.RAGREC = {
        **settings.RAGREC,
        "API_THROTTLE_RATES": {"ragrec": None, "ragrec_photo": None, "ragrec_events": None},
    }
    return catalogue


@pytest.fixture
def api_schema(api, wsgi_app):
    response = api.get(reverse("ragrec_api:schema"), {"format": "json"})
    assert response.status_code == 200
    schema = schemathesis.openapi.from_dict(json.loads(response.content))
    schema.app = wsgi_app
    return schema


def _operations(schema) -> dict:
    operations = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations["%s %s" % (operation.method.upper(), operation.path)] = operation
    return operations


def test_schema_lists_exactly_the_fuzzed_operations(api_schema):
    assert sorted(_operations(api_schema)) == sorted(OPERATIONS)


def _problems(mode: str, response, exc: BaseException) -> dict[str, str]:
    """One entry per failed check: "mode -> status: title: first line of the message" -> the full report."""
    report = str(exc)[:4000]
    failures = getattr(exc, "exceptions", None) or [exc]
    found = {}
    for failure in failures:
        title = getattr(failure, "title", type(failure).__name__)
        message = (getattr(failure, "message", "") or str(failure)).strip().splitlines()
        found["%s -> %d: %s: %s" % (mode, response.status_code, title, message[0] if message else "")] = report
    return found


class Runner:
    """Sends cases to the app and records, per distinct problem, the first report that showed it."""

    def __init__(self, app):
        self.app = app
        self.problems: dict[str, str] = {}
        self.statuses: dict[int, int] = defaultdict(int)

    def __call__(self, case, mode: str) -> None:
        try:
            response = case.call(app=self.app)
        except Exception as exc:  # the handler itself crashed (Django turns view errors into 500 pages)
            self.problems.setdefault("%s -> crash: %r" % (mode, exc), case.as_curl_command())
            return
        self.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, transport_kwargs={"app": self.app})
        except (Exception, BaseExceptionGroup) as exc:  # noqa: F821 (Python >= 3.11, as the tests run) schemathesis' FailureGroup is a BaseExceptionGroup
            for key, report in _problems(mode, response, exc).items():
                self.problems.setdefault(key, report)


def fuzz(runner: Runner, operation, mode: GenerationMode, path_parameters: dict | None) -> None:
    """Up to MAX_EXAMPLES generated requests in one generation mode."""

    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        runner(case, mode.value)

    run()


def coverage(runner: Runner, operation, path_parameters: dict | None) -> int:
    """Schemathesis' coverage phase: boundary values, each constraint broken in turn, missing required
    parameters, unexpected methods and media types. Returns how many cases were sent."""
    generator = CoverageGenerator(
        operation=operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=operation.schema.config.generation_for(operation=operation, phase="coverage"),
        auth_storage=None,
        override=Override(path_parameters=path_parameters or {}),
        feedback=FeedbackSources(),
    )
    sent = 0
    for case in generator:
        runner(case, "coverage")
        sent += 1
    return sent


@pytest.mark.parametrize("label", OPERATIONS)
def test_fuzzed_requests_get_documented_answers_and_no_server_error(api_schema, fuzz_settings, wsgi_app, label):
    operation = _operations(api_schema)[label]
    runner = Runner(wsgi_app)
    # Generated path keys are mostly unknown items (404); the key of a real item reaches the recommenders.
    keys = [None, {"key": str(fuzz_settings["Red ceramic coffee mug"].pk)}] if "{key}" in label else [None]
    for path_parameters in keys:
        assert coverage(runner, operation, path_parameters) > 0
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(runner, operation, mode, path_parameters)
            except Unsatisfiable:
                # An operation whose every input is valid (e.g. an empty body) has no negative examples.
                assert mode is GenerationMode.NEGATIVE, label
    print(
        "%s: %d requests, statuses %s" % (label, sum(runner.statuses.values()), dict(sorted(runner.statuses.items())))
    )
    if "{conversation_id}" in label:
        # A conversation belongs to the session that started it: the fuzzer's clients own none, so these
        # operations are fuzzed up to their documented refusal (tests/api/test_conversation.py walks the rest).
        assert 404 in runner.statuses, "no request reached the ownership check: %s" % dict(runner.statuses)
    else:
        assert 200 in runner.statuses or 201 in runner.statuses, "no request succeeded: %s" % dict(runner.statuses)
    assert not runner.problems, "\n\n".join("%s\n%s" % item for item in sorted(runner.problems.items()))
