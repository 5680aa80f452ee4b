"""WSGI entry point of the demo shop (served by gunicorn: ``gunicorn -c shop_demo/gunicorn.conf.py shop_demo.wsgi``).

* While ``DEBUG`` (the demo), static files (the admin's CSS and scripts, the shop's own) are served
  from the apps' ``static`` folders by Django's ``StaticFilesHandler``, as ``runserver`` does; a
  deployment runs ``collectstatic`` and lets its web server serve ``STATIC_ROOT``.
* With ``SHOP_DEMO_MAX_ACTIVE`` set (``shop_demo/gunicorn.conf.py`` sets it), each process runs at
  most that many requests at once, ``SHOP_DEMO_MAX_WAITING`` more wait up to ``SHOP_DEMO_MAX_WAIT``
  seconds, and the rest are answered 503 with ``Retry-After`` (``ragrec_django.admission``).
"""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

from ragrec_django.admission import ConcurrencyLimit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")


def build_application():
    application = get_wsgi_application()
    if os.environ.get("SHOP_DEMO_MAX_ACTIVE"):
        application = ConcurrencyLimit(
            application,
            max_active=int(os.environ["SHOP_DEMO_MAX_ACTIVE"]),
            max_waiting=int(os.environ.get("SHOP_DEMO_MAX_WAITING", "0")),
            max_wait=float(os.environ.get("SHOP_DEMO_MAX_WAIT", "5")),
        )
    if settings.DEBUG and "django.contrib.staticfiles" in settings.INSTALLED_APPS:
        application = StaticFilesHandler(application)  # outside the limit: a stylesheet never waits for a search
    return application


application = build_application()
