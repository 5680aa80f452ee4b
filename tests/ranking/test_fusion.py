"""Reciprocal rank fusion and weighted score fusion."""

import copy

import pytest

from ragrec_django.ranking import reciprocal_rank_fusion, weighted_score_fusion

from .factories import cand, ids


@pytest.fixture
def lists():
    return {
        "text": [cand(1, 0.9), cand(2, 0.8), cand(3, 0.7)],
        "image": [cand(3, 0.95), cand(1, 0.5)],
    }


def test_rrf_scores_follow_the_formula(lists):
    fused = {c.item_id: c for c in reciprocal_rank_fusion(lists, k=60)}
    assert fused[1].score == pytest.approx(1 / 61 + 1 / 62)
    assert fused[2].score == pytest.approx(1 / 62)
    assert fused[3].score == pytest.approx(1 / 63 + 1 / 61)
    assert ids(reciprocal_rank_fusion(lists, k=60)) == [1, 3, 2]


def test_rrf_records_rank_original_score_and_rrf_per_source(lists):
    fused = {c.item_id: c for c in reciprocal_rank_fusion(lists)}
    assert fused[3].components == pytest.approx(
        {"text": 0.7, "text_rank": 3, "image": 0.95, "image_rank": 1, "rrf": fused[3].score}
    )
    assert fused[2].components == pytest.approx({"text": 0.8, "text_rank": 2, "rrf": 1 / 62})


def test_rrf_k_changes_the_balance():
    lists = {"a": [cand(1), cand(2)], "b": [cand(3), cand(2), cand(4), cand(5), cand(1)]}
    # Small k rewards a first place; large k rewards appearing near the top of both lists.
    assert ids(reciprocal_rank_fusion(lists, k=0))[0] == 1
    assert ids(reciprocal_rank_fusion(lists, k=60))[0] == 2


def test_rrf_weights_change_the_order(lists):
    assert ids(reciprocal_rank_fusion(lists, weights={"image": 3.0})) == [3, 1, 2]
    fused = {c.item_id: c for c in reciprocal_rank_fusion(lists, weights={"image": 3.0})}
    assert fused[1].score == pytest.approx(1 / 61 + 3 / 62)


def test_rrf_zero_weight_silences_a_source(lists):
    assert ids(reciprocal_rank_fusion(lists, weights={"text": 0.0})) == [3, 1, 2]
    assert reciprocal_rank_fusion(lists, weights={"text": 0.0})[-1].score == 0.0


def test_rrf_ties_are_broken_by_item_id_whatever_the_input_order():
    assert ids(reciprocal_rank_fusion({"a": [cand(5), cand(2)], "b": [cand(2), cand(5)]})) == [2, 5]
    assert ids(reciprocal_rank_fusion({"b": [cand(5), cand(2)], "a": [cand(2), cand(5)]})) == [2, 5]


def test_rrf_counts_a_repeat_within_one_list_at_its_first_rank():
    fused = reciprocal_rank_fusion({"a": [cand(1, 0.9), cand(2, 0.8), cand(1, 0.1)]})
    assert fused[0].score == pytest.approx(1 / 61)
    assert fused[0].components["a"] == 0.9
    assert fused[0].components["a_rank"] == 1


def test_fusion_keeps_every_sources_reasons_and_components_once():
    lists = {
        "text": [cand(1, 0.8, reasons=["matches 'mug'"], components={"bm25": 3.2})],
        "copurchase": [cand(1, 12, reasons=["bought with Red mug", "matches 'mug'"])],
    }
    fused = reciprocal_rank_fusion(lists)[0]
    assert fused.reasons == ["matches 'mug'", "bought with Red mug"]
    assert fused.components["bm25"] == 3.2
    assert (fused.components["text"], fused.components["copurchase"]) == (0.8, 12)


def test_fusion_fills_metadata_from_any_source():
    lists = {"text": [cand(1, 0.5)], "image": [cand(1, 0.4, [1, 0], category="mugs", price=9, is_new=True)]}
    fused = reciprocal_rank_fusion(lists)[0]
    assert list(fused.vector) == [1, 0]
    assert (fused.category, fused.price, fused.is_new) == ("mugs", 9, True)


def test_fusion_does_not_modify_its_input(lists):
    before = copy.deepcopy(lists)
    reciprocal_rank_fusion(lists)
    weighted_score_fusion(lists, {"text": 1, "image": 1})
    assert lists == before


def test_fusion_of_nothing_is_empty():
    assert reciprocal_rank_fusion({}) == []
    assert reciprocal_rank_fusion({"text": []}) == []


@pytest.mark.parametrize("kwargs", [{"k": -1}, {"weights": {"text": -1}}, {"weights": {"text": float("nan")}}])
def test_rrf_refuses_bad_parameters(lists, kwargs):
    with pytest.raises(ValueError):
        reciprocal_rank_fusion(lists, **kwargs)


def test_weighted_fusion_minmax_normalises_each_source(lists):
    fused = weighted_score_fusion(lists, {"text": 0.5, "image": 0.5})
    scores = {c.item_id: c.score for c in fused}
    # text: 1 -> 1.0, 2 -> 0.5, 3 -> 0.0; image: 3 -> 1.0, 1 -> 0.0; item 2 has no image score.
    assert scores == pytest.approx({1: 0.5, 2: 0.25, 3: 0.5})
    assert ids(fused) == [1, 3, 2]
    assert fused[1].components == pytest.approx(
        {"text": 0.7, "text_rank": 3, "image": 0.95, "image_rank": 1, "text_norm": 0.0, "image_norm": 1.0, "fused": 0.5}
    )


def test_weighted_fusion_weights_matter(lists):
    assert ids(weighted_score_fusion(lists, {"text": 0.2, "image": 0.8}))[0] == 3
    assert ids(weighted_score_fusion(lists, {"text": 0.8, "image": 0.2}))[0] == 1


def test_weighted_fusion_without_normalisation_sums_raw_scores(lists):
    scores = {c.item_id: c.score for c in weighted_score_fusion(lists, {"text": 1, "image": 2}, normalise="none")}
    assert scores == pytest.approx({1: 0.9 + 1.0, 2: 0.8, 3: 0.7 + 1.9})


def test_weighted_fusion_equal_scores_normalise_to_one():
    fused = weighted_score_fusion({"text": [cand(1, 0.4), cand(2, 0.4)]}, {"text": 2})
    assert [c.score for c in fused] == [2.0, 2.0]


def test_weighted_fusion_refuses_missing_weights_and_unknown_normalisation(lists):
    with pytest.raises(ValueError, match="no weight for source"):
        weighted_score_fusion(lists, {"text": 1})
    with pytest.raises(ValueError, match="normalise"):
        weighted_score_fusion(lists, {"text": 1, "image": 1}, normalise="zscore")


def test_a_candidate_copy_is_equal_and_its_reasons_and_components_are_its_own():
    import numpy as np

    from ragrec_django.ranking.candidates import Candidate

    vector = np.ones(3, dtype=np.float32)
    original = Candidate(
        7, 0.5, category="mugs", price=3.5, is_new=True, reasons=["a"], components={"x": 1.0}, vector=vector
    )
    clone = original.copy()
    assert clone == original and type(clone) is Candidate and clone.vector is vector
    clone.add_reason("b")
    clone.components["y"] = 2.0
    clone.score = 0.9
    assert original.reasons == ["a"] and original.components == {"x": 1.0} and original.score == 0.5
