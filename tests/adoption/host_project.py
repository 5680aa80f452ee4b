"""A throwaway host project written from the README's snippets (not from shop_demo), with a database of its own.

``HostProject(root, database_url, ragrec_options)`` writes ``shopsite`` (settings, URLs, a Celery app) and
``shop`` (a ``Product`` with the field names ``name``, ``body``, ``cost``, ``section``, ``picture``,
``available`` and the adapter subclass the README shows for them); ``manage(...)`` runs ``python -m django``
in a subprocess with only that project and this repository's package on the path.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[2]

SETTINGS = """
import os
from pathlib import Path

from ragrec_django.embedded import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "walk-test"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
    "django.contrib.messages", "django.contrib.staticfiles",
    "rest_framework", "drf_spectacular",
    "shop",
    "ragrec_django",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "shopsite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": database_settings(BASE_DIR / "var" / "postgres")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
STATIC_URL = "static/"
MEDIA_ROOT = BASE_DIR / "media"
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER") == "1"

RAGREC = %(ragrec)s
"""

URLS = """
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/recommend/", include("ragrec_django.api.urls")),
]
"""

CELERY_APP = """
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")
app = Celery("shopsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

MODELS = """
from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    cost = models.DecimalField(max_digits=10, decimal_places=2)
    section = models.CharField(max_length=100)
    picture = models.ImageField(upload_to="products", blank=True)
    available = models.BooleanField(default=True)

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return "/products/%d/" % self.pk
"""

ADAPTER = """
from ragrec_django.adapters import ItemAdapter


class ShopAdapter(ItemAdapter):
    def get_category(self, item):
        return item.section

    def get_price(self, item):
        return item.cost
"""


def ragrec_settings(encoders: dict, spaces: dict, **more) -> dict:
    """The README's RAGREC block for the walk's model and adapter."""
    return {"ITEM_MODEL": "shop.Product", "ADAPTER": "shop.adapters.ShopAdapter", "ENCODERS": encoders,
            "SPACES": spaces, **more}  # fmt: skip


class HostProject:
    def __init__(self, root: Path, database_url: str, ragrec: dict, pythonpath: list[str] | None = None):
        self.root = Path(root)
        self.database_url = database_url
        self.pythonpath = [str(self.root), *(pythonpath or [str(REPO)])]
        files = {
            "shopsite/__init__.py": "from .celery import app as celery_app\n",
            "shopsite/settings.py": SETTINGS % {"ragrec": repr(ragrec)},
            "shopsite/urls.py": URLS,
            "shopsite/celery.py": CELERY_APP,
            "shop/__init__.py": "",
            "shop/models.py": MODELS,
            "shop/adapters.py": ADAPTER,
            "shop/migrations/__init__.py": "",
        }
        for name, text in files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.lstrip())

    def env(self, **more) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_", "SHOP_DEMO"))}
        env.update(
            PYTHONPATH=os.pathsep.join(self.pythonpath), DJANGO_SETTINGS_MODULE="shopsite.settings",
            DATABASE_URL=self.database_url, PYTHONUNBUFFERED="1", **more,
        )  # fmt: skip
        return env

    def manage(self, *args, timeout: float = 300, **env) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "django", *args], timeout=timeout, **env)

    def python(self, script: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
        """Run ``script`` after ``django.setup()`` in a subprocess."""
        code = "import django\ndjango.setup()\n" + script
        return self.run([sys.executable, "-c", code], timeout=timeout, **env)

    def run(self, command: list[str], timeout: float, **env) -> subprocess.CompletedProcess:
        return subprocess.run(
            command, cwd=self.root, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )


@contextlib.contextmanager
def scratch_database(settings_dict: dict, name: str):
    """A new, empty database on the server of ``settings_dict``; yields its ``DATABASE_URL``, drops it after."""
    import psycopg

    host = settings_dict["HOST"] or settings_dict["OPTIONS"].get("host", "")
    params = dict(dbname="postgres", user=settings_dict["USER"], host=host, port=settings_dict["PORT"] or None,
                  password=settings_dict["PASSWORD"] or None)  # fmt: skip
    with psycopg.connect(**params, autocommit=True) as connection:
        connection.execute('DROP DATABASE IF EXISTS "%s"' % name)
        connection.execute('CREATE DATABASE "%s"' % name)
    url = "postgres://%s@%s/%s" % (quote(settings_dict["USER"]), "", name)
    if host.startswith("/"):
        url += "?host=" + quote(host)
    elif host:
        url = "postgres://%s:%s@%s:%s/%s" % (
            quote(settings_dict["USER"]),
            quote(settings_dict["PASSWORD"] or ""),
            host,
            settings_dict["PORT"] or 5432,
            name,
        )
    try:
        yield url
    finally:
        with psycopg.connect(**params, autocommit=True) as connection:
            connection.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
