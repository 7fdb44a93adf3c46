"""The statistics an experiment's summary needs, exact and dependency-free (no scipy).

- :func:`wilson_interval`: a success rate's confidence interval (Wilson score),
  which, unlike the normal approximation, stays inside [0, 1] and is not empty
  at 0 or n successes: what a few repeats of an agent run need.
- :func:`mcnemar_p_value`: the exact (binomial) McNemar test of two
  configurations run on the same (task, repeat) pairs: only the pairs where
  they disagree carry information.
- :func:`median_interval`: a distribution-free interval for a median (from
  the sign test's order statistics), for paired differences in tokens and time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


def _check_confidence(confidence: float) -> float:
    if not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number between 0 and 1 (exclusive), e.g. 0.95; got {confidence!r}")
    return float(confidence)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``trials`` at ``confidence``.

    Exactly (0, ...) at no success and (..., 1) when every trial succeeded; (nan, nan)
    with no trial (nothing is known).
    """
    confidence = _check_confidence(confidence)
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    rate = successes / trials
    denominator = 1 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds where rounding would miss them
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def _binomial_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (integers) then divided once."""
    if k < 0:
        return 0.0
    return float(sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2 ** n)


def mcnemar_p_value(only_a: int, only_b: int) -> float:
    """The exact two-sided McNemar p-value from the discordant pairs (A right and B wrong, and the reverse).

    Under "no difference" each discordant pair goes either way with probability 1/2,
    so the p-value is twice the binomial tail of the rarer outcome (at most 1); 1
    when there is no discordant pair.
    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"pair counts cannot be negative, got {only_a} and {only_b}")
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    return min(1.0, 2 * _binomial_cdf_half(min(only_a, only_b), discordant))


@dataclass(frozen=True)
class MedianInterval:
    """A median with a distribution-free interval: ``confidence`` is the coverage the order statistics give
    (at least the level asked for; nan bounds when there are too few values for it)."""

    median: float
    low: float
    high: float
    count: int
    confidence: float


def median_interval(values: Sequence[float], confidence: float = 0.95) -> MedianInterval:
    """The median of ``values`` and the sign-test interval [x(k), x(n-k+1)] around it.

    k is the largest rank with P(Binomial(n, 1/2) <= k-1) <= (1 - confidence) / 2, so the
    interval covers the true median with probability at least ``confidence`` whatever the
    distribution. NaN values are left out. With too few values (fewer than 6 at 95%) no
    such k exists and the bounds are nan.
    """
    confidence = _check_confidence(confidence)
    ordered = sorted(float(v) for v in values if not math.isnan(float(v)))
    n = len(ordered)
    if n == 0:
        return MedianInterval(math.nan, math.nan, math.nan, 0, math.nan)
    middle = n // 2
    median = ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    tail = (1 - confidence) / 2
    rank = 0
    while rank + 1 <= (n + 1) // 2 and _binomial_cdf_half(rank, n) <= tail:
        rank += 1  # rank k qualifies when P(X <= k-1) <= tail
    if rank == 0:
        return MedianInterval(median, math.nan, math.nan, n, math.nan)
    achieved = 1 - 2 * _binomial_cdf_half(rank - 1, n)
    return MedianInterval(median, ordered[rank - 1], ordered[n - rank], n, achieved)
