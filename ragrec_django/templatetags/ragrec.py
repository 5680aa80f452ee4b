"""Template tags for recommendations: ``{% load ragrec %}``.

Simple tags return a ``RecommendationList`` (iterable; each entry has ``item``,
``score``, ``reason``, ``reasons``, ``components``) for custom markup::

    {% ragrec_similar product k=4 config="default" as recs %}
    {% ragrec_bought_together product k=4 as recs %}
    {% ragrec_for_you k=4 as recs %}             {# visitor: request.user, else the session key #}
    {% ragrec_recently_viewed k=4 as recs %}
    {% ragrec_buy_again k=4 as recs %}
    {% ragrec_trending k=4 category="Mugs" as recs %}
    {% ragrec_search query k=12 as recs %}

``product`` may be an instance of the shop's item model (its key comes from the
adapter), a ``ragrec_django.models.Item`` or a key. The visitor tags read
``request`` from the context (``django.template.context_processors.request``).

One inclusion tag renders a list with the overridable template
``ragrec/recommendations.html`` (a titled section of cards, each with its reason)::

    {% ragrec_render recs title="Similar items" level=2 currency="£" %}

A recommendation that cannot be computed (unknown item, a space not encoded
yet, a bad configuration, any other failure) never breaks the page: the tag
logs the problem (logger ``ragrec_django.templatetags``) and returns an empty
list, which ``ragrec_render`` renders as nothing.
"""

from __future__ import annotations

import logging

from django import template
from django.db import models, transaction
from django.utils.text import slugify

from .. import storage
from ..adapters import IMAGE_FIELDS, get_adapter
from ..api.visitors import for_you, visitor_for_request
from ..models import Item
from ..services import recommend
from ..services.encoding import valid_host_pks
from ..services.recommend import RecommendationList

logger = logging.getLogger("ragrec_django.templatetags")
register = template.Library()

DEFAULT_TITLES = {
    "similar": "Similar items",
    "bought_together": "Frequently bought together",
    "for_you": "Recommended for you",
    "trending": "Trending now",
    "recently_viewed": "Recently viewed",
    "buy_again": "Buy again",
    "search": "Search results",
    "photo": "Items like your photo",
}
EXPECTED_ERRORS = (recommend.RecommendationError, storage.SpaceNotReady, storage.SpaceMismatch)


def _key(item) -> str:
    if isinstance(item, Item):
        return item.key
    if isinstance(item, models.Model):
        return get_adapter().get_key(item)
    return "" if item is None else str(item)


def _k(k):
    if k is None or k == "":
        return None
    try:
        return int(k)
    except (TypeError, ValueError):
        raise recommend.BadQuery("k must be an integer, got %r." % (k,))


def _safely(recommender: str, config, call) -> RecommendationList:
    try:
        with transaction.atomic():  # a database error rolls back to here, not the whole request's transaction
            return call()
    except EXPECTED_ERRORS as exc:
        logger.warning("ragrec: no %s recommendations shown: %s", recommender, exc)
    except Exception:
        logger.exception("ragrec: %s recommendations failed", recommender)
    return RecommendationList(recommender=recommender, config=str(config))


def _visitor(context):
    return visitor_for_request(context.get("request"))


@register.simple_tag
def ragrec_similar(item, k=None, config="default"):
    """Items similar to ``item`` (text and image similarity)."""
    return _safely("similar", config, lambda: recommend.similar_items(_key(item), k=_k(k), config=config))


@register.simple_tag
def ragrec_bought_together(item, k=None, config="default"):
    """Items bought together with ``item`` (baskets, approved complements, then content)."""
    return _safely("bought_together", config, lambda: recommend.bought_together(_key(item), k=_k(k), config=config))


@register.simple_tag(takes_context=True)
def ragrec_for_you(context, k=None, config="default"):
    """Recommendations from the visitor's history; trending for a visitor without one."""
    return _safely("for_you", config, lambda: for_you(_visitor(context), k=_k(k), config=config))


@register.simple_tag(takes_context=True)
def ragrec_recently_viewed(context, k=None, config="default"):
    """The visitor's recently viewed items, newest first."""
    return _safely("recently_viewed", config, lambda: recommend.recently_viewed(_visitor(context), k=_k(k), config=config))


@register.simple_tag(takes_context=True)
def ragrec_buy_again(context, k=None, config="default"):
    """Items the visitor bought before."""
    return _safely("buy_again", config, lambda: recommend.buy_again(_visitor(context), k=_k(k), config=config))


@register.simple_tag
def ragrec_trending(k=None, config="default", category=None):
    """Trending items, optionally of one category."""
    return _safely("trending", config, lambda: recommend.trending(k=_k(k), config=config, category=category or None))


@register.simple_tag
def ragrec_search(query, k=None, config="default"):
    """Hybrid search results for ``query`` (``recs.query`` is the typo-corrected query)."""
    return _safely("search", config, lambda: recommend.search(str(query or ""), k=_k(k), config=config))


@register.inclusion_tag("ragrec/recommendations.html")
def ragrec_render(recommendations, title=None, level=2, currency="", section_id=None):
    """A titled, accessible list of cards (title, picture, reason, price, stock); nothing when empty."""
    recommender = getattr(recommendations, "recommender", "") or ""
    try:
        items = list(recommendations or ())
    except TypeError:
        items = []
    title = title or DEFAULT_TITLES.get(recommender, "Recommendations")
    try:
        level = min(max(int(level), 2), 6)
    except (TypeError, ValueError):
        level = 2
    objects = _host_objects([entry.item.key for entry in items]) if items else {}
    entries = [
        {
            "item": entry.item,
            "reason": entry.reason,
            "reasons": entry.reasons,
            "score": entry.score,
            "object": objects.get(entry.item.key),
            "image_url": _image_url(objects.get(entry.item.key)),
        }
        for entry in items
    ]
    return {
        "recommendations": recommendations,
        "recommender": recommender,
        "entries": entries,
        "title": title,
        "level": level,
        "currency": currency,
        "section_id": section_id or "ragrec-%s-%s" % (slugify(recommender) or "list", slugify(title) or "items"),
    }


def _host_objects(keys: list[str]) -> dict[str, object]:
    """The shop's items for ``keys`` in one query (for pictures), by key; empty on any problem."""
    try:
        adapter = get_adapter()
        found = adapter.get_queryset().in_bulk(valid_host_pks(keys))
        return {adapter.get_key(obj): obj for obj in found.values()}
    except Exception:
        logger.exception("ragrec: could not load the shop's items %s", keys[:10])
        return {}


def _image_url(obj) -> str:
    for name in IMAGE_FIELDS:
        value = getattr(obj, name, None) if obj is not None else None
        if value:
            try:
                return value.url
            except Exception:  # no file, or a storage without URLs
                return ""
    return ""
