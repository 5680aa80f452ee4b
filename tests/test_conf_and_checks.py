"""RAGREC settings validation, reload on override, and system checks with stable ids."""

import subprocess
import sys

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ragrec_django import registry
from ragrec_django.adapters import ItemAdapter
from ragrec_django.conf import RagrecSettings, ragrec_settings
from ragrec_django.models import SpaceGeneration


def run_checks(**kwargs):
    return [m for m in checks.run_checks(**kwargs) if m.id.startswith("ragrec.")]


def ids(messages):
    return sorted(m.id for m in messages)


def test_import_needs_no_configured_django():
    code = "import ragrec_django, ragrec_django.ml.base; print(ragrec_django.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0.1.0"


def test_defaults_and_user_values():
    custom = RagrecSettings({"ITEM_MODEL": "shop.Thing", "HNSW": {"EF_SEARCH": 200}})
    assert custom.ITEM_MODEL == "shop.Thing"
    assert custom.HNSW == {
        "M": 16,
        "EF_CONSTRUCTION": 64,
        "EF_SEARCH": 200,
        "EF_SEARCH_BROAD": 60,
        "EF_SEARCH_MAX": 400,
        "EF_SEARCH_SCALE_ROWS": 100_000,
        "RERANK_DEPTH": 100,
        "EXACT_CACHE_ROWS": 200_000,
        "EXACT_CACHE_SECONDS": 300,
        "SMALL_CATEGORY_ROWS": 5_000,
        "QUERY_CATEGORIES": 128,
    }  # merged with defaults
    assert custom.AUTO_ENCODE is True
    assert set(custom.SPACES) == {"text", "image", "clip-text"}


def test_unknown_key_is_rejected_with_the_valid_keys():
    with pytest.raises(
        ImproperlyConfigured, match=r"Unknown key\(s\) in settings.RAGREC: ITEMMODEL.*Valid keys are:.*ITEM_MODEL"
    ):
        RagrecSettings({"ITEMMODEL": "x.Y"}).ITEM_MODEL


def test_adapter_is_imported_lazily_and_errors_name_the_setting():
    custom = RagrecSettings({"ADAPTER": "no.such.Adapter"})
    with pytest.raises(ImproperlyConfigured, match=r"RAGREC\['ADAPTER'\]"):
        custom.ADAPTER
    assert RagrecSettings({}).ADAPTER is ItemAdapter


def test_settings_reload_when_overridden(settings):
    assert ragrec_settings.ITEM_MODEL == "catalog.Product"
    with override_settings(RAGREC={**settings.RAGREC, "ITEM_MODEL": "auth.User"}):
        assert ragrec_settings.ITEM_MODEL == "auth.User"
    assert ragrec_settings.ITEM_MODEL == "catalog.Product"


def test_demo_configuration_passes_checks():
    assert run_checks() == []


@pytest.mark.parametrize(
    "override, expected",
    [
        ({"NOPE": 1}, "ragrec.E001"),
        ({"ITEM_MODEL": None}, "ragrec.E002"),
        ({"ITEM_MODEL": "catalog.Nope"}, "ragrec.E002"),
        ({"ADAPTER": "shop_demo.nowhere.Adapter"}, "ragrec.E003"),
        ({"ADAPTER": "django.contrib.auth.models.User"}, "ragrec.E003"),
        ({"ENCODERS": {"minilm": {"BACKEND": "ragrec_django.ml.nowhere.Encoder"}}}, "ragrec.E004"),
        (
            {
                "ENCODERS": {
                    "minilm": {"BACKEND": "ragrec_django.ml.text.TransformerTextEncoder", "OPTIONS": {"colour": 1}}
                }
            },
            "ragrec.E004",
        ),
        ({"SPACES": {"text": {"ENCODER": "missing", "MODALITY": "text"}}}, "ragrec.E005"),
        ({"SPACES": {"text": {"ENCODER": "minilm", "MODALITY": "audio"}}}, "ragrec.E005"),
        ({"SPACES": {"image": {"ENCODER": "minilm", "MODALITY": "image"}}}, "ragrec.E006"),
        ({"EXPERIMENTS": {"t": {"VARIANTS": {}}}}, "ragrec.E011"),
        ({"SERVING_CONFIGS": ["default"]}, "ragrec.E012"),
        ({"SERVING_CONFIGS": {"default": {}, "narrow": {"colour": "red"}}}, "ragrec.E012"),
        ({"FOR_YOU_WEIGHTS": {"similar": 0, "repeat": 0}}, "ragrec.E013"),
        ({"SIMILAR_WEIGHTS": {"text": "heavy"}}, "ragrec.E013"),
        ({"SEARCH_WEIGHTS": {"keywords": 1.0}}, "ragrec.E013"),
        ({"API_THROTTLE_RATES": {"ragrec": "600 a minute"}}, "ragrec.E014"),
        ({"API_THROTTLE_RATES": ["600/min"]}, "ragrec.E014"),
    ],
)
def test_misconfiguration_has_a_stable_check_id(settings, override, expected):
    settings.RAGREC = {**settings.RAGREC, **override}
    assert expected in ids(run_checks())


