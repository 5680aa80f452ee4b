"""Serving rules: what a merchandiser (Django admin JSON) or settings say about a recommendation slot.

    rules = ServingRules.from_dict({"in_stock_only": True, "pin": [[42, 0]], "promotion_quota": 0.2})
    page = apply_rules(candidates, rules, k=12)

``from_dict`` is strict: an unknown key, a wrong type or an impossible value raises
``RulesError`` naming the key. Filters (see ``filters_as_dict``) can also be pushed into SQL;
applying them again here is harmless.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from .candidates import Candidate, ranked
from .diversity import cap_per_category, group_variants, mmr, suppress_near_duplicates

#: The largest ``max_k`` a rule set may ask for.
MAX_K_LIMIT = 1000


class RulesError(ValueError):
    """Serving rules that are malformed or contradictory; the message names the key."""


@dataclass(frozen=True)
class ServingRules:
    #: Only these categories (empty: any).
    categories: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    #: Price bounds, inclusive; a candidate without a price fails any bound.
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    in_stock_only: bool = False
    #: Per-request exclusions (e.g. the item being viewed, the cart).
    exclude_ids: set[int] = field(default_factory=set)
    #: (item_id, 0-based position) pairs.
    pin: list[tuple[int, int]] = field(default_factory=list)
    #: Added to the score and recorded as component "boost" (negative demotes).
    boost: dict[int, float] = field(default_factory=dict)
    boost_categories: dict[str, float] = field(default_factory=dict)
    #: Items the merchandiser never wants shown here.
    hide: set[int] = field(default_factory=set)
    #: Share of slots (0..1) reserved for new or promoted candidates.
    promotion_quota: float = 0.0
    #: MMR lambda (1: relevance only, 0: diversity only); None: no MMR.
    diversity: float | None = None
    max_per_category: int | None = None
    near_duplicate_threshold: float | None = None
    group_variants: bool = True
    max_k: int = 100
    #: The ranking of the recommenders that have a choice ("for_you"): "fusion" or "learned"; None:
    #: ``RAGREC["RANKER"]`` decides. An A/B variant whose CONFIG sets it serves learned against fusion.
    ranker: str | None = None

    def __post_init__(self) -> None:
        """Refuse values that are impossible or contradict each other."""
        for name in ("min_price", "max_price"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise RulesError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise RulesError(f"min_price ({self.min_price}) is greater than max_price ({self.max_price})")
        _check_range("promotion_quota", self.promotion_quota, 0, 1)
        _check_range("diversity", self.diversity, 0, 1)
        if self.near_duplicate_threshold is not None and not 0 < self.near_duplicate_threshold <= 1:
            raise RulesError(f"near_duplicate_threshold: must be in (0, 1], got {self.near_duplicate_threshold}")
        if self.max_per_category is not None and self.max_per_category < 1:
            raise RulesError(f"max_per_category: must be >= 1, got {self.max_per_category}")
        _check_range("max_k", self.max_k, 1, MAX_K_LIMIT)
        both = sorted(set(self.categories) & set(self.exclude_categories))
        if both:
            raise RulesError(f"categories and exclude_categories both name {both}")
        self._check_pins()

    def _check_pins(self) -> None:
        """Pins: positions below max_k, each item and each position once, no pinned item hidden."""
        items, positions = set(), set()
        for item_id, position in self.pin:
            if not 0 <= position < self.max_k:
                raise RulesError(f"pin: position {position} of item {item_id} is outside 0..{self.max_k - 1}")
            if item_id in items or position in positions:
                raise RulesError(f"pin: item {item_id} or position {position} is pinned twice")
            if item_id in self.hide:
                raise RulesError(f"pin: item {item_id} is also hidden")
            items.add(item_id)
            positions.add(position)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServingRules:
        """Rules from admin/settings JSON; raises ``RulesError`` for anything unexpected.

        JSON forms: ids are integers, ``pin`` is ``[[item_id, position], ...]``, ``boost`` keys may be
        digit strings (JSON object keys always are), prices are numbers or numeric strings.
        """
        if not isinstance(data, Mapping):
            raise RulesError(f"serving rules must be a JSON object, got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in _PARSERS)
        if unknown:
            raise RulesError(f"unknown key(s) {unknown}; valid keys are {sorted(_PARSERS)}")
        return cls(**{key: _PARSERS[key](key, value) for key, value in data.items()})


def filters_as_dict(rules: ServingRules) -> dict[str, Any]:
    """The filtering part of the rules, for pushing into SQL.

    Keys: categories (empty: any), exclude_categories, min_price, max_price (None: unbounded;
    inclusive; NULL prices fail a bound), in_stock_only, exclude_ids, hide.
    """
    return {
        "categories": list(rules.categories),
        "exclude_categories": list(rules.exclude_categories),
        "min_price": rules.min_price,
        "max_price": rules.max_price,
        "in_stock_only": rules.in_stock_only,
        "exclude_ids": set(rules.exclude_ids),
        "hide": set(rules.hide),
    }


def apply_rules(
    candidates: Sequence[Candidate],
    rules: ServingRules,
    k: int,
    pinned_candidates: Mapping[int, Candidate] | None = None,
) -> list[Candidate]:
    """The final page of at most ``min(k, rules.max_k)`` candidates.

    Steps: filter and hide -> boost -> sort (a repeated item id keeps its best copy) -> take out
    pinned items -> group variants -> near-duplicate suppression -> per-category caps -> MMR ->
    promotion quota -> pins -> truncate. A pinned item missing from ``candidates`` comes from
    ``pinned_candidates``; pinned items must pass the filters too, skip the variant, duplicate and
    category steps, and get reason "pinned". A pin beyond the page is ignored; one beyond a short
    list goes last. Inputs are never modified.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    limit = min(k, rules.max_k)
    pool = _best_per_item(ranked(_boosted(c, rules) for c in candidates if _passes_filters(c, rules)))
    pins = _pins(pool, rules, pinned_candidates or {}, limit)
    pinned_ids = {c.item_id for _, c in pins}
    pool = _diversified([c for c in pool if c.item_id not in pinned_ids], rules, limit)
    pool = _with_quota(pool, rules.promotion_quota, slots=min(limit - len(pins), len(pool)))
    for position, candidate in pins:
        pool.insert(min(position, len(pool)), candidate)
    return pool[:limit]


