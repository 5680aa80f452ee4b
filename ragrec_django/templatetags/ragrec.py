"""Template tags for recommendations: ``{% load ragrec %}``.

Simple tags return a ``RecommendationList`` (iterable; each entry has ``item``,
``score``, ``reason``, ``reasons``, ``components``) for custom markup::

    {% ragrec_similar product k=4 config="diverse" as recs %}
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

Measurement and A/B tests (``ragrec_django.services.experiments``). Without ``config`` a tag
serves the visitor's variant of the experiment covering its recommender (``RAGREC["EXPERIMENTS"]``),
else ``"default"``; naming ``config`` opts out. ``ragrec_render`` records one impression per list
it renders and its links go through the click-tracking redirect (``ragrec_api:click`` or
``ragrec:click``, whichever URLs the host mounts; the item's own URL when neither is). Custom
markup gets the same with::

    {% for r in recs %}<a href="{% ragrec_click_url recs r %}">{{ r.item.title }}</a>{% endfor %}

(the first ``ragrec_click_url`` of a list records its impression; ``{% ragrec_impression recs as
id %}`` records it and gives its id, e.g. for a ``data-`` attribute). Recording never breaks the
page: a database error is logged.

Descriptions. With ``RAGREC["PUBLISH_TO_ITEM"] = False`` an approved description is published
only in ragrec_django, not written to the shop's item; show it with::

    {% ragrec_description product %}

(the current published text as escaped HTML paragraphs, nothing when none is published).

A recommendation that cannot be computed (unknown item, a space not encoded
yet, a bad configuration, any other failure) never breaks the page: the tag
logs the problem (logger ``ragrec_django.templatetags``) and returns an empty
list, which ``ragrec_render`` renders as nothing.
"""

from __future__ import annotations

import dataclasses
import logging

from django import template
from django.db import models
from django.urls import NoReverseMatch, reverse
from django.utils.html import linebreaks
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from ..adapters import IMAGE_FIELDS, get_adapter
from ..exceptions import BadQuery
from ..models import Impression, Item
from ..services import descriptions, recommend, serving
from ..services.encoding import valid_host_pks
from ..services.recommend import RecommendationList, Visitor
from ..services.visitors import for_you, visitor_for_request

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
CLICK_URL_NAMES = ("ragrec_api:click", "ragrec:click")
TRACKING_ATTRIBUTE = "ragrec_tracking"
SHOWN_ATTRIBUTE = "_ragrec_impressions"


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
        raise BadQuery("k must be an integer, got %r." % (k,)) from None


def _safely(context, recommender: str, config, call) -> RecommendationList:
    """``call(config)`` with the config to serve (explicit, else the visitor's variant's), never raising.

    The list remembers how it was served (``TRACKING_ATTRIBUTE``) for its impression.
    """
    served = serving.serve_for_page(recommender, _visitor(context), config, call, logger=logger)
    if isinstance(served.result, RecommendationList):
        setattr(served.result, TRACKING_ATTRIBUTE, served)
    return served.result


def _visitor(context) -> Visitor:
    return visitor_for_request(context.get("request"))


@register.simple_tag(takes_context=True)
def ragrec_similar(context, item, k=None, config=None):
    """Items similar to ``item`` (text and image similarity)."""
    return _safely(context, "similar", config, lambda c: recommend.similar_items(_key(item), k=_k(k), config=c))


@register.simple_tag(takes_context=True)
def ragrec_bought_together(context, item, k=None, config=None):
    """Items bought together with ``item`` (baskets, approved complements, then content)."""
    return _safely(
        context, "bought_together", config, lambda c: recommend.bought_together(_key(item), k=_k(k), config=c)
    )


@register.simple_tag(takes_context=True)
def ragrec_bought_together_basket(context, items, k=None, config=None):
    """Items bought together with a basket (``items``: products or their ids), never the basket's own items."""
    keys = [_key(item) for item in (items or [])]
    return _safely(
        context, "bought_together", config, lambda c: recommend.bought_together_for_basket(keys, k=_k(k), config=c)
    )


@register.simple_tag(takes_context=True)
def ragrec_for_you(context, k=None, config=None):
    """Recommendations from the visitor's history; trending for a visitor without one."""
    return _safely(context, "for_you", config, lambda c: for_you(_visitor(context), k=_k(k), config=c))


@register.simple_tag(takes_context=True)
def ragrec_recently_viewed(context, k=None, config=None):
    """The visitor's recently viewed items, newest first."""
    return _safely(
        context, "recently_viewed", config, lambda c: recommend.recently_viewed(_visitor(context), k=_k(k), config=c)
    )


