"""shop_demo: a small Django shop that hosts ragrec_django."""

from .celery import app as celery_app

__all__ = ["celery_app"]
