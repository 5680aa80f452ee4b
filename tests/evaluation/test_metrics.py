"""Ranking metrics against hand-computed values."""

import math
import random

import numpy as np
import pytest

from ragrec_django.evaluation import metrics

RANKED = ["a", "b", "c", "d"]
RELEVANT = {"b", "d", "x"}  # x is never recommended


def test_recall_precision_hits_by_hand():
    assert metrics.hits_at_k(RANKED, RELEVANT, 1) == 0
    assert metrics.recall_at_k(RANKED, RELEVANT, 1) == 0.0
    assert metrics.recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(RANKED, RELEVANT, 4) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(RANKED, RELEVANT, 50) == pytest.approx(2 / 3)  # a short list is not padded
    assert metrics.precision_at_k(RANKED, RELEVANT, 4) == 0.5
    assert metrics.precision_at_k(RANKED, RELEVANT, 8) == 0.25
    assert metrics.hit_rate_at_k(RANKED, RELEVANT, 1) == 0.0
    assert metrics.hit_rate_at_k(RANKED, RELEVANT, 2) == 1.0


def test_ndcg_by_hand():
    # DCG@4 = 1/log2(3) + 1/log2(5); ideal: three relevant items at positions 1..3.
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(0.498189, abs=1e-6)
    # Ideal DCG is capped at k items: one relevant item at the top of a k=1 list is perfect.
    assert metrics.ndcg_at_k(["b"], RELEVANT, 1) == 1.0
    assert metrics.ndcg_at_k(["b", "d", "x"], RELEVANT, 3) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(["a", "c"], RELEVANT, 2) == 0.0


def test_reciprocal_rank_by_hand():
    assert metrics.reciprocal_rank(RANKED, RELEVANT) == 0.5
    assert metrics.reciprocal_rank(RANKED, RELEVANT, k=1) == 0.0
    assert metrics.reciprocal_rank(["d", "b"], RELEVANT) == 1.0
    assert metrics.reciprocal_rank([], RELEVANT) == 0.0


def test_repeated_items_count_once():
    assert metrics.recall_at_k(["b", "b", "d"], {"b", "d"}, 2) == 1.0
    assert metrics.precision_at_k(["b", "b"], {"b"}, 2) == 0.5


def test_undefined_cases_are_errors():
    with pytest.raises(ValueError):
        metrics.recall_at_k(RANKED, set(), 5)
    with pytest.raises(ValueError):
        metrics.ndcg_at_k(RANKED, RELEVANT, 0)
    with pytest.raises(ValueError):
        metrics.catalogue_coverage([RANKED], 0, 5)
    with pytest.raises(ValueError):
        metrics.intra_list_diversity(RANKED, 3)


def test_catalogue_coverage_by_hand():
    lists = [["a", "b"], ["b", "c"], []]
    assert metrics.catalogue_coverage(lists, 10, 1) == pytest.approx(0.2)  # {a, b}
    assert metrics.catalogue_coverage(lists, 10, 2) == pytest.approx(0.3)  # {a, b, c}


def test_intra_list_diversity_with_vectors_and_categories():
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 2.0]), "c": np.array([1.0, 1.0])}
    # cos(a,b) = 0, cos(a,c) = cos(b,c) = 1/sqrt(2): 1 - mean = 1 - sqrt(2)/3
    assert metrics.intra_list_diversity(["a", "b", "c"], 3, vectors=vectors) == pytest.approx(1 - math.sqrt(2) / 3)
    assert metrics.intra_list_diversity(["a", "b"], 2, vectors=vectors) == pytest.approx(1.0)
    assert metrics.intra_list_diversity(["a", "a"], 2, vectors=vectors) is None  # one distinct item
    assert metrics.intra_list_diversity(["a", "zz", "b"], 3, vectors=vectors) == pytest.approx(1.0)  # zz has no vector
    categories = {"a": "mugs", "b": "mugs", "c": "lamps"}
    # pairs: (a,b) same, (a,c) and (b,c) different -> 2/3
    assert metrics.intra_list_diversity(["a", "b", "c"], 3, categories=categories) == pytest.approx(2 / 3)
    assert metrics.intra_list_diversity(["a"], 3, categories=categories) is None


def test_curves_agree_with_the_single_k_functions():
    rng = random.Random(3)
    items = [str(i) for i in range(30)]
    vectors = {item: np.array([rng.random() - 0.5 for _ in range(4)]) for item in items[:25]}
    for _ in range(50):
        ranked = rng.sample(items, rng.randint(0, 25))
        relevant = set(rng.sample(items, rng.randint(1, 6)))
        curves = metrics.ranking_curves(ranked, relevant, 20)
        for k in range(1, 21):
            assert curves["recall"][k - 1] == pytest.approx(metrics.recall_at_k(ranked, relevant, k))
            assert curves["ndcg"][k - 1] == pytest.approx(metrics.ndcg_at_k(ranked, relevant, k))
            assert curves["hit_rate"][k - 1] == metrics.hit_rate_at_k(ranked, relevant, k)
            assert curves["precision"][k - 1] == pytest.approx(metrics.precision_at_k(ranked, relevant, k))
            expected = metrics.intra_list_diversity(ranked, k, vectors=vectors)
            got = metrics.diversity_curve(ranked, 20, vectors)[k - 1]
            assert (got is None and expected is None) or got == pytest.approx(expected)
        assert curves["mrr"][0] == pytest.approx(metrics.reciprocal_rank(ranked, relevant, 20))


def test_mean_ignores_undefined_values():
    assert metrics.mean([1.0, None, 0.0]) == 0.5
    assert metrics.mean([None]) is None
