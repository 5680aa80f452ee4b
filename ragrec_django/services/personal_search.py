"""Personalised search: a known visitor's search results re-ordered by their learned propensities.

With ``RAGREC["RANKER"]`` naming ``"learned"`` for ``"search"`` (``{"search": "learned"}``, or ``"learned"`` for
all; a serving configuration's ``ranker`` rule overrides it), ``services.search`` hands its relevance-ordered
candidates to ``personalised``: the first ``ranking.personal_search.CANDIDATES`` of them get the visitor's
features from the learned "for you" machinery (the active ``for_you`` model's score of each, their repeat
purchases, co-purchases and category affinity, read as ``learned_for_you`` reads them) and are re-ordered by
the active search blend (``ranking.personal_search.Blend``, fitted on the shop's data and stored as a
``RankerModel`` version of recommender ``"search"``: ``store_blend``). Only the query's own candidates move;
none is added or dropped.

An anonymous visitor, a visitor without history, another ranker, a missing ``for_you`` model or search blend,
or any error: the candidates come back as they were (the same list), so the search is today's exactly; a
missing model or an error is logged (``ragrec_django.ranker``), never raised.

``train_blend`` (``manage.py ragrec_train_search_blend``) fits a blend on the shop's own orders: with no search
log to learn from, each order's items stand for what was searched (a query of one or two words of the item's
title, answered by keyword search over the titles), the shopper's earlier events for the visitor, and the
orders the active "for you" model was not trained on (its hold-out and anything newer) for the data.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable

from ..models import Item
from ..ranking import learned
from ..ranking import personal_search as blending
from ..ranking.candidates import Candidate, ranked
from ..storage import ranking as store
from .ranker import MODEL_CHECK_SECONDS, active_model, ranker_for, signal_source, training_log
from .results import Visitor

logger = logging.getLogger("ragrec_django.ranker")

RECOMMENDER = "search"

_blend: list = [float("-inf"), None, None]  # (monotonic time checked, content hash, Blend or None)
_blend_lock = threading.Lock()


def active_blend() -> blending.Blend | None:
    """The active search blend (cached per process by content hash, re-checked every ``MODEL_CHECK_SECONDS``),
    or None. ``ValueError`` for a stored document that is not a blend."""
    now = time.monotonic()
    checked, digest, blend = _blend
    if now - checked < MODEL_CHECK_SECONDS:
        return blend
    current = store.active_ranker_hash(RECOMMENDER)
    if current != digest:
        row = store.active_ranker(RECOMMENDER) if current else None
        blend = blending.Blend.from_json(row.model_text) if row is not None else None
        digest = current
    with _blend_lock:
        _blend[:] = [now, digest, blend]
    return blend


def forget_blend() -> None:
    """Drop the cached blend (tests; a process that must reload at once)."""
    with _blend_lock:
        _blend[:] = [float("-inf"), None, None]


def store_blend(blend: blending.Blend, *, promote: bool = True):
    """Store a fitted blend as a version of recommender ``"search"`` (``RankerModel``), active when ``promote``
    (the one active before is retired; ``services.ranker.rollback_version("search")`` goes back)."""
    text = blend.to_json()
    digest = hashlib.sha256(text.encode()).hexdigest()
    metadata = {
        "kind": "search_blend",
        "features": list(blend.features),
        "weights": dict(zip(blend.features, blend.weights.tolist(), strict=True)),
        "content_hash": digest,
        **blend.metadata,
    }
    version = store.store_ranker(RECOMMENDER, model_text=text, factors=b"", metadata=metadata, content_hash=digest)
    if promote:
        store.promote_ranker(version)
    forget_blend()
    return version


def personalised(
    candidates: list[Candidate], visitor: Visitor | None, config: str, *, at: float | None = None
) -> list[Candidate]:
    """``candidates`` (a search's, scored for relevance) re-ordered for ``visitor`` as of ``at`` (default now), or
    the same list untouched when personalisation does not apply or cannot serve (see the module's docstring)."""
    if not visitor or len(candidates) < 2 or ranker_for(RECOMMENDER, config) != "learned":
        return candidates
    try:
        model = active_model("for_you")
        if model is None:
            logger.warning("RAGREC RANKER search is 'learned' but no for_you model is active: plain search.")
            return candidates
        blend = active_blend()
        if blend is None:
            logger.warning("RAGREC RANKER search is 'learned' but no search blend is active: plain search.")
            return candidates
        now = time.time() if at is None else at
        lines, _ = store.visitor_lines(user_id=visitor.user_id, session_key=visitor.session_key, at=now)
        history = learned.VisitorHistory.from_lines(now, lines)
        if not len(history.items):
            return candidates  # nothing known of them yet
        head = [c.item_id for c in ranked(candidates)[: blending.CANDIDATES]]
        found, history, signals = learned.candidates_at(signal_source(now), history, factors=model.factors, shown=head)
        features = learned.feature_matrix(found, history, signals)
        scores = model.predict(learned.serving_matrix(features, model.features))
        personal = blending.personal_features(scores, features)
        bought = set(history.items[history.purchases].tolist())
        return blending.rerank(candidates, personal, blend, bought=bought).candidates
    except Exception:  # noqa: BLE001 - personalisation must never fail a search: the plain order serves it
        logger.exception("Personalised search failed: plain search.")
        return candidates


class NotEnoughQueries(Exception):
    """Too few orders to fit a search blend from; nothing was stored."""


def train_blend(
    *,
    since: float | None = None,
    per_order: int = 2,
    max_orders: int = 5000,
    min_queries: int = 50,
    l2: float = 1.0,
    promote: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
):
    """Fit a search blend on the orders placed since ``since`` (Unix seconds; default: the active "for you"
    model's hold-out start, so that its scores are of orders it did not learn from) by returning shoppers, at most
    ``max_orders`` of them (a seeded sample), and store it (``store_blend``). ``NotEnoughQueries`` without an
    active "for you" model or with fewer than ``min_queries`` usable queries; nothing is stored then."""
    say = progress or (lambda message: None)
    model = active_model("for_you")
    if model is None:
        raise NotEnoughQueries("No for_you model is active: train one first (manage.py ragrec_train_ranker).")
    window = model.metadata.get("data_window") or {}
    start = float(since if since is not None else window.get("holdout_start", window.get("end", 0.0)))
    from ..ml.ranker import NotEnoughData

    say("reading events")
    try:
        log = training_log()[0]
    except NotEnoughData:
        raise NotEnoughQueries("The shop has no events yet.") from None
    points = learned.label_points(log, since=start)
    if len(points) > max_orders:
        points = sorted(random.Random(seed).sample(points, max_orders), key=lambda p: (p.at, p.visitor))
    say("%d order(s) of returning shoppers since %s" % (len(points), time.strftime("%Y-%m-%d", time.gmtime(start))))
    titles = dict(Item.objects.values_list("id", "title"))

    def score(features):
        return model.predict(learned.serving_matrix(features, model.features))

    rows = blending.simulated_rows(log, points, titles, score, factors=model.factors, per_order=per_order, seed=seed)
    if len(rows) < min_queries:
        raise NotEnoughQueries(
            "Only %d usable simulated search(es) from %d order(s) since %s; the blend needs at least %d. "
            "Personalised search keeps the current blend."
            % (len(rows), len(points), time.strftime("%Y-%m-%d", time.gmtime(start)), min_queries)
        )
    say("fitting on %d simulated searches" % len(rows))
    blend = blending.fit_blend(rows, l2=l2)
    blend.metadata.update(
        {
            "since": start,
            "orders": len(points),
            "per_order": per_order,
            "for_you_model": model.content_hash,
            "trained_at": time.time(),
        }
    )
    return store_blend(blend, promote=promote)
