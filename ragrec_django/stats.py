"""Proportions for online measurement (pure Python, no Django): confidence intervals and the z-test.

    wilson_interval(12, 400)                  # (0.0173, 0.0517): 95% interval of a CTR of 3%
    two_proportion_z_test(12, 400, 25, 410)   # ZTest(difference=0.031, z=2.11, p_value=0.035, ...)

The Wilson score interval stays inside [0, 1] and behaves with few successes, unlike the
normal ("Wald") interval. The two-proportion z-test uses the pooled proportion under the
null hypothesis that both variants have the same rate; it is two-sided. Both are normal
approximations: with fewer than about ten successes or failures per variant, read them as a
rough indication only (``ZTest.reliable`` says whether that rule of thumb is met).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


def _check(successes: int, trials: int) -> None:
    if trials < 0 or successes < 0:
        raise ValueError("successes and trials must not be negative")
    if successes > trials:
        raise ValueError("successes (%d) cannot exceed trials (%d)" % (successes, trials))


def _z_for(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1, got %r" % confidence)
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def rate(successes: int, trials: int) -> float | None:
    """``successes / trials``; None when there were no trials (a rate of nothing is not 0)."""
    _check(successes, trials)
    return successes / trials if trials else None


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion; None when there were no trials."""
    _check(successes, trials)
    if not trials:
        return None
    z = _z_for(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class ZTest:
    """Two-sided test of ``rate_b - rate_a``: ``difference``, its ``z`` score and ``p_value``."""

    difference: float
    z: float
    p_value: float
    reliable: bool

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def two_proportion_z_test(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> ZTest | None:
    """Pooled two-proportion z-test of B against A; None when a side has no trials.

    When both rates are 0 or both are 1 there is no variance: the difference is 0, ``z`` 0, ``p`` 1.
    """
    _check(successes_a, trials_a)
    _check(successes_b, trials_b)
    if not trials_a or not trials_b:
        return None
    p_a, p_b = successes_a / trials_a, successes_b / trials_b
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    reliable = min(successes_a, trials_a - successes_a, successes_b, trials_b - successes_b) >= 10
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance <= 0:
        return ZTest(difference=p_b - p_a, z=0.0, p_value=1.0, reliable=reliable)
    z = (p_b - p_a) / math.sqrt(variance)
    p_value = 2 * (1 - _NORMAL.cdf(abs(z)))
    return ZTest(difference=p_b - p_a, z=z, p_value=min(1.0, max(0.0, p_value)), reliable=reliable)