def test_validated_settings_are_read_checked_and_normalised():
    custom = RagrecSettings({"FOR_YOU_WEIGHTS": {"similar": 1, "repeat": "2"}, "API_THROTTLE_RATES": {"ragrec": None}})
    assert custom.FOR_YOU_WEIGHTS == {"similar": 1.0, "repeat": 2.0}
    assert custom.API_THROTTLE_RATES == {"ragrec": None, "ragrec_photo": "60/min", "ragrec_events": "6000/min"}
    assert RagrecSettings({"API_THROTTLE_RATES": None}).API_THROTTLE_RATES == RagrecSettings({}).API_THROTTLE_RATES
    assert RagrecSettings({}).EXPERIMENTS == []
    with pytest.raises(
        ImproperlyConfigured, match=r"unknown retriever\(s\) \['keywrod'\]; the retrievers are keyword, text, image"
    ):
        RagrecSettings({"SEARCH_WEIGHTS": {"keywrod": 1.0}}).SEARCH_WEIGHTS
    with pytest.raises(
        ImproperlyConfigured, match=r'RAGREC\["SIMILAR_WEIGHTS"\]\[\'image\'\] must be a number >= 0, got inf'
    ):
        RagrecSettings({"SIMILAR_WEIGHTS": {"text": 1, "image": float("inf")}}).SIMILAR_WEIGHTS


def test_each_invalid_setting_is_one_error_with_the_validators_message(settings):
    settings.RAGREC = {
        **settings.RAGREC,
        "SERVING_CONFIGS": {"default": {}, "narrow": {"colour": "red"}},
        "SEARCH_WEIGHTS": {"keyword": -1},
        "API_THROTTLE_RATES": {"ragrec_photo": "fast"},
    }
    errors = {m.id: m.msg for m in run_checks()}
    assert sorted(errors) == ["ragrec.E012", "ragrec.E013", "ragrec.E014"]
    assert errors["ragrec.E012"].startswith("RAGREC[\"SERVING_CONFIGS\"]['narrow']: unknown key(s) ['colour']")
    assert errors["ragrec.E013"] == "RAGREC[\"SEARCH_WEIGHTS\"]['keyword'] must be a number >= 0, got -1."
    assert "RAGREC[\"API_THROTTLE_RATES\"]['ragrec_photo']" in errors["ragrec.E014"]


def test_an_invalid_ragrec_is_reported_once_as_E001(settings):
    settings.RAGREC = {**settings.RAGREC, "NOPE": 1, "FOR_YOU_WEIGHTS": {"colour": 1}}
    assert ids(run_checks()) == ["ragrec.E001"]


@pytest.mark.django_db
def test_database_checks_pass_with_pgvector_installed():
    assert run_checks(databases=["default"], tags=[checks.Tags.database]) == []


@pytest.mark.django_db
def test_scale_extensions_are_read_from_the_server():
    from ragrec_django.storage import SCALE_EXTENSIONS, scale_extensions

    offered = scale_extensions(using="default")
    assert set(offered) <= set(SCALE_EXTENSIONS)  # the embedded server offers none of them
    assert all(version is None or isinstance(version, str) for version in offered.values())


@pytest.mark.django_db
def test_an_offered_scale_extension_is_reported_as_I001(monkeypatch):
    from ragrec_django import storage

    monkeypatch.setattr(storage, "scale_extensions", lambda using: {"vchord": None, "citus": "12.1"})
    messages = run_checks(databases=["default"], tags=[checks.Tags.database])
    assert ids(messages) == ["ragrec.I001", "ragrec.I001"]
    assert messages[0].level == checks.INFO
    assert "'vchord' extension (available)" in messages[0].msg
    assert "'citus' extension (installed)" in messages[1].msg
    assert "Capacity plan" in messages[0].hint


@pytest.mark.django_db
def test_stored_dimension_mismatch_is_reported(settings):
    SpaceGeneration.objects.create(
        space="text", number=1, encoder="minilm", modality="text", encoder_version="other", dimension=7, status="active"
    )
    messages = run_checks(databases=["default"], tags=[checks.Tags.database])
    assert ids(messages) == ["ragrec.E009"]
    assert "stores 7-dimensional vectors but encoder 'minilm' produces 384" in messages[0].msg


@pytest.mark.django_db
def test_encoder_version_change_is_a_warning(settings):
    SpaceGeneration.objects.create(
        space="text",
        number=1,
        encoder="minilm",
        modality="text",
        encoder_version="old-model",
        dimension=384,
        status="active",
    )
    assert ids(run_checks(databases=["default"], tags=[checks.Tags.database])) == ["ragrec.W001"]


def test_encoders_are_built_once_per_process_without_loading_weights(settings):
    first = registry.get_encoder("minilm")
    assert registry.get_encoder("minilm") is first
    settings.RAGREC = {**settings.RAGREC, "HNSW": {"M": 8}}
    assert registry.get_encoder("minilm") is not first  # settings changed: rebuilt
