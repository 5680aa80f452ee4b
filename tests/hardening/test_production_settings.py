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
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


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
        "'gpu': s.CELERY_TASK_ROUTES['ragrec_django.tasks.encode_items_task'], 'query_threads': s.RAGREC['QUERY_THREADS'],"
        "'wsgi': s.WSGI_APPLICATION}))"
    )
    result = manage(
        "shell",
        "-c",
        code,
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="shop.example.com,.example.org",
        DJANGO_DEBUG="1",
        SHOP_DEMO_ONE_CLICK_LOGIN="1",
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "debug": False,
        "hosts": ["shop.example.com", ".example.org"],
        "csrf": ["https://shop.example.com", "https://example.org"],
        "ssl": True,
        "hsts": 31536000,
        "proxy": ["HTTP_X_FORWARDED_PROTO", "https"],
        "cookies": [True, True],
        "cache": "django.core.cache.backends.redis.RedisCache",
        "one_click": False,
        "renderers": ["rest_framework.renderers.JSONRenderer"],
        "handler": "ragrec_django.api.exceptions.exception_handler",
        "gpu": {"queue": "gpu"},
        "query_threads": 1,
        "wsgi": "shop_demo.wsgi.application",
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


@pytest.mark.django_db(transaction=True)
def test_the_production_example_is_served_by_gunicorn_with_the_demo_configuration(settings, tmp_path):
    """gunicorn -c shop_demo/gunicorn.conf.py shop_demo.wsgi with the production settings: the API answers over
    (proxied) HTTPS, plain HTTP is redirected, and static files are left to the web server in front."""
    from tests.serving.server import DemoServer

    redis_url = os.environ.get("RAGREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
    server = DemoServer(
        tmp_path,
        settings.DATABASES["default"],
        DJANGO_SETTINGS_MODULE="shop_demo.settings_production",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="shop.example.com",
        REDIS_URL=redis_url,
        WEB_CONCURRENCY="1",
    )
    try:
        server.wait_until_serving()
        https = {"Host": "shop.example.com", "X_Forwarded_Proto": "https", "Accept": "application/json"}
        status, headers, body = server.get("/api/recommend/trending/", **https)
        assert status == 200 and headers["server"] == "gunicorn" and body.startswith(b"{"), body[:500]
        status, headers, _ = server.get("/api/recommend/trending/", Host="shop.example.com")
        assert status == 301 and headers["location"].startswith("https://shop.example.com/")
        assert server.get("/static/admin/css/base.css", **https)[0] == 404
    finally:
        assert server.stop() == 0
