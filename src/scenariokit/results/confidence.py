"""Exact one-sided confidence bounds for the statistics SLOs are judged by.

Each bound is one-sided at confidence c (a verdict asks one question per side: "is it certainly over?",
"is it certainly under?"), so the pair (low, high) together covers with 2c - 1. Bounds are exact where an
exact method exists: Clopper-Pearson for a share of samples (a count k of n), Garwood for a Poisson count,
order statistics for a percentile; Student's t for a mean (exact for normal samples, close for others
at the sizes a load test has).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import beta, binom, gamma, t

DEFAULT_CONFIDENCE = 0.95
MIN_CONFIDENCE = 0.5
MAX_SEARCH = 10**12  # sample sizes beyond this are reported as not reachable


def check_confidence(c: float) -> float:
    """0.5 <= c < 1 (a bound at c = 1 is the whole range, below 0.5 the two bounds cross)."""
    if not (MIN_CONFIDENCE <= c < 1):  # also NaN
        raise ValueError(f"confidence {c!r} is outside 0.5 to 1 (1 excluded)")
    return c


def share_bounds(k: int, n: int, c: float) -> tuple[float, float]:
    """Clopper-Pearson bounds of a share observed as k of n: P(share >= low) >= c and P(share <= high) >= c.

    Zero of n gives high = 1 - (1 - c)**(1/n) (0 of 40 at 95%: 7.2%), n of n gives low = (1 - c)**(1/n).
    """
    if n <= 0:
        return 0.0, 1.0
    alpha = 1 - c
    low = 0.0 if k <= 0 else float(beta.ppf(alpha, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(c, k + 1, n - k))
    return low, high


def poisson_bounds(count: int, c: float) -> tuple[float, float]:
    """Garwood's exact bounds of a Poisson mean observed as `count` events."""
    alpha = 1 - c
    low = 0.0 if count <= 0 else float(gamma.ppf(alpha, count))
    return low, float(gamma.ppf(c, count + 1))


def mean_bounds(n: int, mean: float, stdev: float, c: float) -> tuple[float, float] | None:
    """Student-t bounds of a mean from n samples (None below 2: no spread to judge by)."""
    if n < 2:
        return None
    half = float(t.ppf(c, n - 1)) * stdev / math.sqrt(n)
    return mean - half, mean + half


def quantile_bounds(
    values: Sequence[float] | np.ndarray, q: float, c: float
) -> tuple[float | None, float | None]:
    """Order-statistic bounds of the q-quantile (distribution-free): x(l) <= quantile with confidence c
    and quantile <= x(u) with confidence c. None where the sample has no order statistic far enough out
    (the p99 of 100 samples has no upper bound at 95%). O(n): two partial sorts."""
    n = len(values)
    if n == 0:
        return None, None
    lo_rank, u = quantile_ranks(n, q, c)
    array = np.asarray(values, dtype=float)
    low = float(np.partition(array, lo_rank - 1)[lo_rank - 1]) if lo_rank is not None else None
    high = float(np.partition(array, u - 1)[u - 1]) if u is not None else None
    return low, high


def quantile_ranks(n: int, q: float, c: float) -> tuple[int | None, int | None]:
    """The 1-based ranks of the order statistics that bound the q-quantile of n samples at c (None where
    the sample has none that far out)."""
    alpha = 1 - c
    # upper: the smallest u with P(Binomial(n, q) <= u - 1) >= c
    u = int(binom.ppf(c, n, q)) + 1
    # lower: the largest l with P(Binomial(n, q) >= l) >= c, i.e. P(Binomial(n, q) <= l - 1) <= alpha
    j = int(binom.ppf(alpha, n, q))
    m = j if binom.cdf(j, n, q) <= alpha else j - 1
    lo_rank = m + 1
    return (lo_rank if 1 <= lo_rank <= n else None), (u if 1 <= u <= n else None)


def smallest_n(decides: Callable[[int], bool], start: int) -> int | None:
    """The smallest n >= start for which `decides(n)` holds, for a predicate that stays true once true
    (a bound narrows as n grows); None if not even MAX_SEARCH does. Doubling, then bisection."""
    if decides(start):
        return start
    low, high = start, max(start * 2, start + 1)
    while not decides(high):
        if high >= MAX_SEARCH:
            return None
        low, high = high, min(high * 2, MAX_SEARCH)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if decides(middle) else (middle, high)
    return high


def clean_zero_samples(allowed: float, c: float) -> int | None:
    """How many samples with none beyond the limit bound the share below `allowed` at c (p99: 299)."""
    if allowed <= 0:
        return None
    if allowed >= 1:
        return 1
    # high = 1 - (1-c)**(1/n) < allowed  <=>  n > ln(1-c) / ln(1 - allowed)
    return math.floor(math.log(1 - c) / math.log(1 - allowed)) + 1
