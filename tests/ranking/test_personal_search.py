"""The pure part of personalised search: its features, the fitted blend and the re-ranking of a query's own
candidates (``ranking.personal_search``)."""

import json

import numpy as np
import pytest

from ragrec_django.ranking import learned
from ragrec_django.ranking import personal_search as blending
from ragrec_django.ranking.candidates import Candidate


def blend(**weights) -> blending.Blend:
    n = len(blending.FEATURES)
    return blending.Blend(
        blending.FEATURES,
        np.asarray([float(weights.get(name, 0.0)) for name in blending.FEATURES]),
        np.zeros(n),
        np.ones(n),
    )


def candidates(n: int) -> list[Candidate]:
    """``n`` candidates of falling scores, each with the search's reason; ids not in score order."""
    return [
        Candidate(item_id=100 - i, score=1.0 / (61 + i), reasons=["matches 'mug'"], components={"keyword_rank": i + 1})
        for i in range(n)
    ]


def test_the_relevance_feature_is_the_place():
    features = blending.relevance_features(4)
    np.testing.assert_allclose(features[:, 0], np.log1p([0, 1, 2, 3]))
    assert blending.relevance_features(0).shape == (0, 1)


def test_personal_features_read_the_for_you_rows():
    column = {name: i for i, name in enumerate(learned.FEATURES)}
    rows = np.full((3, len(learned.FEATURES)), np.nan, dtype=np.float32)
    rows[:, column["item_orders"]] = [0, 3, 0]
    rows[:, column["co_purchase_score"]] = [np.nan, 1, 7]
    rows[:, column["co_purchase_last"]] = [2, 0, 0]
    rows[:, column["category_affinity"]] = [np.nan, 0.5, 0.25]
    rows[:, column["popularity_30d"]] = np.log1p([4, 0, 9])
    features = blending.personal_features(np.asarray([1.0, 3.0, 2.0]), rows)
    assert features.shape == (3, len(blending.VISITOR)) and blending.VISITOR[-1] == "popularity"
    np.testing.assert_allclose(features[:, 0], [-1.0, 1.0, 0.0])  # less the median
    np.testing.assert_allclose(features[:, 1], np.log1p([0, 3, 0]))
    np.testing.assert_allclose(features[:, 2], np.log1p([0, 1, 7]))
    np.testing.assert_allclose(features[:, 3], np.log1p([2, 0, 0]))
    np.testing.assert_allclose(features[:, 4], [0.0, 0.5, 0.25])
    np.testing.assert_allclose(features[:, 5], np.log1p([4, 0, 9]))


def synthetic_queries(true_weights, queries=400, size=20, seed=0):
    """Queries whose bought item is drawn from the softmax of ``features . true_weights``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(queries):
        personal = np.column_stack(
            [
                rng.normal(size=size),
                rng.poisson(0.3, size=size),
                rng.poisson(1, size=size),
                np.zeros(size),
                np.zeros(size),
                rng.exponential(size=size),
            ]
        )
        x = np.column_stack([blending.relevance_features(size), personal])
        logits = x @ true_weights
        p = np.exp(logits - logits.max())
        out.append((x, int(rng.choice(size, p=p / p.sum()))))
    return out


def test_fit_blend_recovers_the_weights_that_made_the_choices():
    true = np.asarray([-1.0, 0.8, 1.5, 0.0, 0.0, 0.0, 0.5])
    queries = synthetic_queries(true, queries=3000)
    fitted = blending.fit_blend(queries, l2=0.01)
    # the weights on the original scale: w / scale
    recovered = fitted.weights / fitted.scale
    np.testing.assert_allclose(recovered[:3], true[:3], atol=0.25)
    assert recovered[-1] == pytest.approx(0.5, abs=0.2)
    assert fitted.metadata["queries"] == len(queries)
    # queries whose item is not among the candidates (-1) teach nothing; none at all is an error
    assert blending.fit_blend([*queries, (queries[0][0], -1)], l2=0.01).metadata["queries"] == len(queries)
    with pytest.raises(ValueError, match="No training query"):
        blending.fit_blend([(queries[0][0], -1)])


def test_a_blend_survives_its_json_and_refuses_another_feature_list():
    fitted = blending.fit_blend(synthetic_queries(np.asarray([-1.0, 0.8, 1.5, 0, 0, 0, 0.5]), queries=50), l2=1.0)
    again = blending.Blend.from_json(fitted.to_json())
    x = synthetic_queries(np.zeros(7), queries=1, seed=3)[0][0]
    np.testing.assert_allclose(again.score(x), fitted.score(x))
    document = fitted.to_json().replace('"for_you"', '"something_else"')
    with pytest.raises(ValueError, match="cannot score"):
        blending.Blend.from_json(document)
    document = json.loads(fitted.to_json())
    document["scale"][0] = 0.0
    with pytest.raises(ValueError, match="positive scales"):
        blending.Blend.from_json(json.dumps(document))


def test_rerank_moves_what_the_visitor_bought_up_among_the_query_s_own_candidates():
    found = candidates(8)
    personal = np.zeros((5, len(blending.VISITOR)))
    personal[4, 1] = np.log1p(3)  # the fifth was bought three times
    personal[2, 0] = 3.0  # the third: the model likes it, not bought
    out = blending.rerank(found, personal, blend(relevance_log_rank=-1.0, bought_before=3.0, for_you=0.4), bought={96})
    ids = [c.item_id for c in out.candidates]
    assert sorted(ids) == sorted(c.item_id for c in found)  # nothing added or dropped
    assert ids[0] == 96 and ids[5:] == [95, 94, 93]  # beyond the five re-ranked: unchanged, after them
    assert out.moved_up == {96, 98}
    assert out.candidates[0].reasons == [blending.BOUGHT_REASON, "matches 'mug'"]
    assert out.candidates[ids.index(98)].reasons[0] == blending.PERSONAL_REASON
    assert out.candidates[ids.index(100)].reasons == ["matches 'mug'"]  # moved down: no new reason
    # the scores of the places, falling strictly; components of the two parts; the inputs untouched
    scores = [c.score for c in out.candidates]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert scores[0] == found[0].score and scores[7] == pytest.approx(found[7].score)
    assert out.candidates[0].components["personal"] > 0 and "relevance" in out.candidates[0].components
    assert [c.item_id for c in found] == list(range(100, 92, -1)) and "personal" not in found[0].components


def test_rerank_without_personal_weight_keeps_the_search_order_even_with_tied_scores():
    found = candidates(6)
    found[2].score = found[3].score = found[1].score  # a tie: item id decides, as every later step sorts
    personal = np.random.default_rng(0).normal(size=(6, len(blending.VISITOR)))
    out = blending.rerank(found, personal, blend(relevance_log_rank=-1.0))
    assert [c.item_id for c in out.candidates] == [100, 97, 98, 99, 96, 95] and not out.moved_up
    scores = [c.score for c in out.candidates]
    assert sorted(out.candidates, key=lambda c: (-c.score, c.item_id)) == out.candidates
    assert len(set(scores)) == len(scores)
    assert blending.rerank(found[:1], personal[:1], blend(for_you=5.0)).candidates[0].item_id == 100
