"""Production settings example: the demo's settings hardened for a deployment behind HTTPS.

    DJANGO_SETTINGS_MODULE=shop_demo.settings_production \\
    SECRET_KEY=... ALLOWED_HOSTS=shop.example.com DATABASE_URL=postgres://... \\
    python manage.py check --deploy

Served by gunicorn behind a reverse proxy that terminates TLS and serves STATIC_ROOT and MEDIA_ROOT:

    DJANGO_SETTINGS_MODULE=shop_demo.settings_production ... \
    gunicorn -c shop_demo/gunicorn.conf.py shop_demo.wsgi

(shop_demo/gunicorn.conf.py: one gthread worker per core, torch on RAGREC["QUERY_THREADS"] threads in
each, models loaded before the first request, requests beyond what the workers can take answered 503
with Retry-After; see docs/production.md, "Serving under load").

Everything a deployment must choose comes from the environment; a missing required variable stops
start-up with a message naming it (``ImproperlyConfigured``), never a silent insecure default.

Required:
    SECRET_KEY            long random string (``python -c "import secrets; print(secrets.token_urlsafe(50))"``)
    ALLOWED_HOSTS         comma-separated host names the site answers to
Optional:
    DATABASE_URL          postgres://user:password@host:5432/name (PostgreSQL with pgvector); without it the
                          embedded server under var/postgres is used, which is for demos only
    CSRF_TRUSTED_ORIGINS  comma-separated origins (https://shop.example.com) when forms are posted from
                          another origin or through a proxy that changes the Host; default: https:// + each
                          ALLOWED_HOSTS entry
    REDIS_URL             cache (throttle counters, sessions) shared by every web process; default
                          redis://127.0.0.1:6379/1
    CELERY_BROKER_URL     the Celery broker (Redis); default: REDIS_URL's server, database 0
    SECURE_PROXY_SSL_HEADER  "1" when a proxy you control terminates TLS and sets X-Forwarded-Proto
                          (see below); default "1"
    SECURE_HSTS_SECONDS   default one year; set a small value first while you check every subdomain
    NUM_PROXIES           proxies in front of Django that append to X-Forwarded-For (DRF throttling
                          identifies clients by IP); default 1
    DJANGO_LOG_LEVEL      default INFO
    RAGREC_QUERY_THREADS  torch CPU threads per web process for query encoding; default 1 (see
                          docs/production.md); WEB_CONCURRENCY and SHOP_DEMO_MAX_* size gunicorn

See docs/production.md for the ragrec settings a shop sets (RAGREC, Celery routing to GPU workers,
throttling, permissions).
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .settings import *  # noqa: F401,F403  (the demo's apps, middleware, templates, RAGREC...)
from .settings import DATABASES, RAGREC, REST_FRAMEWORK, VAR_DIR


def env(name: str, default: str | None = None, *, required: bool = False) -> str:
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if required:
        raise ImproperlyConfigured(
            "The environment variable %s is required by shop_demo.settings_production (see docs/production.md)." % name
        )
    return default or ""


def env_list(name: str, default: str = "", *, required: bool = False) -> list[str]:
    return [part.strip() for part in env(name, default, required=required).split(",") if part.strip()]


DEBUG = False
SECRET_KEY = env("SECRET_KEY", required=True)
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure"):
    raise ImproperlyConfigured("SECRET_KEY must be a long random string (at least 50 characters, 5 distinct).")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", required=True)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS") or ["https://%s" % host.lstrip(".") for host in ALLOWED_HOSTS]

# The demo-only pages stay off whatever the environment says.
SHOP_DEMO_ONE_CLICK_LOGIN = False
SHOP_DEMO_SERVE_MEDIA = False

# --- HTTPS -----------------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = int(env("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# TLS usually ends at a reverse proxy (nginx, a load balancer) that talks plain HTTP to gunicorn. Django
# then learns that the original request was HTTPS from X-Forwarded-Proto, which it trusts only because of
# this setting: keep it only when the proxy always sets (or strips and overwrites) that header and
# clients cannot reach Django except through it, or anyone could claim "https". Set
# SECURE_PROXY_SSL_HEADER=0 when Django itself terminates TLS.
if env("SECURE_PROXY_SSL_HEADER", "1") == "1":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Database, cache, sessions, Celery --------------------------------------------------------------
# DATABASES comes from the demo's settings: DATABASE_URL when set (ragrec_django.embedded.database_settings).
# Keep connections open between requests (behind PgBouncer in transaction mode, set this to 0).
DATABASES["default"]["CONN_MAX_AGE"] = int(env("CONN_MAX_AGE", "60"))
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/1")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "shop",
        "TIMEOUT": 300,
    }
}
SESSION_ENGINE = "shop_demo.sessions.cached_db"  # Django's cached_db, refusing keys it could not issue
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL.rsplit("/", 1)[0] + "/0")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(env("CELERY_VISIBILITY_TIMEOUT", "3600"))}
CELERY_TASK_ALWAYS_EAGER = False
# Model work goes to GPU workers (celery -A shop_demo worker -Q gpu --concurrency 1); the default
# queue ("celery", CPU workers) keeps everything else.
CELERY_TASK_ROUTES = {
    "ragrec_django.tasks.encode_items_task": {"queue": "gpu"},
    "ragrec_django.tasks.generate_descriptions_task": {"queue": "gpu"},
    "ragrec_django.tasks.finetune_clip_task": {"queue": "gpu"},
}

STATIC_ROOT = env("STATIC_ROOT", str(VAR_DIR / "static"))

# --- Query encoding in the web processes ------------------------------------------------------------
# One torch thread per gunicorn worker (one worker per core): concurrent searches run side by side instead
# of every process fighting for every core (docs/production.md, "Serving under load").
RAGREC = {**RAGREC, "QUERY_THREADS": int(env("RAGREC_QUERY_THREADS", "1"))}

# --- REST API --------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],  # no browsable API in production
    "NUM_PROXIES": int(env("NUM_PROXIES", "1")),
    # Django's own request refusals (body over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields) as JSON 4xx.
    "EXCEPTION_HANDLER": "ragrec_django.api.exceptions.exception_handler",
}

# --- Logging ---------------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "django": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", "INFO"), "propagate": False},
        "django.security": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "ragrec_django": {"handlers": ["console"], "level": env("RAGREC_LOG_LEVEL", "INFO"), "propagate": False},
        "celery": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
