"""Recommenders built from interactions: trending, for you, bought together, recently viewed, buy again."""

from __future__ import annotations

import numpy as np
from django.db import connection
from django.db.models import Count, Max
from django.utils import timezone

from .. import storage
from ..conf import ragrec_settings
from ..models import ComplementPair, Interaction, Item
from ..ranking.candidates import Candidate
from ..ranking.fusion import weighted_score_fusion
from ..ranking.recency import recency_weighted_profile
from .results import (
    RecommendationList,
    Visitor,
    anchor_item,
    candidates_from,
    cap_k,
    finish,
    item_filter,
    same_group_ids,
    serving_rules,
    space_ready,
)

Event = Interaction.Event


def trending(*, k: int | None = None, config: str = "default", category: str | None = None) -> RecommendationList:
    """Time-decayed popularity of items (views, clicks, carts, purchases weighted by EVENT_WEIGHTS)."""
    k = cap_k(k)
    scores = _decayed_popularity(category=category, limit=max(k * 4, 40))
    reason = "trending in %s" % category if category else "trending now"
    return finish("trending", config, candidates_from(scores, "popularity", reason), k)


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
    k = cap_k(k)
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
    filters = item_filter(rules, exclude_ids=bought | seen)
    titles = dict(Item.objects.filter(id__in=seen).values_list("id", "title"))
    now = timezone.now()
    half_life = float(ragrec_settings.PROFILE_HALF_LIFE_HOURS) * 3600
    event_weights = ragrec_settings.EVENT_WEIGHTS
    lists, weights = {}, {}
    for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items():
        if not weight or not space_ready(space):
            continue
        vectors = storage.vectors_for_items(space, list(seen))
        rows = [(vectors[i], (now - at).total_seconds(), event_weights.get(e, 1.0)) for i, e, at in history if i in vectors]
        if not rows:
            continue
        profile = recency_weighted_profile([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], half_life)
        found = storage.nearest(space, profile, max(k * 4, 40), filters=filters)
        candidates = candidates_from([(n.item_id, 1.0 - n.distance) for n in found], space, "")
        _explain_by_history(candidates, space, vectors, titles)
        lists[space], weights[space] = candidates, float(weight)
    if not lists:
        result = trending(k=k, config=config)
        result.recommender, result.fallback = "for_you", "trending"
        return result
    return finish("for_you", config, weighted_score_fusion(lists, weights), k)


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
    k = cap_k(k)
    anchor = anchor_item(item_key)
    have = set(same_group_ids(anchor))
    counts = [(i, float(n)) for i, n in _co_purchase_counts(anchor.id, limit=max(k * 4, 40)) if i not in have]
    candidates = candidates_from(counts, "co_purchases", "bought with %s" % anchor.title)
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
    return finish("bought_together", config, candidates, k, fallback=fallback)


def _tiered(scored: list[tuple[int, float]], tier: float, source: str, anchor: Item) -> list[Candidate]:
    """Candidates ranked inside a tier below co-purchases (similarities in [-1, 1] scaled into it)."""
    found = candidates_from(scored, source, "goes with %s" % anchor.title)
    for candidate in found:
        candidate.score = tier + candidate.score * 1e-3
    return found


def _co_purchase_counts(item_id: int, *, limit: int) -> list[tuple[int, int]]:
    table = connection.ops.quote_name(Interaction._meta.db_table)
    sql = (
        f"SELECT b.item_id, COUNT(DISTINCT b.order_id) AS n FROM {table} a JOIN {table} b "
        "ON b.order_id = a.order_id AND b.item_id <> a.item_id AND b.event = %s AND b.order_id <> '' "
        "WHERE a.item_id = %s AND a.event = %s AND a.order_id <> '' "
        "GROUP BY b.item_id ORDER BY n DESC, b.item_id LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Event.PURCHASE, item_id, Event.PURCHASE, limit])
        return cursor.fetchall()


def propose_complement_candidates(anchor: Item, *, limit: int, exclude=frozenset()) -> list[tuple[int, float]]:
    """Content-based complements: semantically related items from *other* categories (cold start)."""
    if not space_ready("text"):
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
    k = cap_k(k)
    if not visitor:
        return RecommendationList(recommender="recently_viewed", config=config)
    rows = (
        visitor.events().filter(event__in=[Event.VIEW, Event.CLICK]).values("item_id")
        .annotate(last=Max("created_at")).order_by("-last")[: k * 2]
    )
    scored = [(row["item_id"], row["last"].timestamp()) for row in rows]
    return finish("recently_viewed", config, candidates_from(scored, "recency", "you viewed this"), k, diversity_space=None)


def buy_again(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items the visitor bought before, most often and most recently bought first."""
    k = cap_k(k)
    if not visitor:
        return RecommendationList(recommender="buy_again", config=config)
    rows = (
        visitor.events().filter(event=Event.PURCHASE).values("item_id")
        .annotate(orders=Count("order_id", distinct=True), last=Max("created_at")).order_by("-orders", "-last")[: k * 2]
    )
    # Rank by how often, then how recently, the visitor bought it (a score that keeps that order).
    scored = [(row["item_id"], row["orders"] * 1e10 + row["last"].timestamp()) for row in rows]
    return finish("buy_again", config, candidates_from(scored, "recency", "you bought this before"), k, diversity_space=None)
