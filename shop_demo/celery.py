"""Celery application of the demo shop.

The broker is ``CELERY_BROKER_URL`` (e.g. redis://127.0.0.1:6379/0) when set,
otherwise a SQLite file under var/ (kombu's SQLAlchemy transport is not used:
see settings.CELERY_BROKER_URL for the default).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")

app = Celery("shop_demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
