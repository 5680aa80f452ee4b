"""Recommenders built from interactions: trending, for you, bought together, recently viewed, buy again.

Every list here costs a fixed number of SQL queries, whatever the length of the visitor's history
or the size of the basket: purchase counts are summed inside PostgreSQL, never item by item.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from django.db.models import Max
from django.utils import timezone

from .. import storage
from ..conf import ragrec_settings
from ..limits import CATEGORY_MAX_CHARS, ITEM_KEY_MAX_CHARS
from ..models import ComplementPair, Interaction, Item
from ..ranking.candidates import Candidate
from ..ranking.fusion import reciprocal_rank_fusion, weighted_score_fusion
from ..ranking.recency import recency_weighted_profile
from . import ranker
from .inputs import usable_key
from .results import (
    BadQuery,
    ItemNotFound,
    RecommendationList,
    Visitor,
    candidates_from,
    cap_k,
    finish,
    item_filter,
    serving_rules,
    space_ready,
)

Event = Interaction.Event

#: Repeat purchases ("buy again", the "repeat" list of "for you"): each of the visitor's orders that
#: holds an item adds ``0.5 ** (orders since / REPEAT_HALF_LIFE_ORDERS)`` to it, so their latest
#: order counts 1 and the one three orders earlier 0.5. Counting orders (not days) suits shoppers
#: who order weekly as well as those who order twice a year.
REPEAT_HALF_LIFE_ORDERS = 3.0
#: The "co_purchase" list of "for you" starts from the visitor's strongest repeat purchases, at most this many.
CO_PURCHASE_SEEDS = 20
#: Co-purchase counts read only the latest this many purchase lines of each seed or basket item (one
#: per order, unless an order lists the item twice): it keeps a query over a basket of popular items
#: fast (at most seeds x this many orders are read) and follows what is bought with an item lately;
#: on the evaluation data it ranked as well as reading every order (docs/evaluation.md). None: all.
CO_PURCHASE_ORDERS_PER_ITEM: int | None = 50
#: Reciprocal rank fusion constant (the usual 60).
RRF_K = 60
#: "Bought together" for a basket looks for content-based complements of at most this many of its
#: items (one vector query each), and only when co-purchases and approved complements fall short.
CONTENT_ANCHORS = 5


# ---------------------------------------------------------------- trending


@storage.with_generation_snapshot
def trending(*, k: int | None = None, config: str = "default", category: str | None = None) -> RecommendationList:
    """Time-decayed popularity: how many visitors viewed, clicked, carted or bought each item lately.

    Each visitor counts once per item, with the weight (``EVENT_WEIGHTS``) and time decay
    (``TRENDING_HALF_LIFE_HOURS``) of their strongest event on it: a visitor who buys counts more
    than one who looks, but neither a wholesale line of 500 units nor one visitor's fifty page
    views can fill the list.
    """
    k = cap_k(k)
    if category and usable_key(category, CATEGORY_MAX_CHARS) is None:
        raise BadQuery("No category named %r." % category[:CATEGORY_MAX_CHARS])
    scores = _decayed_popularity(category=category, limit=max(k * 4, 40))
    reason = "trending in %s" % category if category else "trending now"
    return finish("trending", config, candidates_from(scores, "popularity", reason), k)


def _decayed_popularity(*, category: str | None, limit: int) -> list[tuple[int, float]]:
    """Trending scores under ``EVENT_WEIGHTS`` and ``TRENDING_HALF_LIFE_HOURS`` (one query)."""
    return storage.decayed_popularity(
        event_weights=ragrec_settings.EVENT_WEIGHTS,
        half_life_seconds=float(ragrec_settings.TRENDING_HALF_LIFE_HOURS) * 3600,
        category=category,
        limit=limit,
        max_per_source=ragrec_settings.POPULARITY_MAX_PER_SOURCE,
    )


# ---------------------------------------------------------------- repeat purchases


def _repeat_purchases(visitor: Visitor, *, limit: int) -> list[tuple[int, float, int]]:
    """The visitor's purchases as ``(item id, score, orders)``, best first (one query).

    ``score`` sums ``0.5 ** (orders since / REPEAT_HALF_LIFE_ORDERS)`` over the visitor's orders
    holding the item (their latest order is 0 orders ago); ties go to the more recently bought,
    then the lower id. A purchase without an order id is an order of its own.
    """
    return storage.repeat_purchases(
        user_id=visitor.user_id, session_key=visitor.session_key, half_life_orders=REPEAT_HALF_LIFE_ORDERS, limit=limit
    )


def _repeat_candidates(rows: Iterable[tuple[int, float, int]]) -> list[Candidate]:
    return [
        Candidate(
            item_id=item_id,
            score=score,
            reasons=["you buy this often" if orders > 1 else "you bought this before"],
            components={"repeat": score, "orders": float(orders)},
        )
        for item_id, score, orders in rows
    ]


# ---------------------------------------------------------------- co-purchases


_DEFAULT = object()


def _co_purchases(
    seeds: dict[int, float],
    *,
    exclude: Iterable[int],
    limit: int,
    orders_per_item=_DEFAULT,
) -> list[tuple[int, float, int]]:
    """Items bought in the same orders as the seed items, as ``(item id, score, strongest seed)`` (one query).

    ``score`` is the sum over seeds of ``weight * (orders holding both)``; with weights 1 it is the
    co-purchase count summed over the seeds, counted in each seed's latest ``orders_per_item``
    orders (default ``CO_PURCHASE_ORDERS_PER_ITEM``; None: all). The strongest seed is the one
    that contributes most (it names the reason). Seeds themselves and ``exclude`` are never returned.
    """
    per_item = orders_per_item if orders_per_item is not _DEFAULT else CO_PURCHASE_ORDERS_PER_ITEM
    return storage.co_purchases(
        seeds,
        exclude=exclude,
        limit=limit,
        orders_per_item=per_item,
        max_per_source=ragrec_settings.POPULARITY_MAX_PER_SOURCE,
    )


# ---------------------------------------------------------------- for you


@storage.with_generation_snapshot
def for_you(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """The visitor's own candidate lists fused by reciprocal rank with ``RAGREC["FOR_YOU_WEIGHTS"]``:

    * ``similar``: items near the recency-weighted profile of their last 200 events in each space
      of ``SIMILAR_WEIGHTS``; never an item of those events ("because you viewed X", "because you bought X");
    * ``repeat``: what they bought, by how many of their orders held it, recent orders counting
      more ("you buy this often", "you bought this before");
    * ``co_purchase``: items other shoppers bought in the same orders as their strongest repeat
      purchases, counts summed over those ("bought with X"); never an item they bought.

    A list whose weight is 0 is not computed. Each result's first reason is that of the list that
    contributed most to its score; its components hold every list's score and rank. A visitor
    without history, or with nothing any list can use, gets the trending list (``fallback``
    "trending"); a short list is topped up from trending.

    With ``RAGREC["RANKER"]`` "learned" (or the serving configuration's ``ranker`` rule) the active learned
    model ranks instead (``services.ranker``); fusion serves whenever it cannot.
    """
    k = cap_k(k)
    if ranker.ranker_for("for_you", config) == "learned":
        learned = ranker.learned_for_you(visitor, k=k, config=config)
        if learned is not None:
            return learned
    weights = ragrec_settings.FOR_YOU_WEIGHTS  # checked by ragrec_django.conf.validate_for_you_weights
    depth = max(k * 4, 40)
    history = (
        list(
            visitor.events()
            .exclude(event=Event.SEARCH)
            .order_by("-created_at")
            .values_list("item_id", "event", "created_at")[:200]
        )
        if visitor
        else []
    )
    if not history:
        return _trending_for_you(k, config)
    lists: dict[str, list[Candidate]] = {}
    repeat_rows = []
    if weights.get("repeat") or weights.get("co_purchase"):
        repeat_rows = _repeat_purchases(visitor, limit=max(depth, CO_PURCHASE_SEEDS))
    if weights.get("repeat") and repeat_rows:
        lists["repeat"] = _repeat_candidates(repeat_rows[:depth])
    if weights.get("co_purchase") and repeat_rows:
        lists["co_purchase"] = _co_purchase_list(repeat_rows, depth)
    if weights.get("similar"):
        similar = _similar_to_history(visitor, history, config, depth)
        if similar:
            lists["similar"] = similar
    if not lists:
        return _trending_for_you(k, config)
    used = {name: weights[name] for name in lists}
    fused = reciprocal_rank_fusion(lists, k=RRF_K, weights=used)
    _lead_with_strongest_reason(fused, lists, used)
    if len(fused) < k:
        fused += _trending_filler(fused, depth)
    return finish("for_you", config, fused, k)


def _trending_for_you(k: int, config: str) -> RecommendationList:
    result = trending(k=k, config=config)
    result.recommender, result.fallback = "for_you", "trending"
    return result


def _trending_filler(have: list[Candidate], limit: int) -> list[Candidate]:
    """Trending items not in ``have``, scored below every fused candidate (RRF scores are > 0)."""
    taken = {c.item_id for c in have}
    fill = [(i, s) for i, s in _decayed_popularity(category=None, limit=limit + len(taken)) if i not in taken]
    candidates = candidates_from(fill, "popularity", "trending now")
    for rank, candidate in enumerate(candidates):
        candidate.score = -1.0 - rank * 1e-6
    return candidates


def _co_purchase_list(repeat_rows: list[tuple[int, float, int]], depth: int) -> list[Candidate]:
    seeds = {item_id: 1.0 for item_id, _, _ in repeat_rows[:CO_PURCHASE_SEEDS]}
    bought = {item_id for item_id, _, _ in repeat_rows}
    rows = _co_purchases(seeds, exclude=bought, limit=depth)
    titles = dict(Item.objects.filter(id__in={seed for _, _, seed in rows}).values_list("id", "title"))
    return [
        Candidate(
            item_id=item_id,
            score=score,
            reasons=["bought with %s" % titles.get(seed, "what you bought")],
            components={"co_purchases": score},
        )
        for item_id, score, seed in rows
    ]


def _similar_to_history(visitor: Visitor, history: list, config: str, depth: int) -> list[Candidate]:
    """The embedding list: nearest items to the history profile in each space, fused by score."""
    bought = {item_id for item_id, event, _ in history if event == Event.PURCHASE}
    seen = {item_id for item_id, _, _ in history}
    filters = item_filter(serving_rules(config), exclude_ids=bought | seen)
    titles = dict(Item.objects.filter(id__in=seen).values_list("id", "title"))
    now = timezone.now()
    half_life = float(ragrec_settings.PROFILE_HALF_LIFE_HOURS) * 3600
    event_weights = ragrec_settings.EVENT_WEIGHTS
    lists, weights = {}, {}
    for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items():
        if not weight or not space_ready(space):
            continue
        vectors = storage.vectors_for_items(space, list(seen))
        rows = [
            (vectors[i], (now - at).total_seconds(), event_weights.get(e, 1.0)) for i, e, at in history if i in vectors
        ]
        if not rows:
            continue
        profile = recency_weighted_profile([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], half_life)
        found = storage.nearest(space, profile, depth, filters=filters)
        candidates = candidates_from([(n.item_id, 1.0 - n.distance) for n in found], space, "")
        _explain_by_history(candidates, space, vectors, _anchor_reasons(history, titles))
        lists[space], weights[space] = candidates, float(weight)
    if not lists:
        return []
    return weighted_score_fusion(lists, weights)


def _anchor_reasons(history: list, titles: dict[int, str]) -> dict[int, str]:
    """Each history item's reason as an anchor, by the strongest thing the visitor did with it.

    "because you bought X" once they bought it, "because you added X to your basket" when they only added
    it, "because you viewed X" when they only viewed or clicked it.
    """
    done = {}
    for item_id, event, _ in history:
        done.setdefault(item_id, set()).add(event)
    reasons = {}
    for item_id, events in done.items():
        title = titles.get(item_id, "an item")
        if Event.PURCHASE in events:
            reasons[item_id] = "because you bought %s" % title
        elif Event.ADD_TO_CART in events:
            reasons[item_id] = "because you added %s to your basket" % title
        else:
            reasons[item_id] = "because you viewed %s" % title
    return reasons


def _explain_by_history(
    candidates: list[Candidate], space: str, history_vectors: dict[int, np.ndarray], reasons: dict[int, str]
):
    """Give each candidate the reason of its nearest history item ("because you viewed X", "... bought X")."""
    ids = list(history_vectors)
    matrix = np.stack([history_vectors[i] for i in ids])
    candidate_vectors = storage.vectors_for_items(space, [c.item_id for c in candidates])
    for candidate in candidates:
        vector = candidate_vectors.get(candidate.item_id)
        if vector is None:
            continue
        nearest_id = ids[int(np.argmax(matrix @ vector))]
        candidate.reasons = [reasons[nearest_id]]


def _lead_with_strongest_reason(
    fused: list[Candidate], lists: dict[str, list[Candidate]], weights: dict[str, float]
) -> None:
    """Order each fused candidate's reasons by how much each list added to its score (``weight / (k + rank)``)."""
    reasons = {name: {c.item_id: c.reasons for c in candidates} for name, candidates in lists.items()}
    for candidate in fused:
        contributions = sorted(
            (-weights[name] / (RRF_K + candidate.components[name + "_rank"]), position, name)
            for position, name in enumerate(lists)
            if name + "_rank" in candidate.components
        )
        ordered: list[str] = []
        for _, _, name in contributions:
            for reason in reasons[name].get(candidate.item_id, ()):
                if reason and reason not in ordered:
                    ordered.append(reason)
        candidate.reasons = ordered + [r for r in candidate.reasons if r and r not in ordered]


# ---------------------------------------------------------------- bought together


#: "Bought together" ranks co-purchases above approved complements above content-based ones:
#: co-purchase scores are basket counts (>= 1); the other tiers are shifted below them.
APPROVED_TIER, CONTENT_TIER = -1.0, -2.0


@storage.with_generation_snapshot
def bought_together(item_key: str, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Co-purchased items (same basket), then approved complements, then content-based complements."""
    result = bought_together_for_basket([item_key], k=k, config=config)
    result.recommender = "bought_together"
    return result


@storage.with_generation_snapshot
def bought_together_for_basket(
    item_keys: Sequence[str],
    *,
    k: int | None = None,
    config: str = "default",
    visitor: Visitor | None = None,
) -> RecommendationList:
    """What goes with a basket: items bought in the same orders as its items, counts summed over them.

    One query counts, for every other item, the orders it shares with each basket item and sums
    them ("bought with X", X the basket item it was bought with most). The basket's items and
    their variants are never shown. When co-purchases fall short of ``k``: merchandiser-approved
    complements of the basket's items, then content-based complements (other categories, nearest
    in the text space) of its first ``CONTENT_ANCHORS`` items; ``fallback`` is "content" when no
    item of the basket was ever bought with another.

    ``visitor``: also fuse (reciprocal rank, equal weights) the visitor's own repeat purchases,
    minus the basket ("you buy this often"): the restocking shopper's list.

    With ``RAGREC["RANKER"]`` "learned" for ``bought_together``, the active learned model's item-kNN
    ranks the partners instead of the counts (``_basket_partners``); the counts serve when it cannot.

    Keys not in the catalogue are skipped; ``ItemNotFound`` when none is.
    """
    k = cap_k(k)
    anchors = _basket_items(item_keys)
    depth = max(k * 4, 40)
    basket = _with_variants(anchors)
    have = set(basket)
    titles = {anchor.id: anchor.title for anchor in anchors}
    rows, component = _basket_partners(anchors, have, depth, config)
    candidates = [
        Candidate(
            item_id=item_id, score=score, reasons=["bought with %s" % titles[seed]], components={component: score}
        )
        for item_id, score, seed in rows
    ]
    have |= {c.item_id for c in candidates}
    fallback = None
    if len(candidates) < k:
        approved = _approved_complements(anchors, have, titles)
        candidates += approved
        have |= {c.item_id for c in approved}
    if len(candidates) < k:
        content: list[Candidate] = []
        for anchor in anchors[:CONTENT_ANCHORS]:
            found = _tiered(
                propose_complement_candidates(anchor, limit=k * 2, exclude=have), CONTENT_TIER, "content", anchor
            )
            content += found
            have |= {c.item_id for c in found}
            if len(candidates) + len(content) >= k * 2:
                break
        candidates += sorted(content, key=lambda c: -c.score)
        fallback = "content" if not rows else None
    if visitor:
        repeat = [row for row in _repeat_purchases(visitor, limit=depth + len(basket)) if row[0] not in basket]
        if repeat:
            lists = {"co_purchase": candidates, "repeat": _repeat_candidates(repeat[:depth])}
            weights = {"co_purchase": 1.0, "repeat": 1.0}
            candidates = reciprocal_rank_fusion(lists, k=RRF_K, weights=weights)
            _lead_with_strongest_reason(candidates, lists, weights)
    return finish("bought_together", config, candidates, k, fallback=fallback)


def _basket_partners(
    anchors: list[Item], exclude: set[int], limit: int, config: str
) -> tuple[list[tuple[int, float, int]], str]:
    """The basket's partners as ``(item id, score, strongest basket item)`` and the component that scores them.

    With ``RAGREC["RANKER"]`` "learned" for ``bought_together`` (or the serving configuration's ``ranker``
    rule): the active learned model's item-kNN (similarities over orders, each order weighted by its size;
    ``ranking.learned.basket_partners``), which finds more of a basket's next new items than the raw counts
    (docs/evaluation.md). Otherwise, or when no active model has neighbours for the basket's items, the
    co-purchase counts."""
    if ranker.ranker_for("bought_together", config) == "learned":
        rows = ranker.learned_basket_partners([anchor.id for anchor in anchors], exclude=exclude, limit=limit)
        if rows:
            return rows, "item_knn"
    return _co_purchases({anchor.id: 1.0 for anchor in anchors}, exclude=exclude, limit=limit), "co_purchases"


def _basket_items(item_keys: Sequence[str]) -> list[Item]:
    """The basket's items in the order given (repeats once); unknown keys skipped, mirrored from the host first."""
    if isinstance(item_keys, (str, bytes)):
        raise TypeError("item_keys must be a list of item ids, not one string")
    usable = (usable_key(key, ITEM_KEY_MAX_CHARS) for key in item_keys)  # no NUL or lone surrogate reaches SQL
    keys = list(dict.fromkeys(key for key in usable if key is not None))
    found = Item.objects.in_bulk(keys, field_name="key")
    missing = [key for key in keys if key not in found]
    if missing:
        from .encoding import sync_host_items

        sync_host_items(missing)
        found.update(Item.objects.in_bulk(missing, field_name="key"))
    anchors = [found[key] for key in keys if key in found]
    if not anchors:
        raise ItemNotFound(
            "No item with id %s." % ", ".join(repr(key) for key in keys) if keys else "The basket is empty."
        )
    return anchors


