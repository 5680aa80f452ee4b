"""The "similar items" candidate stage's merge: quotas in source order, fill-up, every source's score and rank."""

import numpy as np

from ragrec_django.ranking import item_candidates as stage


def test_gather_takes_each_quota_in_order_then_fills_up_by_rank_and_keeps_every_rank():
    lists = {
        "space:text": [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)],
        "co_purchase": [(5, 4.0), (1, 3.0), (6, 2.0)],
        "co_view": [(9, 2.0), (7, 1.0)],
    }
    quotas = {"space:text": 2, "co_purchase": 1, "co_view": 1, "knn": 5}
    got = stage.gather(lists, quotas, limit=6, exclude={9})
    # quotas: 1, 2 | 5 | (9, excluded); then the second ranks past each quota: 1 (had), 7; the third: 3, 6
    assert got.items.tolist() == [1, 2, 5, 7, 3, 6]
    assert got.sources == ["space:text", "co_purchase", "co_view", "knn"]
    one = got.items.tolist().index(1)
    assert got.ranks["space:text"][one] == 1 and got.ranks["co_purchase"][one] == 2
    assert got.scores["co_purchase"][one] == 3.0 and np.isnan(got.ranks["knn"]).all()
    assert got.source_of(got.items.tolist().index(5)) == "co_purchase"
    assert got.found({1, 5, 8}) == {"space:text": 1, "co_purchase": 2, "co_view": 0, "knn": 0, "total": 2}


def test_gather_stops_at_the_limit_and_best_ranks_positive_scores():
    lists = {"a": [(i, 1.0) for i in range(10)], "b": [(i, 1.0) for i in range(10, 20)]}
    got = stage.gather(lists, {"a": 3, "b": 3}, limit=8)
    assert got.items.tolist() == [0, 1, 2, 10, 11, 12, 3, 13]
    assert stage.best({4: 2.0, 3: 2.0, 5: 0.0, 6: float("nan"), 7: 9.0}, exclude={7}, limit=5) == [(3, 2.0), (4, 2.0)]
    assert stage.similar_quotas(["text"]) == {"space:text": stage.SPACE_QUOTA, **stage.BEHAVIOUR_QUOTAS}
