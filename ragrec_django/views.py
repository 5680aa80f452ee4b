"""Plain Django views of ragrec_django (no DRF needed): click tracking of recommendation links.

``click/<impression>/<key>/`` records a click on item ``key`` in the recommendation list
``impression`` (see ``services.experiments``) and redirects to that item's own page. It only
ever redirects to the URL the catalogue gives that item, and only when it is on this site: there
is no URL parameter to abuse as an open redirect. An unknown impression, or an item the
impression did not show, is a 404; an item whose URL is not on this site is a 400. A database
error while storing the click is logged and the shopper is still sent on.
"""

from __future__ import annotations

import logging

from django.http import HttpResponseBadRequest, HttpResponseNotFound, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .exceptions import ImpressionError
from .services import experiments
from .services.events import request_origin
from .services.visitors import visitor_for_request

logger = logging.getLogger(__name__)

ITEM_KEY_MAX_LENGTH = 64


@never_cache
@require_safe
def click(request, impression, key: str):
    if len(key) > ITEM_KEY_MAX_LENGTH or "\x00" in key:
        return HttpResponseNotFound("No such item in this recommendation list.", content_type="text/plain")
    try:
        shown, item = experiments.impression_for_click(impression, key)
    except ImpressionError as exc:
        return HttpResponseNotFound(str(exc), content_type="text/plain")
    url = item.url
    if not url or not url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        logger.warning(
            "ragrec: not redirecting a click to item %s: its URL %r is not on this site", item.key, url[:200]
        )
        return HttpResponseBadRequest("This item has no page on this site to go to.", content_type="text/plain")
    if request.method == "GET":  # HEAD (link checkers, previews) is not a click
        experiments.record_click(shown, item, visitor_for_request(request), origin=request_origin(request))
    return HttpResponseRedirect(url)
