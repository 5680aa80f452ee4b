"""Proportions: Wilson intervals and the two-proportion z-test, against textbook values."""

import math

import pytest

from ragrec_django.stats import rate, two_proportion_z_test, wilson_interval


def test_rate_of_nothing_is_none_not_zero():
    assert rate(0, 0) is None
    assert rate(3, 12) == 0.25


@pytest.mark.parametrize(
    "successes, trials, low, high",
    [(5, 10, 0.2366, 0.7634), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662)],
)
def test_wilson_interval_matches_published_values(successes, trials, low, high):
    interval = wilson_interval(successes, trials)
    assert interval == pytest.approx((low, high), abs=1e-4)


def test_wilson_interval_narrows_with_more_trials_and_wider_confidence():
    small, large = wilson_interval(30, 100), wilson_interval(300, 1000)
    assert small[0] < large[0] < 0.3 < large[1] < small[1]
    ninety, ninety_nine = wilson_interval(30, 100, 0.90), wilson_interval(30, 100, 0.99)
    assert ninety_nine[0] < small[0] < ninety[0] and ninety[1] < small[1] < ninety_nine[1]
    assert wilson_interval(0, 0) is None


def test_two_proportion_z_test_matches_a_hand_computation():
    # 50/100 against 60/100: pooled 0.55, standard error sqrt(0.55 * 0.45 * 2 / 100) = 0.070356.
    test = two_proportion_z_test(50, 100, 60, 100)
    assert test.difference == pytest.approx(0.10)
    assert test.z == pytest.approx(1.4213, abs=1e-4)
    assert test.p_value == pytest.approx(0.1552, abs=1e-4)
    assert test.reliable and not test.significant()


def test_z_test_is_antisymmetric_and_detects_a_real_difference():
    ab, ba = two_proportion_z_test(120, 4000, 180, 4000), two_proportion_z_test(180, 4000, 120, 4000)
    assert ab.z == pytest.approx(-ba.z) and ab.p_value == pytest.approx(ba.p_value)
    assert ab.significant() and ab.p_value < 0.001 and ab.difference == pytest.approx(0.015)


def test_z_test_edge_cases():
    assert two_proportion_z_test(0, 0, 3, 10) is None
    same = two_proportion_z_test(0, 50, 0, 70)  # no variance at all
    assert (same.z, same.p_value, same.difference) == (0.0, 1.0, 0.0)
    few = two_proportion_z_test(1, 20, 4, 20)
    assert not few.reliable and 0 < few.p_value < 1 and not math.isnan(few.z)


@pytest.mark.parametrize("args", [(5, 4), (-1, 3), (1, -1)])
def test_impossible_counts_are_refused(args):
    with pytest.raises(ValueError):
        wilson_interval(*args)
    with pytest.raises(ValueError):
        two_proportion_z_test(*args, 1, 2)


def test_confidence_must_be_a_probability():
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)
