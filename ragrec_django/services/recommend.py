"""Recommendation services: one API used by the REST endpoints and the template tags.

Each function retrieves candidates (pgvector, full-text search, interaction
counts), ranks them with ``ragrec_django.ranking`` under a named serving
configuration, and returns a ``RecommendationList`` whose entries carry the
item, a score, a human-readable reason and the score components.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import numpy as np
from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from .. import registry, storage, textsearch
from ..conf import ragrec_settings
from ..ml.images import ImageDecodeError
from ..models import ComplementPair, Interaction, Item, ServingConfig
from ..ranking.candidates import Candidate
from ..ranking.fusion import reciprocal_rank_fusion, weighted_score_fusion
from ..ranking.recency import recency_weighted_profile
from ..ranking.rules import RulesError, ServingRules, apply_rules, filters_as_dict

Event = Interaction.Event


class RecommendationError(Exception):
    """Base of the errors a caller can show to the shopper or API client."""


class ItemNotFound(RecommendationError):
    pass


class BadQuery(RecommendationError):
    pass


class UnknownServingConfig(RecommendationError):
    pass


@dataclass
class Recommendation:
    item: Item
    score: float
    reason: str
    reasons: list[str]
    components: dict[str, float]


@dataclass
class RecommendationList:
    recommender: str
    config: str
    items: list[Recommendation] = field(default_factory=list)
    query: str | None = None
    fallback: str | None = None

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Visitor:
    """Whose history to use: a user id and/or an anonymous session key."""

    user_id: int | None = None
    session_key: str = ""

    def __bool__(self) -> bool:
        return self.user_id is not None or bool(self.session_key)

    def events(self):
        """This visitor's item events; none at all for an anonymous visitor without a session."""
        queryset = Interaction.objects.filter(item__isnull=False)
        if self.user_id is not None:
            return queryset.filter(user_id=self.user_id)
        if not self.session_key:
            return queryset.none()
        return queryset.filter(session_key=self.session_key)


# ---------------------------------------------------------------- configuration


def serving_rules(name: str) -> ServingRules:
    """Rules of a serving configuration: the admin's row if any, else settings."""
    row = ServingConfig.objects.filter(name=name).values_list("rules", flat=True).first()
    if row is None:
        configs = ragrec_settings.SERVING_CONFIGS
        if name not in configs:
            raise UnknownServingConfig("Unknown serving configuration %r (known: %s)." % (name, ", ".join(sorted(configs))))
        row = configs[name]
    try:
        return ServingRules.from_dict(row or {})
    except RulesError as exc:
        raise UnknownServingConfig("Serving configuration %r is invalid: %s" % (name, exc)) from exc


def _k(k: int | None) -> int:
    if k is None:
        return 10
    if not isinstance(k, int) or k < 1:
        raise BadQuery("k must be a positive integer.")
    return min(k, int(ragrec_settings.MAX_K))


def _item_filter(rules: ServingRules, *, exclude_ids=()) -> storage.ItemFilter:
    spec = filters_as_dict(rules)
    return storage.ItemFilter(
        categories=tuple(spec.get("categories") or ()),
        exclude_categories=tuple(spec.get("exclude_categories") or ()),
        min_price=spec.get("min_price"),
        max_price=spec.get("max_price"),
        in_stock_only=bool(spec.get("in_stock_only")),
        exclude_ids=frozenset(spec.get("exclude_ids") or ()) | frozenset(spec.get("hide") or ()) | frozenset(exclude_ids),
    )


def _narrowed(filters: storage.ItemFilter, min_price, max_price) -> storage.ItemFilter:
    if min_price is not None:
        filters = dataclasses.replace(filters, min_price=max(min_price, filters.min_price or min_price))
    if max_price is not None:
        filters = dataclasses.replace(filters, max_price=min(max_price, filters.max_price or max_price))
    return filters


# ---------------------------------------------------------------- building results


def _candidates(scored: list[tuple[int, float]], source: str, reason: str) -> list[Candidate]:
    return [Candidate(item_id=item_id, score=score, reasons=[reason], components={source: score}) for item_id, score in scored]