@register.simple_tag(takes_context=True)
def ragrec_buy_again(context, k=None, config=None):
    """Items the visitor bought before."""
    return _safely(context, "buy_again", config, lambda c: recommend.buy_again(_visitor(context), k=_k(k), config=c))


@register.simple_tag(takes_context=True)
def ragrec_trending(context, k=None, config=None, category=None):
    """Trending items, optionally of one category."""
    return _safely(
        context, "trending", config, lambda c: recommend.trending(k=_k(k), config=c, category=category or None)
    )


@register.simple_tag(takes_context=True)
def ragrec_search(context, query, k=None, config=None):
    """Hybrid search results for ``query`` (``recs.query`` is the typo-corrected query)."""
    return _safely(context, "search", config, lambda c: recommend.search(str(query or ""), k=_k(k), config=c))


@register.simple_tag
def ragrec_description(item) -> SafeString:
    """The item's current published description as HTML paragraphs; "" when none is published.

    Published text is plain text (nh3-sanitised when drafted, then stripped of markup), so it is
    escaped here: anything in it that looks like markup is shown as text, never rendered.
    """
    key = _key(item)
    text = descriptions.published_text(key) if key else None
    return mark_safe(linebreaks(text, autoescape=True)) if text else SafeString("")


# ---------------------------------------------------------------- impressions and click tracking


def _shown(context) -> dict:
    """Impressions recorded in this request (or, without a request, this template render), by list.

    Kept per request rather than on the list: a list a view caches and shows to many visitors
    is one impression per page it is shown on, each for its own visitor.
    """
    request = context.get("request")
    if request is not None:
        try:
            return request.__dict__.setdefault(SHOWN_ATTRIBUTE, {})
        except AttributeError:  # pragma: no cover - a request-like object without a __dict__
            pass
    return context.render_context.setdefault(SHOWN_ATTRIBUTE, {})


def _impression(context, recommendations):
    """Record the list's impression once per page (however often it is rendered or linked); its id, or None."""
    if not isinstance(recommendations, RecommendationList):
        return None  # a plain list: no recommender to measure
    shown = _shown(context)
    if id(recommendations) in shown:
        return shown[id(recommendations)][1]
    tracking = getattr(recommendations, TRACKING_ATTRIBUTE, None)
    if tracking is None:  # a list made elsewhere: in no experiment
        served = serving.Served.outside_experiments(recommendations, _visitor(context))
    else:
        served = dataclasses.replace(tracking, result=recommendations)
    impression_id = serving.record_impression(served, channel=Impression.Channel.TEMPLATE, logger=logger)
    shown[id(recommendations)] = (recommendations, impression_id)  # the list is kept, so its id is not reused
    return impression_id


def _click_url(impression_id, item) -> str:
    """The tracking URL of ``item`` in an impression; the item's own URL without one (or without click URLs)."""
    url = getattr(item, "url", "") or ""
    if not url or impression_id is None:
        return url
    for name in CLICK_URL_NAMES:
        try:
            return reverse(name, args=[impression_id, item.key])
        except NoReverseMatch:
            continue
    return url


@register.simple_tag(takes_context=True)
def ragrec_impression(context, recommendations):
    """Record the impression of a list shown with custom markup (once); its id ("" when nothing was recorded)."""
    return _impression(context, recommendations) or ""


@register.simple_tag(takes_context=True)
def ragrec_click_url(context, recommendations, entry):
    """Link to an entry of ``recommendations`` through the click-tracking redirect (records the impression)."""
    item = getattr(entry, "item", entry)
    return _click_url(_impression(context, recommendations), item)


@register.inclusion_tag("ragrec/recommendations.html", takes_context=True)
def ragrec_render(context, recommendations, title=None, level=2, currency="", section_id=None):
    """A titled, accessible list of cards (title, picture, reason, price, stock); nothing when empty."""
    recommender = getattr(recommendations, "recommender", "") or ""
    try:
        items = list(recommendations or ())
    except TypeError:
        items = []
    impression_id = _impression(context, recommendations) if items else None
    title = title or DEFAULT_TITLES.get(recommender, "Recommendations")
    try:
        level = min(max(int(level), 2), 6)
    except (TypeError, ValueError):
        level = 2
    objects = _host_objects([entry.item.key for entry in items]) if items else {}
    entries = [
        {
            "item": entry.item,
            "url": _click_url(impression_id, entry.item),
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
        "impression_id": impression_id or "",
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
