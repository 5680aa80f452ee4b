"""The pipeline every recommender shares: its result types, serving rules, and turning scored
candidates into a ranked, explained ``RecommendationList`` (its errors: ``ragrec_django.exceptions``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from .. import registry, storage
from ..conf import ragrec_settings
from ..exceptions import BadQuery, ItemNotFound, RecommendationError, UnknownServingConfig  # noqa: F401 (re-exported)
from ..limits import ITEM_KEY_MAX_CHARS
from ..models import Interaction, Item
from ..ranking.candidates import Candidate
from ..ranking.rules import RulesError, ServingRules, apply_rules, filters_as_dict
from .inputs import usable_key


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
    """Rules of a serving configuration: the admin's row if any, else settings; read once per
    ``storage.generation_snapshot()`` (one recommendation call, ``serving.serve``)."""
    memo = storage.snapshot_memo()
    if memo is None:
        return _read_serving_rules(name)
    key = ("serving_rules", name)
    if key not in memo:
        memo[key] = _read_serving_rules(name)
    return memo[key]


def _read_serving_rules(name: str) -> ServingRules:
    row = storage.serving_config_rules(name)
    if row is storage.NO_SERVING_CONFIG_ROW:
        configs = ragrec_settings.SERVING_CONFIGS
        if name not in configs:
            raise UnknownServingConfig(
                "Unknown serving configuration %r (known: %s)." % (name, ", ".join(sorted(configs)))
            )
        row = configs[name]
    try:
        return ServingRules.from_dict(row or {})
    except RulesError as exc:
        raise UnknownServingConfig("Serving configuration %r is invalid: %s" % (name, exc)) from exc


def cap_k(k: int | None) -> int:
    if k is None:
        return 10
    if not isinstance(k, int) or k < 1:
        raise BadQuery("k must be a positive integer.")
    return min(k, int(ragrec_settings.MAX_K))


def item_filter(rules: ServingRules, *, exclude_ids=()) -> storage.ItemFilter:
    spec = filters_as_dict(rules)
    return storage.ItemFilter(
        categories=tuple(spec.get("categories") or ()),
        exclude_categories=tuple(spec.get("exclude_categories") or ()),
        min_price=spec.get("min_price"),
        max_price=spec.get("max_price"),
        in_stock_only=bool(spec.get("in_stock_only")),
        exclude_ids=frozenset(spec.get("exclude_ids") or ())
        | frozenset(spec.get("hide") or ())
        | frozenset(exclude_ids),
    )


def narrowed(filters: storage.ItemFilter, min_price, max_price) -> storage.ItemFilter:
    if min_price is not None:
        filters = dataclasses.replace(filters, min_price=max(min_price, filters.min_price or min_price))
    if max_price is not None:
        filters = dataclasses.replace(filters, max_price=min(max_price, filters.max_price or max_price))
    return filters


# ---------------------------------------------------------------- building results


def candidates_from(scored: list[tuple[int, float]], source: str, reason: str) -> list[Candidate]:
    return [
        Candidate(item_id=item_id, score=score, reasons=[reason], components={source: score})
        for item_id, score in scored
    ]


def hydrate(candidates: list[Candidate], *, with_vectors: str | None = None) -> dict[int, bool]:
    """Fill the candidates' ranking attributes (category, price, new, vector...) in one light query.

    Returns {item id: eligible} for the candidates whose item exists.
    """
    ids = [c.item_id for c in candidates]
    new_since = timezone.now() - timedelta(days=int(ragrec_settings.NEW_ITEM_DAYS))
    rows = {row[0]: row for row in storage.ranking_attributes(ids, new_since)}
    vectors = storage.vectors_for_items(with_vectors, ids) if with_vectors else {}
    for candidate in candidates:
        row = rows.get(candidate.item_id)
        if row is None:
            continue
        (
            _,
            candidate.category,
            candidate.group_key,
            candidate.price,
            candidate.in_stock,
            candidate.is_new,
            promoted,
            _,
        ) = row
        candidate.is_promoted = promoted
        candidate.vector = vectors.get(candidate.item_id)
    return {item_id: row[-1] for item_id, row in rows.items()}


def finish(
    recommender: str,
    config: str,
    candidates: list[Candidate],
    k: int,
    *,
    query: str | None = None,
    fallback: str | None = None,
    diversity_space: str | None = "text",
    rules: ServingRules | None = None,
) -> RecommendationList:
    """Rank candidates under the configuration's rules (``rules``: already read) into the result list."""
    rules = rules or serving_rules(config)
    pinned_ids = [item_id for item_id, _ in rules.pin]
    pinned = candidates_from(
        [(i, 0.0) for i in pinned_ids if i not in {c.item_id for c in candidates}], "pin", "pinned"
    )
    needs_vectors = rules.diversity is not None or rules.near_duplicate_threshold is not None
    eligible = hydrate(
        candidates + pinned, with_vectors=diversity_space if needs_vectors and space_ready(diversity_space) else None
    )
    candidates = [c for c in candidates if eligible.get(c.item_id)]
    ranked = apply_rules(
        candidates, rules, k, pinned_candidates={c.item_id: c for c in pinned if c.item_id in eligible}
    )
    items = storage.items_by_ids([c.item_id for c in ranked])
    result = RecommendationList(recommender=recommender, config=config, query=query, fallback=fallback)
    for candidate in ranked:
        item = items.get(candidate.item_id)
        if item is None:  # deleted between the two reads
            continue
        reasons = candidate.reasons or [recommender]
        result.items.append(
            Recommendation(
                item=item,
                score=float(candidate.score),
                reason=reasons[0],
                reasons=list(reasons),
                components={name: float(value) for name, value in candidate.components.items()},
            )
        )
    return result


def space_ready(space: str | None) -> bool:
    return bool(space) and space in registry.get_spaces() and storage.active_generation(space) is not None


def query_encoder_matches(space: str) -> bool:
    """Whether this process encodes queries with the model of the space's active generation.

    Between deploying a new encoder and promoting its generation (or after a
    rollback) they differ; a query vector from one model must not be compared
    with stored vectors of another, so such a retriever is skipped.
    """
    generation = storage.active_generation(space)
    return generation is not None and generation.encoder_version == registry.get_space(space).encoder.version


def anchor_item(item_key: str) -> Item:
    key = usable_key(item_key, ITEM_KEY_MAX_CHARS)  # a NUL or a lone surrogate cannot be looked up
    item = storage.item_by_key(key) if key is not None else None
    if item is None and key is not None:
        from .encoding import sync_host_items

        sync_host_items([key])
        item = storage.item_by_key(key)
    if item is None:
        raise ItemNotFound("No item with id %r." % str(item_key)[:ITEM_KEY_MAX_CHARS])
    return item