def _hydrate(candidates: list[Candidate], *, with_vectors: str | None = None) -> dict[int, Item]:
    """Load items of candidates and fill their ranking attributes (category, price, new, vector...)."""
    ids = [c.item_id for c in candidates]
    items = Item.objects.in_bulk(ids)
    new_since = timezone.now() - timedelta(days=int(ragrec_settings.NEW_ITEM_DAYS))
    vectors = storage.vectors_for_items(with_vectors, ids) if with_vectors else {}
    for candidate in candidates:
        item = items.get(candidate.item_id)
        if item is None:
            continue
        candidate.category = item.category
        candidate.group_key = item.group_key
        candidate.price = item.price
        candidate.in_stock = item.in_stock
        candidate.is_new = item.created_at >= new_since
        candidate.is_promoted = item.is_promoted
        candidate.vector = vectors.get(candidate.item_id)
    return items


def _finish(
    recommender: str, config: str, candidates: list[Candidate], k: int, *, query: str | None = None,
    fallback: str | None = None, diversity_space: str | None = "text",
) -> RecommendationList:
    rules = serving_rules(config)
    pinned_ids = [item_id for item_id, _ in rules.pin]
    pinned = _candidates([(i, 0.0) for i in pinned_ids if i not in {c.item_id for c in candidates}], "pin", "pinned")
    items = _hydrate(candidates + pinned, with_vectors=diversity_space if _space_ready(diversity_space) else None)
    candidates = [c for c in candidates if c.item_id in items and items[c.item_id].is_eligible]
    ranked = apply_rules(candidates, rules, k, pinned_candidates={c.item_id: c for c in pinned if c.item_id in items})
    result = RecommendationList(recommender=recommender, config=config, query=query, fallback=fallback)
    for candidate in ranked:
        reasons = candidate.reasons or [recommender]
        result.items.append(
            Recommendation(
                item=items[candidate.item_id],
                score=float(candidate.score),
                reason=reasons[0],
                reasons=list(reasons),
                components={name: float(value) for name, value in candidate.components.items()},
            )
        )
    return result


def _space_ready(space: str | None) -> bool:
    return bool(space) and space in registry.get_spaces() and storage.active_generation(space) is not None


def _query_encoder_matches(space: str) -> bool:
    """Whether this process encodes queries with the model of the space's active generation.

    Between deploying a new encoder and promoting its generation (or after a
    rollback) they differ; a query vector from one model must not be compared
    with stored vectors of another, so such a retriever is skipped.
    """
    generation = storage.active_generation(space)
    return generation is not None and generation.encoder_version == registry.get_space(space).encoder.version


def _anchor(item_key: str) -> Item:
    item = Item.objects.filter(key=str(item_key)).first()
    if item is None:
        from .encoding import sync_host_items

        sync_host_items([str(item_key)])
        item = Item.objects.filter(key=str(item_key)).first()
    if item is None:
        raise ItemNotFound("No item with id %r." % str(item_key))
    return item


def _same_group_ids(item: Item) -> set[int]:
    if not item.group_key:
        return {item.id}
    return set(Item.objects.filter(group_key=item.group_key).values_list("id", flat=True)) | {item.id}


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


