"""The candidate stage of "similar items", read from the database: every source's ranked list for one anchor item,
merged by ``ranking.item_candidates.gather`` with each source's raw score and rank.

Sources (``ranking/item_candidates.py``): the anchor's nearest neighbours in each vector space of
``SIMILAR_WEIGHTS`` that is ready, its co-purchases (``storage.ranking.co_purchases``: its latest orders, verified,
origins capped, as the learned "for you" reads them), its co-views (``storage.ranking.co_views``) and its item-kNN
neighbours in the active learned model. The behavioural sources read events strictly before ``at``.

No model ranks these candidates yet (docs/evaluation.md, "Similar items and search: candidate stages"):
``similar_items`` serves its fusion of the vector spaces as before, and this stage is what a learned "similar"
would rank; ``benchmarks/similar_candidates.py`` measures its candidate recall.
"""

from __future__ import annotations

import time

import numpy as np

from .. import storage
from ..conf import ragrec_settings
from ..ranking import item_candidates as stage
from ..ranking import learned
from ..storage import ranking as store
from .results import space_ready

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
        spaces = [space for space, weight in ragrec_settings.SIMILAR_WEIGHTS.items() if weight and space_ready(space)]
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
    from .ranker import active_model

    model = active_model("for_you")
    return None if model is None else model.factors
