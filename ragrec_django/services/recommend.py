"""Recommendation services: one API used by the REST endpoints and the template tags.

Each function retrieves candidates (pgvector, full-text search, interaction
counts), ranks them with ``ragrec_django.ranking`` under a named serving
configuration, and returns a ``RecommendationList`` whose entries carry the
item, a score, a human-readable reason and the score components. Content-based
recommenders live here; those built from interactions in ``history``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from decimal import Decimal

import numpy as np

from .. import registry, storage
from ..conf import ragrec_settings
from ..ml.images import ImageDecodeError
from ..ranking.fusion import reciprocal_rank_fusion, weighted_score_fusion
from .history import (
    bought_together,
    bought_together_for_basket,
    buy_again,
    for_you,
    propose_complements,
    recently_viewed,
    trending,
)
from .results import (
    BadQuery,
    ItemNotFound,
    Recommendation,
    RecommendationError,
    RecommendationList,
    UnknownServingConfig,
    Visitor,
    anchor_item,
    candidates_from,
    cap_k,
    finish,
    item_filter,
    narrowed,
    query_encoder_matches,
    serving_rules,
    space_ready,
)

# ---------------------------------------------------------------- query encoding


class _QueryCache:
    """Per-process LRU cache of query embeddings (text search runs in the web process)."""

    def __init__(self):
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, space: str, text: str) -> np.ndarray:
        key = (space, registry.get_space(space).encoder.version, text)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        vector = registry.get_space(space).encoder.encode_texts([text])[0]
        with self._lock:
            self._entries[key] = vector
            while len(self._entries) > int(ragrec_settings.QUERY_CACHE_SIZE):
                self._entries.popitem(last=False)
        return vector


query_cache = _QueryCache()


def _text_query_vector(space: str, text: str) -> np.ndarray:
    """Embed a text query for ``space``: its own encoder's text side (the CLIP text tower for "image")."""
    return query_cache.get(space, text)


# ---------------------------------------------------------------- recommenders


@storage.with_generation_snapshot
def similar_items(item_key: str, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items like ``item_key``: text and image similarity fused with ``SIMILAR_WEIGHTS``."""
    k = cap_k(k)
    anchor = anchor_item(item_key)
    rules = serving_rules(config)
    filters = dataclasses.replace(
        item_filter(rules, exclude_ids={anchor.id}),
        exclude_group_keys=(anchor.group_key,) if anchor.group_key else (),
    )
    lists, weights = {}, {}
    for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items():
        if not weight or not space_ready(space):
            continue
        found = storage.nearest_to_item(space, anchor.id, k * 4, filters=filters)
        if found is None:
            continue
        lists[space] = candidates_from([(n.item_id, 1.0 - n.distance) for n in found], space, "similar to %s" % anchor.title)
        weights[space] = float(weight)
    if not lists:
        raise storage.SpaceNotReady("Item %r has no embeddings yet; run ragrec_reindex." % anchor.key)
    fused = weighted_score_fusion(lists, weights)
    return finish("similar", config, fused, k, rules=rules)


@storage.with_generation_snapshot
def search(query: str, *, k: int | None = None, config: str = "default", min_price: Decimal | None = None,
           max_price: Decimal | None = None) -> RecommendationList:
    """Hybrid search: keyword (full-text, typo-corrected), MiniLM text and CLIP text->image, fused by RRF.

    ``min_price``/``max_price`` narrow the configuration's own price range (the shopping assistant's budget).
    """
    k = cap_k(k)
    query = (query or "").strip()
    if not query:
        raise BadQuery("The search query is empty.")
    if len(query) > 300:
        raise BadQuery("The search query is longer than 300 characters.")
    rules = serving_rules(config)
    filters = narrowed(item_filter(rules), min_price, max_price)
    weights = ragrec_settings.SEARCH_WEIGHTS
    depth = max(k * 4, 40)
    lists = {}
    keyword, corrected = storage.keyword_search(query, depth, filters=filters)
    reason = "matches '%s'" % corrected
    if weights.get("keyword"):
        lists["keyword"] = candidates_from(keyword, "keyword", reason)
    for space in ("text", "image"):
        if weights.get(space) and space_ready(space) and query_encoder_matches(space):
            found = storage.nearest(space, _text_query_vector(space, corrected), depth, filters=filters)
            lists[space] = candidates_from([(n.item_id, 1.0 - n.distance) for n in found], space, reason)
    fused = reciprocal_rank_fusion(lists, weights={name: float(weights[name]) for name in lists})
    return finish("search", config, fused, k, query=corrected, rules=rules)


@storage.with_generation_snapshot
def search_by_image(image: bytes, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items that look like the uploaded photo (CLIP image space)."""
    k = cap_k(k)
    if not space_ready("image"):
        raise storage.SpaceNotReady("Search by photo needs an encoded 'image' space (CLIP).")
    if not query_encoder_matches("image"):
        raise storage.SpaceNotReady("The 'image' space is being switched to another model; promote or roll back first.")
    encoder = registry.get_space("image").encoder
    result = encoder.encode_images([image])
    if result.errors:
        raise BadQuery("The upload is not a usable image: %s" % result.errors[0])
    rules = serving_rules(config)
    found = storage.nearest("image", result.vectors[0], k * 4, filters=item_filter(rules))
    candidates = candidates_from([(n.item_id, 1.0 - n.distance) for n in found], "image", "looks like your photo")
    return finish("photo", config, candidates, k, diversity_space="image", rules=rules)


__all__ = [
    "BadQuery", "ImageDecodeError", "ItemNotFound", "Recommendation", "RecommendationError", "RecommendationList",
    "UnknownServingConfig", "Visitor", "bought_together", "bought_together_for_basket", "buy_again", "for_you",
    "propose_complements", "recently_viewed", "search", "search_by_image", "serving_rules", "similar_items", "trending",
]