def _passes_filters(candidate: Candidate, rules: ServingRules) -> bool:
    """Whether the candidate survives the category, price, stock, exclusion and hide rules."""
    if rules.categories and candidate.category not in rules.categories:
        return False
    if candidate.category in rules.exclude_categories or (rules.in_stock_only and not candidate.in_stock):
        return False
    if candidate.item_id in rules.exclude_ids or candidate.item_id in rules.hide:
        return False
    if rules.min_price is None and rules.max_price is None:
        return True
    if candidate.price is None:
        return False
    price = Decimal(str(candidate.price))
    return (rules.min_price is None or price >= rules.min_price) and (
        rules.max_price is None or price <= rules.max_price
    )


def _boosted(candidate: Candidate, rules: ServingRules) -> Candidate:
    """A copy with the item and category boosts added to its score and to component "boost"."""
    candidate = candidate.copy()
    boost = rules.boost.get(candidate.item_id, 0.0) + rules.boost_categories.get(candidate.category, 0.0)
    if boost:
        candidate.score += boost
        candidate.components["boost"] = candidate.components.get("boost", 0.0) + boost
    return candidate


def _best_per_item(candidates: list[Candidate]) -> list[Candidate]:
    """Ranked candidates with later repeats of an item id dropped."""
    seen: set[int] = set()
    kept = []
    for candidate in candidates:
        if candidate.item_id not in seen:
            seen.add(candidate.item_id)
            kept.append(candidate)
    return kept


def _pins(
    pool: list[Candidate], rules: ServingRules, extra: Mapping[int, Candidate], limit: int
) -> list[tuple[int, Candidate]]:
    """(position, candidate) for each pin on the page whose item is available, by position."""
    by_id = {c.item_id: c for c in pool}
    placed = []
    for item_id, position in sorted(rules.pin, key=lambda pin: pin[1]):
        if position >= limit:
            break
        candidate = by_id.get(item_id)
        if candidate is None and item_id in extra and _passes_filters(extra[item_id], rules):
            candidate = extra[item_id].copy()
        if candidate is not None:
            candidate.add_reason("pinned")
            placed.append((position, candidate))
    return placed


def _diversified(pool: list[Candidate], rules: ServingRules, limit: int) -> list[Candidate]:
    """Variant grouping, near-duplicate suppression, category caps, then MMR for the first ``limit``."""
    if rules.group_variants:
        pool = group_variants(pool)
    if rules.near_duplicate_threshold is not None:
        pool = suppress_near_duplicates(pool, rules.near_duplicate_threshold)
    if rules.max_per_category is not None:
        pool = cap_per_category(pool, rules.max_per_category)
    if rules.diversity is not None:
        head = mmr(pool, limit, rules.diversity)
        chosen = {c.item_id for c in head}
        pool = head + [c for c in pool if c.item_id not in chosen]
    return pool


