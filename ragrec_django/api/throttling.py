"""Throttling of the REST API: DRF scoped throttles with rates and cache from ``RAGREC``.

Each view names a scope (``throttle_scope``): ``ragrec`` for reads, ``ragrec_photo``
for search by photo (it encodes an image per request) and ``ragrec_events`` for
event posts. Rates come from ``RAGREC["API_THROTTLE_RATES"]`` (a scope left out
keeps its default; ``None`` switches a scope's throttle off), read on each request
so ``override_settings`` applies at once. Counters live in the Django cache
named by ``RAGREC["API_THROTTLE_CACHE"]``: a cache shared by all web processes
(Redis, Memcached, database) makes the limits hold across processes, a
per-process ``LocMemCache`` multiplies them by the number of processes, and
``DummyCache`` disables throttling.

Clients are identified by the user id when signed in, else by the address the server really sees
(``services.events.client_address``): ``REMOTE_ADDR``, unless ``REST_FRAMEWORK["NUM_PROXIES"]`` says how
many proxies of yours stand in front, and then the address the outermost of them saw, read from the right
of ``X-Forwarded-For``. DRF itself, with ``NUM_PROXIES`` unset, identifies a client by the whole
``X-Forwarded-For`` header, which the client writes: a new value per request would reset its counter. The
system check ``ragrec.W003`` warns when the settings trust a proxy's headers but set no proxy count.
"""

from __future__ import annotations

from django.core.cache import caches
from rest_framework.throttling import ScopedRateThrottle

from ..conf import ragrec_settings
from ..services.events import client_address


class RagrecScopedRateThrottle(ScopedRateThrottle):
    """A ``ScopedRateThrottle`` reading its rates and cache from ``RAGREC``."""

    @property
    def cache(self):
        return caches[ragrec_settings.API_THROTTLE_CACHE]

    def get_rate(self):
        return ragrec_settings.API_THROTTLE_RATES.get(self.scope)  # over the defaults, checked (conf.py)

    def get_ident(self, request):
        return client_address(request)

    def get_cache_key(self, request, view):
        key = super().get_cache_key(request, view)
        return None if key is None else "ragrec:" + key
