"""The candidate stage of "similar items", read from the database: every source's ranked list for one anchor item,
merged by ``ranking.item_candidates.gather`` with each source's raw score and rank.

Sources (``ranking/item_candidates.py``): the anchor's nearest neighbours in each vector space of
``SIMILAR_WEIGHTS`` that is ready, its co-purchases (``storage.ranking.co_purchases``: its latest orders, verified,
origins capped, as the learned "for you" reads them), its co-views (``storage.ranking.co_views``) and its item-kNN
neighbours in the active learned model. The behavioural sources read events strictly before ``at``.

With ``RAGREC["RANKER"] = {"similar": "learned"}`` (or a serving configuration's ``ranker`` rule),
``services.recommend.similar_items`` asks ``learned_similar`` first: the active "similar" model
(``train_similar_ranker``, its own ``RankerModel`` versions) ranks this stage's candidates; a missing model, an
anchor without candidates or any error returns None (logged) and the fusion of the vector spaces serves.
``benchmarks/similar_candidates.py`` measures the stage's candidate recall, ``benchmarks/similar_learned.py`` the
ranking (docs/evaluation.md, "Learned similar items").
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import numpy as np

from .. import storage
from ..conf import ragrec_settings
from ..exceptions import ItemNotFound, UnknownServingConfig
from ..models import Item
from ..ranking import item_candidates as stage
from ..ranking import learned
from ..ranking.candidates import Candidate
from ..storage import ranking as store
from .ranker import (
    GATE_MARGIN,
    GATE_MIN_QUERIES,
    TrainingOutcome,
    active_model,
    candidate_count,
    keep_or_promote,
    ranker_for,
    signal_source,
    training_log,
)
from .results import RecommendationList, anchor_item, finish, item_filter, serving_rules, space_ready

logger = logging.getLogger("ragrec_django.ranker")
#: Whether this process has said that no "similar" model is active (said once, not on every request).
_warned: set[str] = set()

#: The reason of a learned "similar" result, by its strongest source (``%s``: the anchor's title).
SIMILAR_REASONS = {
    "co_purchase": "bought with %s",
    "knn": "bought with %s",
    "co_view": "viewed with %s",
}

#: Co-views: the anchor's latest this many viewers, and what each viewed within this window of viewing it.
CO_VIEW_VIEWERS = 50
CO_VIEW_WINDOW_SECONDS = 24 * 3600.0


def similar_candidates(
    anchor: int,
    *,
    at: float | None = None,
    limit: int = stage.SIMILAR_CANDIDATES,
    filters: storage.ItemFilter | None = None,
    factors: learned.ItemFactors | None = None,
    spaces: list[str] | None = None,
) -> stage.StageCandidates:
    """Up to ``limit`` candidates for the item ``anchor`` (never itself) from every source, as of ``at`` (default
    now). ``filters`` narrow the vector spaces' neighbours (the serving rules still apply after ranking);
    ``factors``: the item model whose kNN neighbours are a source (default: the active learned model's, if any);
    ``spaces``: the vector spaces (default: those of ``SIMILAR_WEIGHTS`` with a weight, when ready)."""
    now = time.time() if at is None else float(at)
    anchor = int(anchor)
    if spaces is None:
        spaces = _served_spaces()
    quotas = stage.similar_quotas(spaces)
    lists: dict[str, list[tuple[int, float]]] = {}
    neighbour_filter = filters or storage.ItemFilter(exclude_ids=frozenset({anchor}))
    for space in spaces:
        found = storage.nearest_to_item(space, anchor, stage.SPACE_QUOTA * 2, filters=neighbour_filter)
        lists[stage.space_source(space)] = [(n.item_id, 1.0 - n.distance) for n in found or ()]
    ((bought, _, _),) = store.co_purchases(
        [[anchor]],
        at=now,
        orders_per_item=learned.CO_PURCHASE_ORDERS_PER_ITEM,
        max_per_source=ragrec_settings.POPULARITY_MAX_PER_SOURCE,
    )
    lists["co_purchase"] = stage.best(bought, {anchor}, limit)
    lists["co_view"] = store.co_views(
        anchor, at=now, viewers=CO_VIEW_VIEWERS, window_seconds=CO_VIEW_WINDOW_SECONDS, limit=limit
    )
    lists["knn"] = knn_neighbours(factors if factors is not None else _active_factors(), anchor, limit)
    return stage.gather(lists, quotas, limit=limit, exclude={anchor})


def knn_neighbours(factors: learned.ItemFactors | None, anchor: int, limit: int) -> list[tuple[int, float]]:
    """The anchor's item-kNN neighbours in ``factors`` (best first, ties by lower id); empty without neighbours."""
    if factors is None:
        return []
    scores = factors.knn_scores(np.asarray([anchor], dtype=np.int64), np.ones(1))
    return [] if scores is None else learned._best_of(factors.item_ids, scores, {anchor}, limit)


def _active_factors() -> learned.ItemFactors | None:
    model = active_model("for_you")
    return None if model is None else model.factors


def _served_spaces() -> list[str]:
    return [space for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items() if weight and space_ready(space)]


# ---------------------------------------------------------------- serving


def similar_rows(
    anchor: int,
    *,
    at: float,
    names: list[str],
    factors: learned.ItemFactors | None,
    filters: storage.ItemFilter | None = None,
    exclude: set[int] = frozenset(),
    source=None,
) -> tuple[stage.StageCandidates, np.ndarray]:
    """The stage's candidates for ``anchor`` as of ``at`` (none of ``exclude``) and their ``names`` features, read
    from the database: what ``ranking.item_candidates.query_rows`` computes from memory for training (``source``:
    the shared signals' reader, default ``services.ranker.signal_source(at)``)."""
    candidates = similar_candidates(anchor, at=at, filters=filters, factors=factors, limit=candidate_count())
    keep = np.asarray([int(item) not in exclude for item in candidates.items.tolist()], dtype=bool)
    if not keep.all():
        candidates = stage.StageCandidates(
            candidates.items[keep],
            {s: v[keep] for s, v in candidates.scores.items()},
            {s: v[keep] for s, v in candidates.ranks.items()},
        )
    source = source if source is not None else signal_source(at)
    signals = source.item_signals(np.concatenate([[anchor], candidates.items]).astype(np.int64), at)
    return candidates, stage.feature_matrix(stage.feature_columns(candidates, signals, at), names, len(candidates))


def learned_similar(item_key: str, *, k: int, config: str, at: float | None = None) -> RecommendationList | None:
    """ "Similar items" ranked by the active "similar" model over this stage's candidates, as of ``at`` (default
    now); None when the ranker of ``similar`` is not "learned" for ``config``, and None (logged) when the model
    cannot serve (none active, no candidates, any error), so the fusion of the vector spaces does."""
    if ranker_for("similar", config) != "learned":
        return None
    try:
        model = active_model("similar")
        if model is None:
            if not _warned:  # once per process: RANKER "learned" for all recommenders need not mean a similar model
                _warned.add("no model")
                logger.warning(
                    "RAGREC RANKER similar is 'learned' but no model is active (manage.py ragrec_train_ranker "
                    "--recommender similar): serving fusion."
                )
            return None
        anchor = anchor_item(item_key)
        rules = serving_rules(config)
        variants = (
            set(Item.objects.filter(group_key=anchor.group_key).values_list("id", flat=True))
            if anchor.group_key
            else set()
        )
        filters = dataclasses.replace(
            item_filter(rules, exclude_ids={anchor.id} | variants),
            exclude_group_keys=(anchor.group_key,) if anchor.group_key else (),
        )
        now = time.time() if at is None else float(at)
        candidates, features = similar_rows(
            anchor.id, at=now, names=model.features, factors=model.factors, filters=filters, exclude=variants
        )
        if not len(candidates):
            return None
        scores = model.predict(features)
        order = np.lexsort((candidates.items, -scores))
        result = []
        for rank, position in enumerate(order.tolist()):
            source = candidates.source_of(position) or ""
            reason = SIMILAR_REASONS.get(source, "similar to %s") % anchor.title
            components = {"learned": float(scores[position])}
            for name, ranks in candidates.ranks.items():
                if not np.isnan(ranks[position]):
                    components[name + "_rank"] = float(ranks[position])
            # the score keeps the model's order through the serving rules
            result.append(
                Candidate(
                    item_id=int(candidates.items[position]),
                    score=float(len(order) - rank),
                    reasons=[reason],
                    components=components,
                )
            )
        return finish("similar", config, result, k, rules=rules)
    except (ItemNotFound, UnknownServingConfig):
        raise  # the caller's errors: fusion would raise them too
    except Exception:  # noqa: BLE001 - the learned path must never fail a request: fusion serves it
        logger.exception("Learned ranking of similar failed: serving fusion.")
        return None


# ---------------------------------------------------------------- training


def space_lists_from_database(spaces: list[str], depth: int = stage.SPACE_QUOTA * 2) -> Callable[[int], dict]:
    """``anchor -> {"space:<name>": [(item, cosine), ...]}`` read by ``storage.nearest_to_item`` as
    ``similar_candidates`` reads them (the vectors have no history: the current ones stand for any time)."""

    def lists(anchor: int) -> dict:
        found = {}
        for space in spaces:
            neighbours = storage.nearest_to_item(
                space, anchor, depth, filters=storage.ItemFilter(exclude_ids=frozenset({anchor}))
            )
            found[stage.space_source(space)] = [(n.item_id, 1.0 - n.distance) for n in neighbours or ()]
        return found

    return lists


def train_similar_ranker(
    *,
    label_days: float = 180,
    holdout_days: float = 14,
    margin: float = GATE_MARGIN,
    min_queries: int = GATE_MIN_QUERIES,
    promote: bool = True,
    force: bool = False,
    options=None,
    progress: Callable[[str], None] | None = None,
) -> TrainingOutcome:
    """Train a "similar items" version on the shop's orders (``ml.ranker.fit_similar``), judge it on the latest
    ``holdout_days`` against the fusion of the vector spaces (``SIMILAR_WEIGHTS``) on nDCG@10 and promote it when
    it wins by ``margin`` over at least ``min_queries`` anchors. ``NotEnoughData`` when there are too few orders."""
    from ..ml import ranker as trainer

    say = progress or (lambda message: None)
    started = time.time()
    say("reading events")
    log, events, end = training_log()
    spaces = _served_spaces()
    weights = {space: float(ragrec_settings.SIMILAR_WEIGHTS[space]) for space in spaces}
    options = options or trainer.SimilarOptions(candidates=candidate_count())
    options = dataclasses.replace(options, label_days=label_days, holdout_days=holdout_days)
    fitted = trainer.fit_similar(
        log,
        end=end,
        space_lists=space_lists_from_database(spaces),
        spaces=spaces,
        space_weights=weights,
        options=options,
        progress=say,
    )
    fitted.ranker.metadata.update({"events": events, "trained_at": started})
    return keep_or_promote(
        "similar",
        fitted.ranker,
        fitted.gate,
        against="fusion",
        margin=margin,
        min_queries=min_queries,
        promote=promote,
        force=force,
    )
