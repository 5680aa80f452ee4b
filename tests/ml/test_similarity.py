"""Exact ranking from float16 rows (``ml.similarity``): the float16 shortlist never changes the float32 ranking."""

import numpy as np
import pytest

from ragrec_django.ml import similarity
from ragrec_django.ml.similarity import cosine_distances, nearest_rows, vector_norms

pytestmark = pytest.mark.skipif(not similarity.HAS_TORCH, reason="the shortlist needs torch")


def full_ranking(block, norms, query, k):
    """The k nearest (distance, position) pairs by float32 arithmetic over every row, ties broken by position."""
    distances = cosine_distances(block, norms, query)
    order = np.lexsort((np.arange(len(block)), distances))
    return [(round(float(distances[i]), 6), int(i)) for i in order[:k] if np.isfinite(distances[i])]


def shortlisted_ranking(block, norms, query, k):
    positions, distances = nearest_rows(block, norms, query, k)
    order = np.lexsort((positions, distances))[:k]
    return [(round(float(distances[i]), 6), int(positions[i])) for i in order]


def blocks():
    """Float16 blocks of the kinds a cache holds: unit rows, rows of any length, clustered rows with exact
    duplicates and near-ties, and rows with a zero norm."""
    rng = np.random.default_rng(3)
    unit = rng.standard_normal((20_000, 64)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    yield "unit", unit.astype(np.float16)
    yield "any length", (rng.standard_normal((20_000, 64)) * rng.uniform(1e-2, 50, (20_000, 1))).astype(np.float16)
    centres = rng.standard_normal((5, 64))
    clustered = centres[rng.integers(0, 5, 20_000)] + 0.01 * rng.standard_normal((20_000, 64))
    clustered[100:400] = clustered[99]  # 301 identical rows: a tie across the k-th place
    yield "clustered, ties", clustered.astype(np.float16)
    with_zeros = unit.astype(np.float16)
    with_zeros[::7] = 0
    yield "zero rows", with_zeros


@pytest.mark.parametrize("k", [1, 10, 40, 400])
def test_the_shortlist_ranks_exactly_as_float32_over_every_row(k):
    rng = np.random.default_rng(k)
    for name, block in blocks():
        norms = vector_norms(block)
        for query in [rng.standard_normal(64).astype(np.float32), block[99].astype(np.float32) + 1e-3]:
            assert similarity._shortlist(block, norms, query, k) is not None, name  # the float16 path ran
            assert shortlisted_ranking(block, norms, query, k) == full_ranking(block, norms, query, k), name


def test_a_float16_product_out_of_range_falls_back_to_float32():
    rng = np.random.default_rng(0)
    block = np.full((10_000, 8), 60_000, dtype=np.float16)  # each product overflows float16
    block[5] = rng.standard_normal(8)
    norms = vector_norms(block)
    query = np.ones(8, dtype=np.float32)
    assert similarity._shortlist(block, norms, query, 3) is None
    assert shortlisted_ranking(block, norms, query, 3) == full_ranking(block, norms, query, 3)