def _with_variants(anchors: list[Item]) -> set[int]:
    """Ids of the anchors and of every item in their variant groups (one query)."""
    ids = {anchor.id for anchor in anchors}
    groups = {anchor.group_key for anchor in anchors if anchor.group_key}
    if groups:
        ids |= set(Item.objects.filter(group_key__in=groups).values_list("id", flat=True))
    return ids


def _approved_complements(anchors: list[Item], exclude: set[int], titles: dict[int, str]) -> list[Candidate]:
    """Merchandiser-approved complements of any basket item (one query), best score first, below co-purchases."""
    pairs = (
        ComplementPair.objects.filter(item_id__in=[a.id for a in anchors], status=ComplementPair.Status.APPROVED)
        .exclude(complement_id__in=exclude)
        .order_by("-score", "complement_id")
        .values_list("complement_id", "item_id", "score")
    )
    candidates: dict[int, Candidate] = {}
    for complement_id, item_id, score in pairs:
        if complement_id not in candidates:
            candidates[complement_id] = Candidate(
                item_id=complement_id,
                score=APPROVED_TIER + float(score) * 1e-3,
                reasons=["goes with %s" % titles[item_id]],
                components={"complement": float(score)},
            )
    return list(candidates.values())


def _tiered(scored: list[tuple[int, float]], tier: float, source: str, anchor: Item) -> list[Candidate]:
    """Candidates ranked inside a tier below co-purchases (similarities in [-1, 1] scaled into it)."""
    found = candidates_from(scored, source, "goes with %s" % anchor.title)
    for candidate in found:
        candidate.score = tier + candidate.score * 1e-3
    return found


