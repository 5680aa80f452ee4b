"""The unit every ranking function works on: one recommendable item with its score and why.

Higher ``score`` is better everywhere. Ties are broken by ``item_id`` (lower first), so
every ranking here is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np


@dataclass
class Candidate:
    item_id: int
    score: float
    category: str = ""
    group_key: str = ""
    price: Decimal | float | None = None
    in_stock: bool = True
    is_new: bool = False
    is_promoted: bool = False
    #: Human-readable, e.g. "similar to Red mug", "bought with X", "matches 'mug'".
    reasons: list[str] = field(default_factory=list)
    #: Named score components, e.g. {"text": 0.81, "image": 0.64, "rrf": 0.031, "boost": 0.1}.
    components: dict[str, float] = field(default_factory=dict)
    #: Embedding used for diversity and near-duplicate checks.
    vector: np.ndarray | None = None

    def copy(self) -> Candidate:
        """A copy whose reasons and components can change without touching this one (the vector is shared)."""
        clone = object.__new__(Candidate)  # what ``dataclasses.replace`` does, without re-running __init__
        clone.__dict__.update(self.__dict__, reasons=list(self.reasons), components=dict(self.components))
        return clone

    def add_reason(self, reason: str) -> None:
        """Append ``reason`` unless it is already there."""
        if reason not in self.reasons:
            self.reasons.append(reason)

    def merge_from(self, other: Candidate) -> None:
        """Take in another occurrence of the same item: its reasons, its components (values here win),
        and whatever this one lacks (vector, category, group key, price, new/promoted flags)."""
        for reason in other.reasons:
            self.add_reason(reason)
        for name, value in other.components.items():
            self.components.setdefault(name, value)
        if self.vector is None:
            self.vector = other.vector
        self.category = self.category or other.category
        self.group_key = self.group_key or other.group_key
        self.price = other.price if self.price is None else self.price
        self.is_new = self.is_new or other.is_new
        self.is_promoted = self.is_promoted or other.is_promoted


def ranking_key(candidate: Candidate) -> tuple[float, int]:
    """Sort key: best score first, then lowest item id."""
    return (-candidate.score, candidate.item_id)


def ranked(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates best first, ties broken by item id."""
    return sorted(candidates, key=ranking_key)