def similar_items(item_key: str, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items like ``item_key``: text and image similarity fused with ``SIMILAR_WEIGHTS``."""
    k = _k(k)
    anchor = _anchor(item_key)
    rules = serving_rules(config)
    filters = _item_filter(rules, exclude_ids=_same_group_ids(anchor))
    lists, weights = {}, {}
    for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items():
        if not weight or not _space_ready(space):
            continue
        vector = storage.vectors_for_items(space, [anchor.id]).get(anchor.id)
        if vector is None:
            continue
        found = storage.nearest(space, vector, k * 4, filters=filters)
        lists[space] = _candidates([(n.item_id, 1.0 - n.distance) for n in found], space, "similar to %s" % anchor.title)
        weights[space] = float(weight)
    if not lists:
        raise storage.SpaceNotReady("Item %r has no embeddings yet; run ragrec_reindex." % anchor.key)
    fused = weighted_score_fusion(lists, weights)
    return _finish("similar", config, fused, k)


def search(query: str, *, k: int | None = None, config: str = "default", min_price: Decimal | None = None,
           max_price: Decimal | None = None) -> RecommendationList:
    """Hybrid search: keyword (full-text, typo-corrected), MiniLM text and CLIP text->image, fused by RRF.

    ``min_price``/``max_price`` narrow the configuration's own price range (the shopping assistant's budget).
    """
    k = _k(k)
    query = (query or "").strip()
    if not query:
        raise BadQuery("The search query is empty.")
    if len(query) > 300:
        raise BadQuery("The search query is longer than 300 characters.")
    filters = _narrowed(_item_filter(serving_rules(config)), min_price, max_price)
    weights = ragrec_settings.SEARCH_WEIGHTS
    depth = max(k * 4, 40)
    lists = {}
    keyword, corrected = textsearch.keyword_search(query, depth, filters=filters)
    reason = "matches '%s'" % corrected
    if weights.get("keyword"):
        lists["keyword"] = _candidates(keyword, "keyword", reason)
    for space in ("text", "image"):
        if weights.get(space) and _space_ready(space) and _query_encoder_matches(space):
            found = storage.nearest(space, _text_query_vector(space, corrected), depth, filters=filters)
            lists[space] = _candidates([(n.item_id, 1.0 - n.distance) for n in found], space, reason)
    fused = reciprocal_rank_fusion(lists, weights={name: float(weights[name]) for name in lists})
    return _finish("search", config, fused, k, query=corrected)


def search_by_image(image: bytes, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items that look like the uploaded photo (CLIP image space)."""
    k = _k(k)
    if not _space_ready("image"):
        raise storage.SpaceNotReady("Search by photo needs an encoded 'image' space (CLIP).")
    if not _query_encoder_matches("image"):
        raise storage.SpaceNotReady("The 'image' space is being switched to another model; promote or roll back first.")
    encoder = registry.get_space("image").encoder
    result = encoder.encode_images([image])
    if result.errors:
        raise BadQuery("The upload is not a usable image: %s" % result.errors[0])
    filters = _item_filter(serving_rules(config))
    found = storage.nearest("image", result.vectors[0], k * 4, filters=filters)
    return _finish("photo", config, _candidates([(n.item_id, 1.0 - n.distance) for n in found], "image", "looks like your photo"), k, diversity_space="image")


def trending(*, k: int | None = None, config: str = "default", category: str | None = None) -> RecommendationList:
    """Time-decayed popularity of items (views, clicks, carts, purchases weighted by EVENT_WEIGHTS)."""
    k = _k(k)
    scores = _decayed_popularity(category=category, limit=max(k * 4, 40))
    reason = "trending in %s" % category if category else "trending now"
    return _finish("trending", config, _candidates(scores, "popularity", reason), k)


def _decayed_popularity(*, category: str | None, limit: int) -> list[tuple[int, float]]:
    half_life = float(ragrec_settings.TRENDING_HALF_LIFE_HOURS) * 3600
    weights = ragrec_settings.EVENT_WEIGHTS
    cases = " ".join("WHEN %s THEN %s" for _ in weights)
    params: list = [value for pair in weights.items() for value in pair]
    sql = (
        "SELECT e.item_id, SUM((CASE e.event {cases} ELSE 0 END) * e.quantity "
        "* exp(-ln(2) * extract(epoch FROM (now() - e.created_at)) / %s)) AS score "
        "FROM {events} e JOIN {items} i ON i.id = e.item_id "
        "WHERE e.item_id IS NOT NULL AND e.created_at > now() - make_interval(secs => %s) AND i.is_eligible {category} "
        "GROUP BY e.item_id ORDER BY score DESC, e.item_id LIMIT %s"
    ).format(
        cases=cases,
        events=connection.ops.quote_name(Interaction._meta.db_table),
        items=connection.ops.quote_name(Item._meta.db_table),
        category="AND i.category = %s" if category else "",
    )
    params += [half_life, half_life * 8]
    if category:
        params.append(category)
    params.append(limit)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(item_id, float(score)) for item_id, score in cursor.fetchall() if score > 0]