def propose_complement_candidates(anchor: Item, *, limit: int, exclude=frozenset()) -> list[tuple[int, float]]:
    """Content-based complements: semantically related items from *other* categories (cold start)."""
    if not space_ready("text"):
        return []
    vector = storage.vectors_for_items("text", [anchor.id]).get(anchor.id)
    if vector is None:
        return []
    filters = storage.ItemFilter(
        exclude_categories=(anchor.category,) if anchor.category else (), exclude_ids=frozenset(exclude) | {anchor.id}
    )
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


# ---------------------------------------------------------------- the visitor's own lists


@storage.with_generation_snapshot
def recently_viewed(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """The visitor's recently viewed items, newest first."""
    k = cap_k(k)
    if not visitor:
        return RecommendationList(recommender="recently_viewed", config=config)
    rows = (
        visitor.events()
        .filter(event__in=[Event.VIEW, Event.CLICK])
        .values("item_id")
        .annotate(last=Max("created_at"))
        .order_by("-last")[: k * 2]
    )
    scored = [(row["item_id"], row["last"].timestamp()) for row in rows]
    return finish(
        "recently_viewed", config, candidates_from(scored, "recency", "you viewed this"), k, diversity_space=None
    )


@storage.with_generation_snapshot
def buy_again(visitor: Visitor, *, k: int | None = None, config: str = "default") -> RecommendationList:
    """Items the visitor bought before, most often and most recently bought first.

    Each of their orders holding the item counts, recent orders more (``REPEAT_HALF_LIFE_ORDERS``);
    one query.
    """
    k = cap_k(k)
    if not visitor:
        return RecommendationList(recommender="buy_again", config=config)
    candidates = _repeat_candidates(_repeat_purchases(visitor, limit=k * 2))
    return finish("buy_again", config, candidates, k, diversity_space=None)
