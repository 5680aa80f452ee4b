"""The REST API (DRF, the ``api`` extra) is a leaf: the template tags, the click view and the services import
neither ``ragrec_django.api`` nor ``rest_framework``, so a host without DRF uses them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = """
from shop_demo.settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("rest_framework", "drf_spectacular")]  # noqa: F405
ROOT_URLCONF = "ragrec_django.urls"
"""
CHECK = """
import sys
import django

django.setup()
import ragrec_django.exceptions, ragrec_django.services.serving, ragrec_django.services.visitors
import ragrec_django.templatetags.ragrec, ragrec_django.urls, ragrec_django.views
from django.template import engines

engines["django"].from_string("{% load ragrec %}")
print(sorted(name for name in sys.modules if name.split(".")[0] in ("rest_framework", "drf_spectacular")
             or name.startswith("ragrec_django.api")))
"""


def test_tags_views_and_services_import_no_drf(tmp_path):
    (tmp_path / "settings_without_drf.py").write_text(SETTINGS)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings_without_drf",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
