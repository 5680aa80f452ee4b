"""Variant assignment: deterministic per visitor, across processes, by weight; settings validated by system checks."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured

from ragrec_django import conf
from ragrec_django.models import ServingConfig
from ragrec_django.services import experiments
from ragrec_django.services.results import Visitor

from .conftest import EXPERIMENT, session_in

ROOT = Path(__file__).resolve().parents[3]


def variants(experiment, count, prefix="v"):
    return Counter(experiment.variant_for("session:%s%d" % (prefix, n)).name for n in range(count))


def test_assignment_is_deterministic_and_the_same_in_another_process():
    experiment = conf.parse_experiments(EXPERIMENT)[0]
    first = [experiment.variant_for("session:s%d" % n).name for n in range(200)]
    assert first == [experiment.variant_for("session:s%d" % n).name for n in range(200)]
    assert set(first) == {"control", "lamps"}
    code = (
        "import django; django.setup(); from ragrec_django.conf import bucket; "
        "print(' '.join(repr(bucket('ranking-test', 'session:s%d' % n)) for n in range(50)))"
    )
    for seed in ("1", "2"):  # str hashing differs between these processes; sha256 does not
        env = {**os.environ, "PYTHONHASHSEED": seed, "DJANGO_SETTINGS_MODULE": "shop_demo.settings"}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
        )
        assert done.returncode == 0, done.stderr
        out = done.stdout.split()
        assert [float(x) for x in out] == [conf.bucket("ranking-test", "session:s%d" % n) for n in range(50)]


def test_weights_are_respected_over_many_visitors():
    spec = {
        "t": {
            "VARIANTS": {
                "a": {"CONFIG": "default", "WEIGHT": 80},
                "b": {"CONFIG": "default", "WEIGHT": 20},
                "off": {"CONFIG": "default", "WEIGHT": 0},
            }
        }
    }
    counts = variants(conf.parse_experiments(spec)[0], 20_000)
    assert counts["off"] == 0
    assert 0.78 < counts["a"] / 20_000 < 0.82 and 0.18 < counts["b"] / 20_000 < 0.22
    even = variants(conf.parse_experiments(EXPERIMENT)[0], 20_000)
    assert 0.48 < even["control"] / 20_000 < 0.52


def test_experiments_are_independent_of_each_other():
    one = conf.parse_experiments({"one": EXPERIMENT["ranking-test"]})[0]
    two = conf.parse_experiments({"two": EXPERIMENT["ranking-test"]})[0]
    pairs = Counter((one.variant_for("user:%d" % n).name, two.variant_for("user:%d" % n).name) for n in range(8000))
    assert len(pairs) == 4 and all(1800 < count < 2200 for count in pairs.values())


def test_assign_uses_the_variant_config_unless_a_config_is_named(db, experiment_settings):
    control, lamps = session_in("control"), session_in("lamps")
    assert experiments.assign("trending", Visitor(session_key=lamps)) == experiments.Assignment(
        "lamps-only", "ranking-test", "lamps"
    )
    assert experiments.assign("trending", Visitor(session_key=control)) == experiments.Assignment(
        "default", "ranking-test", "control"
    )
    assert experiments.assign("trending", Visitor(session_key=lamps), "default") == experiments.Assignment("default")
    assert experiments.assign("similar", Visitor(session_key=lamps)) == experiments.Assignment("default")  # not covered
    assert experiments.assign("trending", Visitor()) == experiments.Assignment("default")  # nobody to assign
    user_variant = experiments.assign("trending", Visitor(user_id=7, session_key=lamps)).variant
    assert user_variant == experiments.configured_experiments()[0].variant_for("user:7").name  # the user wins


def test_a_variant_with_an_unknown_config_serves_default_and_logs(db, settings, caplog):
    settings.RAGREC = {
        **settings.RAGREC,
        "EXPERIMENTS": {
            "t": {"VARIANTS": {"a": {"CONFIG": "missing", "WEIGHT": 1}, "b": {"CONFIG": "missing", "WEIGHT": 1}}}
        },
    }
    assert experiments.assign("similar", Visitor(session_key="x")) == experiments.Assignment("default")
    assert "Unknown serving configuration 'missing'" in caplog.text
    ServingConfig.objects.create(name="missing", rules={"in_stock_only": True})  # an admin row counts
    assert experiments.assign("similar", Visitor(session_key="x")).config == "missing"


@pytest.mark.parametrize(
    "value, message",
    [
        ([], "must be a dict"),
        ({"t": {"VARIANTS": {"a": {"CONFIG": "default"}}}}, "at least two variants"),
        ({"t": {"VARIANTS": {"a": {"CONFIG": "default"}, "b": {}}}}, "CONFIG must name a serving configuration"),
        (
            {"t": {"VARIANTS": {"a": {"CONFIG": "default", "WEIGHT": -1}, "b": {"CONFIG": "x"}}}},
            "WEIGHT must be a number >= 0",
        ),
        (
            {"t": {"VARIANTS": {"a": {"CONFIG": "default", "WEIGHT": "5"}, "b": {"CONFIG": "x"}}}},
            "WEIGHT must be a number",
        ),
        ({"t": {"VARIANTS": {"a": {"CONFIG": "d", "WEIGHT": 0}, "b": {"CONFIG": "x", "WEIGHT": 0}}}}, "add up to 0"),
        ({"t": {"VARIANTS": {"a": {"CONFIG": "d", "SHARE": 1}, "b": {"CONFIG": "x"}}}}, "unknown key(s) SHARE"),
        (
            {"t": {"RECOMMENDERS": ["similar", "nope"], "VARIANTS": EXPERIMENT["ranking-test"]["VARIANTS"]}},
            "unknown recommender(s) nope",
        ),
        (
            {"t": {"RECOMMENDERS": "similar", "VARIANTS": EXPERIMENT["ranking-test"]["VARIANTS"]}},
            "RECOMMENDERS must be a non-empty list",
        ),
        (
            {
                "t": {"VARIANTS": EXPERIMENT["ranking-test"]["VARIANTS"]},
                "u": {"RECOMMENDERS": ["search"], "VARIANTS": EXPERIMENT["ranking-test"]["VARIANTS"]},
            },
            "recommender 'search' is already in experiment 't'",
        ),
        ({"": {"VARIANTS": EXPERIMENT["ranking-test"]["VARIANTS"]}}, "non-empty string"),
    ],
)
def test_bad_settings_are_refused_with_a_message_and_system_check_E011(settings, value, message):
    with pytest.raises(ImproperlyConfigured) as raised:
        conf.parse_experiments(value)
    assert message in str(raised.value)
    settings.RAGREC = {**settings.RAGREC, "EXPERIMENTS": value}
    errors = [e for e in run_checks() if e.id == "ragrec.E011"]
    assert len(errors) == 1 and message in errors[0].msg


def test_valid_settings_pass_the_checks(db, experiment_settings):
    assert [
        e.id for e in run_checks(include_deployment_checks=False, databases=["default"]) if e.id.startswith("ragrec.")
    ] == []


def test_unknown_variant_config_is_warning_W002(db, settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "EXPERIMENTS": {"t": {"VARIANTS": {"a": {"CONFIG": "default"}, "b": {"CONFIG": "fancy"}}}},
    }
    warnings = [e for e in run_checks(databases=["default"]) if e.id == "ragrec.W002"]
    assert len(warnings) == 1 and "variant 'b': no serving configuration named 'fancy'" in warnings[0].msg
    ServingConfig.objects.create(name="fancy")
    assert not [e for e in run_checks(databases=["default"]) if e.id == "ragrec.W002"]