def for_you(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items near the visitor's recency-weighted history, excluding what they bought; trending when new."""
    k = _k(k)
    history = list(
        visitor.events().exclude(event=Event.SEARCH).order_by("-created_at").values_list("item_id", "event", "created_at")[:200]
    )
    if not history:
        result = trending(k=k, config=config)
        result.recommender, result.fallback = "for_you", "trending"
        return result
    bought = {item_id for item_id, event, _ in history if event == Event.PURCHASE}
    seen = {item_id for item_id, _, _ in history}
    rules = serving_rules(config)
    filters = _item_filter(rules, exclude_ids=bought | seen)
    titles = dict(Item.objects.filter(id__in=seen).values_list("id", "title"))
    now = timezone.now()
    half_life = float(ragrec_settings.PROFILE_HALF_LIFE_HOURS) * 3600
    event_weights = ragrec_settings.EVENT_WEIGHTS
    lists, weights = {}, {}
    for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items():
        if not weight or not _space_ready(space):
            continue
        vectors = storage.vectors_for_items(space, list(seen))
        rows = [(vectors[i], (now - at).total_seconds(), event_weights.get(e, 1.0)) for i, e, at in history if i in vectors]
        if not rows:
            continue
        profile = recency_weighted_profile([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], half_life)
        found = storage.nearest(space, profile, max(k * 4, 40), filters=filters)
        candidates = _candidates([(n.item_id, 1.0 - n.distance) for n in found], space, "")
        _explain_by_history(candidates, space, vectors, titles)
        lists[space], weights[space] = candidates, float(weight)
    if not lists:
        result = trending(k=k, config=config)
        result.recommender, result.fallback = "for_you", "trending"
        return result
    return _finish("for_you", config, weighted_score_fusion(lists, weights), k)


def _explain_by_history(candidates: list[Candidate], space: str, history_vectors: dict[int, np.ndarray], titles: dict[int, str]):
    """Give each candidate the reason "because you viewed X", X its nearest history item."""
    ids = list(history_vectors)
    matrix = np.stack([history_vectors[i] for i in ids])
    candidate_vectors = storage.vectors_for_items(space, [c.item_id for c in candidates])
    for candidate in candidates:
        vector = candidate_vectors.get(candidate.item_id)
        if vector is None:
            continue
        nearest_id = ids[int(np.argmax(matrix @ vector))]
        candidate.reasons = ["because you viewed %s" % titles.get(nearest_id, "an item")]


#: "Bought together" ranks co-purchases above approved complements above content-based ones:
#: co-purchase scores are basket counts (>= 1); the other tiers are shifted below them.
APPROVED_TIER, CONTENT_TIER = -1.0, -2.0


def bought_together(item_key: str, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Co-purchased items (same basket), then approved complements, then content-based complements."""
    k = _k(k)
    anchor = _anchor(item_key)
    have = set(_same_group_ids(anchor))
    counts = [(i, float(n)) for i, n in _co_purchase_counts(anchor.id, limit=max(k * 4, 40)) if i not in have]
    candidates = _candidates(counts, "co_purchases", "bought with %s" % anchor.title)
    have |= {i for i, _ in counts}
    fallback = None
    if len(candidates) < k:
        approved = ComplementPair.objects.filter(item=anchor, status=ComplementPair.Status.APPROVED).exclude(complement_id__in=have)
        candidates += _tiered([(p.complement_id, p.score) for p in approved], APPROVED_TIER, "complement", anchor)
        have |= {c.item_id for c in candidates}
    if len(candidates) < k:
        content = propose_complement_candidates(anchor, limit=k * 2, exclude=have)
        candidates += _tiered(content, CONTENT_TIER, "content", anchor)
        fallback = "content" if not counts else None
    return _finish("bought_together", config, candidates, k, fallback=fallback)


def _tiered(scored: list[tuple[int, float]], tier: float, source: str, anchor: Item) -> list[Candidate]:
    """Candidates ranked inside a tier below co-purchases (similarities in [-1, 1] scaled into it)."""
    found = _candidates(scored, source, "goes with %s" % anchor.title)
    for candidate in found:
        candidate.score = tier + candidate.score * 1e-3
    return found


def _co_purchase_counts(item_id: int, *, limit: int) -> list[tuple[int, int]]:
    table = connection.ops.quote_name(Interaction._meta.db_table)
    sql = (
        "SELECT b.item_id, COUNT(DISTINCT b.order_id) AS n FROM {t} a JOIN {t} b "
        "ON b.order_id = a.order_id AND b.item_id <> a.item_id AND b.event = %s AND b.order_id <> '' "
        "WHERE a.item_id = %s AND a.event = %s AND a.order_id <> '' "
        "GROUP BY b.item_id ORDER BY n DESC, b.item_id LIMIT %s"
    ).format(t=table)
    with connection.cursor() as cursor:
        cursor.execute(sql, [Event.PURCHASE, item_id, Event.PURCHASE, limit])
        return cursor.fetchall()


def propose_complement_candidates(anchor: Item, *, limit: int, exclude=frozenset()) -> list[tuple[int, float]]:
    """Content-based complements: semantically related items from *other* categories (cold start)."""
    if not _space_ready("text"):
        return []
    vector = storage.vectors_for_items("text", [anchor.id]).get(anchor.id)
    if vector is None:
        return []
    filters = storage.ItemFilter(exclude_categories=(anchor.category,) if anchor.category else (), exclude_ids=frozenset(exclude) | {anchor.id})
    found = storage.nearest("text", vector, limit * 3, filters=filters)
    best_per_category: dict[str, tuple[int, float]] = {}
    categories = dict(Item.objects.filter(id__in=[n.item_id for n in found]).values_list("id", "category"))
    for n in found:
        best_per_category.setdefault(categories.get(n.item_id, ""), (n.item_id, 1.0 - n.distance))
    ranked = sorted(best_per_category.values(), key=lambda pair: -pair[1])
    return ranked[:limit]


def propose_complements(item_keys: list[str] | None = None, *, per_item: int = 5) -> int:
    """Store content-based complement proposals for merchandisers to approve or reject."""
    anchors = Item.objects.filter(is_eligible=True)
    if item_keys is not None:
        anchors = anchors.filter(key__in=[str(key) for key in item_keys])
    proposals = []
    for anchor in anchors:
        for item_id, score in propose_complement_candidates(anchor, limit=per_item):
            proposals.append(ComplementPair(item=anchor, complement_id=item_id, score=score, source="content"))
    ComplementPair.objects.bulk_create(proposals, ignore_conflicts=True)
    return len(proposals)


def recently_viewed(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """The visitor's recently viewed items, newest first."""
    k = _k(k)
    if not visitor:
        return RecommendationList(recommender="recently_viewed", config=config)
    rows = (
        visitor.events().filter(event__in=[Event.VIEW, Event.CLICK]).values("item_id")
        .annotate(last=Max("created_at")).order_by("-last")[: k * 2]
    )
    scored = [(row["item_id"], row["last"].timestamp()) for row in rows]
    return _finish("recently_viewed", config, _candidates(scored, "recency", "you viewed this"), k, diversity_space=None)


def buy_again(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items the visitor bought before, most often and most recently bought first."""
    k = _k(k)
    if not visitor:
        return RecommendationList(recommender="buy_again", config=config)
    rows = (
        visitor.events().filter(event=Event.PURCHASE).values("item_id")
        .annotate(orders=Count("order_id", distinct=True), last=Max("created_at")).order_by("-orders", "-last")[: k * 2]
    )
    # Rank by how often, then how recently, the visitor bought it (a score that keeps that order).
    scored = [(row["item_id"], row["orders"] * 1e10 + row["last"].timestamp()) for row in rows]
    return _finish("buy_again", config, _candidates(scored, "recency", "you bought this before"), k, diversity_space=None)


__all__ = [
    "BadQuery", "ImageDecodeError", "ItemNotFound", "Recommendation", "RecommendationError", "RecommendationList",
    "UnknownServingConfig", "Visitor", "bought_together", "buy_again", "for_you", "propose_complements",
    "recently_viewed", "search", "search_by_image", "serving_rules", "similar_items", "trending",
]