def _with_quota(pool: list[Candidate], quota: float, slots: int) -> list[Candidate]:
    """Reorder so that the first ``slots`` hold at least ``round(quota * slots)`` new or promoted
    candidates (fewer if fewer exist), one due at each evenly spread position. A promoted candidate
    that already ranks high enough counts; one moved up gets reason "new" and/or "promoted"."""
    promos = [c for c in pool if c.is_new or c.is_promoted]
    due = _spread_positions(min(math.floor(quota * slots + 0.5), len(promos)), slots)
    if not due:
        return pool
    ordered: list[Candidate] = []
    taken: set[int] = set()
    any_next, promo_next = iter(pool), iter(promos)
    shown = 0
    for position in range(slots):
        moved_up = shown < bisect_right(due, position)
        candidate = _next_untaken(promo_next if moved_up else any_next, taken)
        if moved_up:
            for flag, reason in ((candidate.is_new, "new"), (candidate.is_promoted, "promoted")):
                if flag:
                    candidate.add_reason(reason)
        shown += candidate.is_new or candidate.is_promoted
        taken.add(candidate.item_id)
        ordered.append(candidate)
    return ordered + [c for c in pool if c.item_id not in taken]


def _spread_positions(count: int, slots: int) -> list[int]:
    """``count`` distinct positions spread evenly over ``slots``, each in the middle of its share."""
    return [(2 * i + 1) * slots // (2 * count) for i in range(count)]


def _next_untaken(candidates: Iterator[Candidate], taken: set[int]) -> Candidate:
    """The next candidate from the iterator not yet placed."""
    return next(c for c in candidates if c.item_id not in taken)


def _check_range(name: str, value: float | None, low: float, high: float) -> None:
    """Raise unless ``value`` is None or within [low, high]."""
    if value is not None and not low <= value <= high:
        raise RulesError(f"{name}: must be between {low} and {high}, got {value}")


# --- from_dict parsers: (key, JSON value) -> field value, or RulesError naming the key ---


def _fail(key: str, expected: str, value: Any) -> RulesError:
    return RulesError(f"{key}: expected {expected}, got {value!r} ({type(value).__name__})")


def _integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, "an integer", value)
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(key, "a finite number", value)
    return float(value)


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def _price(key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise _fail(key, "a price (number or numeric string)", value)
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise _fail(key, "a price (number or numeric string)", value) from None
    if not price.is_finite():
        raise _fail(key, "a finite price", value)
    return price


def _strings(key: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _fail(key, "a list of non-empty strings", value)
    return list(value)


def _ids(key: str, value: Any) -> set[int]:
    if not isinstance(value, (list, tuple, set)):
        raise _fail(key, "a list of item ids", value)
    return {_integer(key, v) for v in value}


def _item_id(key: str, value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return _integer(key, value)


def _pin_list(key: str, value: Any) -> list[tuple[int, int]]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        raise _fail(key, "a list of [item_id, position] pairs", value)
    return [(_integer(key, item_id), _integer(key, position)) for item_id, position in value]


def _boost_map(key_parser: Callable[[str, Any], Any]) -> Callable[[str, Any], dict]:
    def parse(key: str, value: Any) -> dict:
        if not isinstance(value, Mapping):
            raise _fail(key, "an object", value)
        return {key_parser(key, k): _number(key, v) for k, v in value.items()}

    return parse


def _category(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(key, "non-empty category names as keys", value)
    return value


#: The rankings a serving configuration's ``ranker`` may name (``services.ranker.RANKERS``).
RANKERS = ("fusion", "learned")


def _ranker(key: str, value: Any) -> str:
    if value not in RANKERS:
        raise _fail(key, " or ".join('"%s"' % name for name in RANKERS), value)
    return value


def _optional(parser: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda key, value: None if value is None else parser(key, value)


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "categories": _strings,
    "exclude_categories": _strings,
    "min_price": _optional(_price),
    "max_price": _optional(_price),
    "in_stock_only": _boolean,
    "exclude_ids": _ids,
    "pin": _pin_list,
    "boost": _boost_map(_item_id),
    "boost_categories": _boost_map(_category),
    "hide": _ids,
    "promotion_quota": _number,
    "diversity": _optional(_number),
    "max_per_category": _optional(_integer),
    "near_duplicate_threshold": _optional(_number),
    "group_variants": _boolean,
    "max_k": _integer,
    "ranker": _optional(_ranker),
}
