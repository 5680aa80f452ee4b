"""The REST API in a host: check names what its URLs need (issue 21, item 3)."""

from django.apps import apps

from ragrec_django.checks import check_api_apps


def test_check_names_the_missing_app_when_the_api_is_included(monkeypatch):
    assert check_api_apps() == []  # the demo's settings have rest_framework
    installed = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "rest_framework" and installed(name))
    [error] = check_api_apps()
    assert error.id == "ragrec.E015" and '"rest_framework"' in error.hint


def test_check_names_the_schema_setting(settings):
    settings.REST_FRAMEWORK = {}
    [error] = check_api_apps()
    assert error.id == "ragrec.E015" and "drf_spectacular.openapi.AutoSchema" in error.hint
