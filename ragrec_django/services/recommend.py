"""Recommendation services: one API used by the REST endpoints and the template tags.

Each function retrieves candidates (pgvector, full-text search, interaction
counts), ranks them with ``ragrec_django.ranking`` under a named serving
configuration, and returns a ``RecommendationList`` whose entries carry the
item, a score, a human-readable reason and the score components. Content-based
recommenders live here; those built from interactions in ``history``.
"""

from __future__ import annotations

import dataclasses

from .. import registry, storage
from ..conf import ragrec_settings
from ..ml.images import ImageDecodeError
from ..ranking.fusion import weighted_score_fusion
from .history import (
    bought_together,
    bought_together_for_basket,
    buy_again,
    for_you,
    propose_complements,
    recently_viewed,
    trending,
)
from .item_candidates import learned_similar
from .query_vectors import query_cache, text_query_vector
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
    query_encoder_matches,
    serving_rules,
    space_ready,
)
from .search import SearchResults, search

#: The query encoder's cache and entry point (``services.query_vectors``), under their former names here.
_text_query_vector = text_query_vector

# ---------------------------------------------------------------- recommenders


@storage.with_generation_snapshot
def similar_items(item_key: str, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items like ``item_key``: text and image similarity fused with ``SIMILAR_WEIGHTS``."""
    k = cap_k(k)
    learned = learned_similar(item_key, k=k, config=config)  # None unless RANKER "similar" is "learned" and serves
    if learned is not None:
        return learned
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
        lists[space] = candidates_from(
            [(n.item_id, 1.0 - n.distance) for n in found], space, "similar to %s" % anchor.title
        )
        weights[space] = float(weight)
    if not lists:
        raise storage.SpaceNotReady("Item %r has no embeddings yet; run ragrec_reindex." % anchor.key)
    fused = weighted_score_fusion(lists, weights)
    return finish("similar", config, fused, k, rules=rules)


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
    "BadQuery",
    "ImageDecodeError",
    "ItemNotFound",
    "Recommendation",
    "RecommendationError",
    "RecommendationList",
    "UnknownServingConfig",
    "Visitor",
    "bought_together",
    "bought_together_for_basket",
    "buy_again",
    "for_you",
    "propose_complements",
    "query_cache",
    "recently_viewed",
    "search",
    "search_by_image",
    "SearchResults",
    "serving_rules",
    "similar_items",
    "trending",
]
