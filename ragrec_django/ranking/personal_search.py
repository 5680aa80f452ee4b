"""Personalised search, the pure part: a query's own candidates re-ordered for one visitor by a learned blend.

The candidate stage is the search's own result list (the first ``CANDIDATES`` of it, in its order): each
candidate keeps the retrievers' scores and ranks in its components, and gets a relevance feature from its
place in the fused list (``relevance_features``), five personal ones from the learned "for you" machinery
(``personal_features``: the "for you" model's score for this visitor and item, how often they bought it, its
co-purchases with their strongest and their latest items, their affinity to its category) and the item's
popularity (what any shopper would get: the offline evaluation showed much of a re-rank's gain is that).

``Blend`` scores a candidate as ``w . standardised(features)``; its weights are fitted (``fit_blend``) as a
conditional logit over each training query's candidates, the label being the item the shopper went on to buy:
how much a visitor's propensity may move an item against its relevance is learned from data, not set by hand.
``rerank`` only re-orders the candidates it is given, so an item that does not match the query never enters;
the candidates keep their original scores, handed out in the new order, so merchandising boosts and diversity
(``ranking.rules``) read the same scale as before.

No Django, numpy only.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import learned
from .candidates import Candidate, ranked
from .learned import FEATURES as FOR_YOU_FEATURES

#: How many of the search's first results are re-ordered (the rest keep their place after them).
CANDIDATES = 50
RELEVANCE = ("relevance_log_rank",)
PERSONAL = ("for_you", "bought_before", "co_purchase", "co_purchase_last", "category_affinity")
#: What any shopper would get: the item's popularity (log of its orders in the last 30 days).
ITEM = ("popularity",)
#: The columns ``personal_features`` gives, after the relevance ones.
VISITOR = PERSONAL + ITEM
FEATURES = RELEVANCE + VISITOR
#: The reasons an item moved up by personalisation gets (before the search's own reason).
BOUGHT_REASON = "you bought this before"
PERSONAL_REASON = "popular with shoppers like you"


def relevance_features(count: int) -> np.ndarray:
    """Per candidate of a list of ``count`` in the search's order (best first): ``log(1 + position)``. The place
    alone, not the score: the fused scores' scale depends on which retrievers ran and on the boosts, while the
    place is what each of them decided."""
    return np.log1p(np.arange(count, dtype=np.float64))[:, None]


def personal_features(for_you_scores: np.ndarray, for_you_features: np.ndarray) -> np.ndarray:
    """Per candidate, the ``VISITOR`` columns: the "for you" model's score (less the candidates' median: only
    differences within a query matter), ``log(1 + orders holding it)``, ``log(1 + co-purchases)`` with the
    visitor's strongest and with their last order's items, their category affinity (0 unknown), and the item's
    popularity (``log(1 + its orders in the last 30 days)``). ``for_you_features``: ``ranking.learned.
    feature_matrix`` rows of the same candidates."""
    column = {name: i for i, name in enumerate(FOR_YOU_FEATURES)}
    scores = np.asarray(for_you_scores, dtype=np.float64)
    centred = scores - np.median(scores) if len(scores) else scores

    def read(name: str) -> np.ndarray:
        return np.nan_to_num(for_you_features[:, column[name]].astype(np.float64), nan=0.0)

    def log_count(name: str) -> np.ndarray:
        return np.log1p(read(name).clip(min=0))

    return np.column_stack(
        [
            centred,
            log_count("item_orders"),
            log_count("co_purchase_score"),
            log_count("co_purchase_last"),
            read("category_affinity"),
            read("popularity_30d"),  # already log(1 + orders)
        ]
    )


@dataclass
class Blend:
    """A fitted linear blend: ``score = ((x - mean) / scale) . weights`` over ``features``."""

    features: tuple[str, ...]
    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    metadata: dict = field(default_factory=dict)

    def standardised(self, features: np.ndarray) -> np.ndarray:
        return np.nan_to_num((np.asarray(features, dtype=np.float64) - self.mean) / self.scale, nan=0.0)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """Each feature's share of each candidate's score (rows: candidates, columns: ``features``)."""
        return self.standardised(features) * self.weights

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.standardised(features) @ self.weights

    def to_json(self) -> str:
        return json.dumps(
            {
                "features": list(self.features),
                "weights": self.weights.tolist(),
                "mean": self.mean.tolist(),
                "scale": self.scale.tolist(),
                "metadata": self.metadata,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Blend:
        """``ValueError`` for a document that is not a blend of ``FEATURES``."""
        document = json.loads(text)
        blend = cls(
            features=tuple(document["features"]),
            weights=np.asarray(document["weights"], dtype=np.float64),
            mean=np.asarray(document["mean"], dtype=np.float64),
            scale=np.asarray(document["scale"], dtype=np.float64),
            metadata=dict(document.get("metadata") or {}),
        )
        if blend.features != FEATURES or not (
            len(blend.weights) == len(blend.mean) == len(blend.scale) == len(FEATURES)
        ):
            raise ValueError("A search blend of features %s cannot score %s." % (list(blend.features), list(FEATURES)))
        if not (np.isfinite(blend.weights).all() and np.isfinite(blend.mean).all() and (blend.scale > 0).all()):
            raise ValueError("A search blend needs finite weights and positive scales.")
        return blend


def fit_blend(
    queries: Sequence[tuple[np.ndarray, int]],
    *,
    l2: float = 1.0,
    iterations: int = 50,
    tolerance: float = 1e-9,
    names: Sequence[str] = FEATURES,
) -> Blend:
    """The weights of a conditional logit over each query's candidates (``(features, index of the item bought)``
    pairs; a query whose item is not among its candidates teaches nothing and is left out), maximising
    ``sum log softmax(X w)[bought] - l2 / 2 |w|^2`` on standardised features by Newton's method (``names``: the
    columns' names; serving reads blends of ``FEATURES`` only). ``ValueError`` without any usable query."""
    usable = [(np.asarray(x, dtype=np.float64), int(t)) for x, t in queries if 0 <= t < len(x) and len(x) > 1]
    if not usable:
        raise ValueError("No training query has its bought item among two or more candidates.")
    rows = np.concatenate([x for x, _ in usable])
    mean = np.nan_to_num(np.nanmean(rows, axis=0), nan=0.0)
    scale = np.nan_to_num(np.nanstd(rows, axis=0), nan=0.0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    x = np.nan_to_num((rows - mean) / scale, nan=0.0)
    sizes = np.asarray([len(q) for q, _ in usable])
    owner = np.repeat(np.arange(len(usable)), sizes)
    targets = np.cumsum(sizes) - sizes + np.asarray([t for _, t in usable])
    chosen = x[targets].sum(axis=0)
    weights = np.zeros(x.shape[1])
    loss = np.inf
    for _ in range(iterations):
        z = x @ weights
        top = np.full(len(usable), -np.inf)
        np.maximum.at(top, owner, z)
        e = np.exp(z - top[owner])
        total = np.bincount(owner, weights=e, minlength=len(usable))
        p = e / total[owner]
        new_loss = -(z[targets].sum() - (np.log(total) + top).sum()) + 0.5 * l2 * weights @ weights
        # per query: mean feature under p; gradient and Hessian of the negative log-likelihood
        mu = np.stack([np.bincount(owner, weights=p * x[:, j], minlength=len(usable)) for j in range(x.shape[1])], 1)
        gradient = -(chosen - mu.sum(axis=0)) + l2 * weights
        hessian = (x * p[:, None]).T @ x - mu.T @ mu + l2 * np.eye(x.shape[1])
        weights = weights - np.linalg.solve(hessian, gradient)
        if abs(loss - new_loss) < tolerance * max(1.0, abs(new_loss)):
            break
        loss = new_loss
    return Blend(
        features=tuple(names),
        weights=weights,
        mean=mean,
        scale=scale,
        metadata={"queries": len(usable), "candidates": int(len(rows)), "l2": l2, "log_loss": float(new_loss)},
    )


@dataclass
class Reordered:
    """What ``rerank`` did: the candidates in their new order (scores handed out again), and per candidate
    whether personalisation moved it up."""

    candidates: list[Candidate]
    moved_up: set[int]


def rerank(
    candidates: Sequence[Candidate],
    personal: np.ndarray,
    blend: Blend,
    *,
    bought: set[int] = frozenset(),
) -> Reordered:
    """The first ``len(personal)`` of ``candidates`` (ranked best first, as ``ranking.candidates.ranked``) ordered
    by the blend of their relevance (their place) and ``personal`` features (``VISITOR`` columns); the rest after,
    unchanged. Each re-ordered candidate is a copy keeping its reasons and components, with the score of the
    candidate that held its new place before (so the scores keep their scale), components ``relevance``,
    ``personal`` and ``popularity`` (the blend's three parts) and, when it moved up and the visitor's own signals
    pushed it (``personal`` > 0), a reason first: ``BOUGHT_REASON`` for an item in ``bought``, else
    ``PERSONAL_REASON``. Nothing is added or dropped."""
    ordered = ranked(candidates)
    n = min(len(personal), len(ordered))
    if n < 2:
        return Reordered(list(ordered), set())
    head = ordered[:n]
    scores = [c.score for c in head]
    features = np.column_stack([relevance_features(n), np.asarray(personal, dtype=np.float64)[:n]])
    parts = blend.contributions(features)
    relevance = parts[:, : len(RELEVANCE)].sum(axis=1)
    propensity = parts[:, len(RELEVANCE) : len(RELEVANCE) + len(PERSONAL)].sum(axis=1)
    popularity = parts[:, len(RELEVANCE) + len(PERSONAL) :].sum(axis=1)
    blended = relevance + propensity + popularity
    # ties keep the search's order
    order = np.lexsort((np.arange(n), -blended))
    result, moved = [], set()
    for place, old in enumerate(order.tolist()):
        candidate = head[old].copy()
        candidate.score = scores[place]
        candidate.components["relevance"] = float(relevance[old])
        candidate.components["personal"] = float(propensity[old])
        candidate.components["popularity"] = float(popularity[old])
        if place < old and propensity[old] > 0:
            moved.add(candidate.item_id)
            reason = BOUGHT_REASON if candidate.item_id in bought else PERSONAL_REASON
            candidate.reasons = [reason, *[r for r in candidate.reasons if r != reason]]
        result.append(candidate)
    result += [c.copy() for c in ordered[n:]]
    _strictly_falling(result)
    return Reordered(result, moved)


def _strictly_falling(candidates: list[Candidate]) -> None:
    """Make equal neighbouring scores fall a little, so that sorting by score then item id (every later ranking
    step) keeps this order; the change is at most a few units in the last place."""
    for i in range(1, len(candidates)):
        if candidates[i].score >= candidates[i - 1].score:
            candidates[i].score = float(np.nextafter(candidates[i - 1].score, -np.inf))


# ---------------------------------------------------------------- training queries simulated from orders

#: Words never taken as a simulated query (too common in product titles to stand for the product).
QUERY_STOP_WORDS = frozenset(
    "and the for with of in on to a an set box pack bag size small large mini big asst assorted design "
    "colour colours col".split()
)


def words(text: str) -> list[str]:
    """Lower-case words with plurals folded (a stand-in for the full-text index's stemming)."""
    out = []
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if len(word) > 4 and word.endswith("ies"):
            word = word[:-3] + "y"
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


class TitleIndex:
    """Keyword search over item titles in memory (BM25; a query's words must all match, else any of them; ties by
    item id): the plain search that simulated training queries are answered with."""

    def __init__(self, titles: dict[int, str], k1: float = 1.2, b: float = 0.75):
        self.postings: dict[str, dict[int, int]] = defaultdict(dict)
        self.lengths: dict[int, int] = {}
        for item in sorted(titles):
            tokens = words(titles[item])
            self.lengths[item] = len(tokens)
            for token in tokens:
                self.postings[token][item] = self.postings[token].get(item, 0) + 1
        self.mean_length = float(np.mean(list(self.lengths.values()))) if self.lengths else 1.0
        self.k1, self.b, self.n = k1, b, len(self.lengths)

    def search(self, query: str, limit: int) -> list[int]:
        tokens = [t for t in dict.fromkeys(words(query)) if t in self.postings]
        if not tokens:
            return []
        sets = [set(self.postings[t]) for t in tokens]
        matched = set.intersection(*sets) or set.union(*sets)
        scores = {}
        for item in matched:
            total = 0.0
            for t in tokens:
                tf = self.postings[t].get(item, 0)
                if tf:
                    df = len(self.postings[t])
                    idf = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
                    total += (
                        idf
                        * tf
                        * (self.k1 + 1)
                        / (tf + self.k1 * (1 - self.b + self.b * self.lengths[item] / self.mean_length))
                    )
            scores[item] = total
        return sorted(scores, key=lambda item: (-scores[item], item))[:limit]


def simulated_query(title: str, rng: random.Random) -> tuple[str, int]:
    """One or two content words of ``title`` (at random, in their order) and how many; ("", 0) when it has none."""
    content = [
        w for w in dict.fromkeys(re.findall(r"[a-z]+", title.lower())) if len(w) >= 3 and w not in QUERY_STOP_WORDS
    ]
    if not content:
        return "", 0
    n = min(len(content), rng.choice((1, 2)))
    picked = sorted(rng.sample(range(len(content)), n))
    return " ".join(content[i] for i in picked), n


def visitor_features(
    log: learned.EventLog,
    visitor: str,
    at: float,
    items: Sequence[int],
    score: Callable[[np.ndarray], np.ndarray],
    factors: learned.ItemFactors | None = None,
) -> np.ndarray:
    """``personal_features`` of ``items`` for ``visitor`` at ``at`` from an in-memory log (``score``: the "for you"
    model's scores of ``learned.feature_matrix`` rows), as serving computes them from the database."""
    candidates, history, signals = log.candidates_at(visitor, at, factors=factors, shown=items)
    features = learned.feature_matrix(candidates, history, signals)
    return personal_features(score(features), features)


def simulated_rows(
    log: learned.EventLog,
    points: Sequence[learned.LabelPoint],
    titles: dict[int, str],
    score: Callable[[np.ndarray], np.ndarray],
    *,
    factors: learned.ItemFactors | None = None,
    index: TitleIndex | None = None,
    per_order: int = 2,
    seed: int = 0,
) -> list[tuple[np.ndarray, int]]:
    """Training queries for ``fit_blend`` from orders, where no search log says what was searched: for up to
    ``per_order`` items of each order (``points``), a query of one or two words of its title, answered by keyword
    search over ``titles`` (``TitleIndex``); its first ``CANDIDATES`` results featured for the shopper as of the
    order's time (events before it only), labelled by the item. Queries whose item is not among two or more
    results are left out."""
    rng = random.Random(seed)
    index = index or TitleIndex(titles)
    rows = []
    for point in points:
        items = sorted(item for item in point.items if item in titles)
        for item in rng.sample(items, min(per_order, len(items))):
            text, _ = simulated_query(titles[item], rng)
            head = index.search(text, CANDIDATES) if text else []
            if item not in head or len(head) < 2:
                continue
            personal = visitor_features(log, point.visitor, point.at, head, score, factors)
            rows.append((np.column_stack([relevance_features(len(head)), personal]), head.index(item)))
    return rows
