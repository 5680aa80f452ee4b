"""shop_demo.settings_production passes ``manage.py check --deploy`` and refuses to start half-configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "k3Yv9-production-test-secret-" + "x7Qp2Lm8Rt4Wz6Nb1Vc5" * 2


def manage(*args, **environ):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    env.pop("SECRET_KEY", None), env.pop("ALLOWED_HOSTS", None)
    env.update(DJANGO_SETTINGS_MODULE="shop_demo.settings_production", **environ)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_check_deploy_reports_no_issues():
    result = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY=SECRET, ALLOWED_HOSTS="shop.example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_the_settings_are_the_secure_ones():
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({"
        "'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS, 'csrf': s.CSRF_TRUSTED_ORIGINS, 'ssl': s.SECURE_SSL_REDIRECT,"
        "'hsts': s.SECURE_HSTS_SECONDS, 'proxy': s.SECURE_PROXY_SSL_HEADER, 'cookies': [s.SESSION_COOKIE_SECURE,"
        " s.CSRF_COOKIE_SECURE], 'cache': s.CACHES['default']['BACKEND'], 'one_click': s.SHOP_DEMO_ONE_CLICK_LOGIN,"
        "'renderers': s.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'], 'handler': s.REST_FRAMEWORK['EXCEPTION_HANDLER'],"
        "'gpu': s.CELERY_TASK_ROUTES['ragrec_django.tasks.encode_items_task']}))"
    )
    result = manage("shell", "-c", code, SECRET_KEY=SECRET, ALLOWED_HOSTS="shop.example.com,.example.org",
                    DJANGO_DEBUG="1", SHOP_DEMO_ONE_CLICK_LOGIN="1")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "debug": False, "hosts": ["shop.example.com", ".example.org"],
        "csrf": ["https://shop.example.com", "https://example.org"], "ssl": True, "hsts": 31536000,
        "proxy": ["HTTP_X_FORWARDED_PROTO", "https"], "cookies": [True, True],
        "cache": "django.core.cache.backends.redis.RedisCache", "one_click": False,
        "renderers": ["rest_framework.renderers.JSONRenderer"], "handler": "ragrec_django.api.exceptions.exception_handler",
        "gpu": {"queue": "gpu"},
    }


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"ALLOWED_HOSTS": "shop.example.com"}, "The environment variable SECRET_KEY is required"),
        ({"SECRET_KEY": SECRET}, "The environment variable ALLOWED_HOSTS is required"),
        ({"SECRET_KEY": "short", "ALLOWED_HOSTS": "shop.example.com"}, "SECRET_KEY must be a long random string"),
    ],
)
def test_missing_or_weak_settings_stop_start_up_with_a_clear_error(environ, message):
    result = manage("check", **environ)
    assert result.returncode != 0
    assert "ImproperlyConfigured: " + message in result.stderr
