"""Time decay, decayed popularity and the recency-weighted profile."""

import numpy as np
import pytest

from ragrec_django.ranking import decayed_popularity, recency_weighted_profile, time_decay_weight

DAY = 86_400.0


@pytest.mark.parametrize("age, expected", [(0, 1.0), (DAY, 0.5), (2 * DAY, 0.25), (0.5 * DAY, 2**-0.5), (-DAY, 1.0)])
def test_time_decay_halves_every_half_life(age, expected):
    assert time_decay_weight(age, DAY) == pytest.approx(expected)


@pytest.mark.parametrize("half_life", [0, -1])
def test_time_decay_needs_a_positive_half_life(half_life):
    with pytest.raises(ValueError, match="half_life"):
        time_decay_weight(10, half_life)


def test_decayed_popularity_sums_decayed_weights_per_item():
    events = [(1, 0, 1.0), (1, DAY, 1.0), (2, 0, 1.0), (3, 3 * DAY, 4.0), (2, 2 * DAY, 2.0)]
    assert decayed_popularity(events, DAY) == pytest.approx({1: 1.5, 2: 1.5, 3: 0.5})


def test_decayed_popularity_prefers_recent_events_over_old_bulk():
    events = [(1, 10 * DAY, 1.0)] * 100 + [(2, 0, 1.0)]
    scores = decayed_popularity(iter(events), DAY)
    assert scores[2] > scores[1]


def test_decayed_popularity_of_no_events_is_empty():
    assert decayed_popularity([], DAY) == {}


def test_profile_is_a_unit_vector_leaning_to_recent_items():
    profile = recency_weighted_profile([np.array([1.0, 0.0]), np.array([0.0, 1.0])], [0, 2 * DAY], [1, 1], DAY)
    assert profile.dtype == np.float32
    assert np.linalg.norm(profile) == pytest.approx(1.0)
    np.testing.assert_allclose(profile, np.array([1.0, 0.25]) / np.linalg.norm([1.0, 0.25]), rtol=1e-6)


def test_profile_ignores_vector_length_and_uses_weights():
    profile = recency_weighted_profile([np.array([10.0, 0.0]), np.array([0.0, 0.1])], [0, 0], [1, 3], DAY)
    np.testing.assert_allclose(profile, np.array([1.0, 3.0]) / np.sqrt(10), rtol=1e-6)


def test_profile_of_one_vector_is_that_direction():
    np.testing.assert_allclose(recency_weighted_profile([np.array([3.0, 4.0])], [5 * DAY], [1], DAY), [0.6, 0.8])


@pytest.mark.parametrize(
    "vectors, ages, weights, message",
    [
        ([np.ones(2)], [0, 1], [1], "1 vectors, 2 ages and 1 weights"),
        ([], [], [], "no vectors"),
        ([np.array([1.0, 0.0]), np.array([-1.0, 0.0])], [0, 0], [1, 1], "sum to zero"),
        ([np.zeros(2)], [0], [1], "sum to zero"),
    ],
)
def test_profile_refuses_unusable_input(vectors, ages, weights, message):
    with pytest.raises(ValueError, match=message):
        recency_weighted_profile(vectors, ages, weights, DAY)
