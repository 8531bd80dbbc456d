"""The three statistics the line needs, without scipy (not in the line install): the exact one-sided Clopper-Pearson
upper bound of a rate, and the one-sided two-sample Mann-Whitney U and Kolmogorov-Smirnov tests. Each gives what
scipy 1.17 gives (`binomtest(...).proportion_ci(method="exact")`, `mannwhitneyu` and `ks_2samp` with their default
method "auto", exact or asymptotic as scipy chooses); tests/calibration/test_stats.py compares them with scipy.
"""

from __future__ import annotations

import math
import sys

import numpy as np

# scipy's choices, kept so that the p-values are the same: Mann-Whitney is exact only when a sample has at most
# this many values and nothing is tied; the KS test is exact up to this many values in either sample.
MWU_EXACT_MAX = 8
KS_EXACT_MAX = 10_000


def clopper_pearson_upper(successes: int, n: int, confidence: float) -> float:
    """The exact one-sided upper confidence bound on a rate of which `successes` of `n` were observed: the p at
    which seeing at most `successes` has probability 1 - confidence (the Beta(k+1, n-k) quantile)."""
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"a rate needs 0 <= successes <= n and n >= 1, got {successes} of {n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if successes == n:
        return 1.0
    log_alpha = math.log1p(-confidence)
    j = np.arange(successes + 1)
    # log C(n, j) as a running sum of log((n - i) / (i + 1)): no lgamma of large n, whose rounding would dominate.
    log_comb = np.concatenate(([0.0], np.cumsum(np.log((n - j[:-1]) / (j[:-1] + 1.0)))))

    def log_cdf(p: float) -> float:  # log P(X <= successes), X ~ Binomial(n, p), by log-sum-exp
        terms = log_comb + j * (math.log(p) - math.log1p(-p)) + n * math.log1p(-p)
        top = float(terms.max())
        return top + math.log(float(np.exp(terms - top).sum()))

    # The CDF falls as p grows: bisect until the bracket is two adjacent floats.
    lo, hi = 0.0, 1.0
    while True:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            return hi
        if log_cdf(mid) > log_alpha:
            lo = mid
        else:
            hi = mid


def mann_whitney_greater(x: np.ndarray, y: np.ndarray) -> float:
    """p-value of the one-sided Mann-Whitney U test that x tends to be greater than y (scipy's
    `mannwhitneyu(x, y, alternative="greater")`: exact for a small sample without ties, else the normal
    approximation with tie and continuity correction)."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0 or np.isnan(x).any() or np.isnan(y).any():
        raise ValueError("Mann-Whitney U needs two non-empty samples without NaN")
    n1, n2 = x.size, y.size
    values, index, ties = np.unique(np.concatenate((x, y)), return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(ties) - (ties - 1) / 2.0  # tied values share their ranks' mean
    u = float(mean_rank[index[:n1]].sum()) - n1 * (n1 + 1) / 2.0
    if min(n1, n2) <= MWU_EXACT_MAX and ties.max() == 1:
        counts = _u_counts(min(n1, n2), max(n1, n2))
        return sum(counts[round(u):]) / math.comb(n1 + n2, n1)
    n = n1 + n2
    sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - float((ties**3 - ties).sum()) / (n * (n - 1))))
    if sd == 0.0:  # every value tied: scipy's z is -inf
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / sd
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _u_counts(m: int, n: int) -> list[int]:
    """How many of the C(m+n, m) orderings of two samples give U = 0, 1, ..., m*n: the coefficients of the Gaussian
    binomial [m+n choose m]_q = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), in exact integers."""
    c = np.zeros(m * n + 1, dtype=object)  # Python ints: the counts outgrow int64
    c[0] = 1
    for i in range(1, m + 1):
        k = n + i
        if k < c.size:
            c[k:] = c[k:] - c[:-k]
        for r in range(i):  # divided by (1 - q^i): a running sum with stride i
            c[r::i] = np.cumsum(c[r::i])
    return c.tolist()


def ks_less(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Statistic and p-value of the one-sided two-sample Kolmogorov-Smirnov test that x's distribution function
    lies below y's somewhere (x tends to be greater): scipy's `ks_2samp(x, y, alternative="less")`, exact path
    counting while both samples have at most KS_EXACT_MAX values and the count fits a float, else Hodges'
    approximation."""
    x, y = np.sort(np.asarray(x, dtype=np.float64).ravel()), np.sort(np.asarray(y, dtype=np.float64).ravel())
    n1, n2 = x.size, y.size
    if min(n1, n2) == 0:
        raise ValueError("the Kolmogorov-Smirnov test needs two non-empty samples")
    both = np.concatenate((x, y))
    d = float(np.clip(np.max(np.searchsorted(y, both, side="right") / n2
                             - np.searchsorted(x, both, side="right") / n1), 0.0, 1.0))
    if max(n1, n2) <= KS_EXACT_MAX:
        exact = _ks_exact(n1, n2, d)
        if exact is not None:
            return exact
    m, n = max(n1, n2), min(n1, n2)  # Hodges' eq. 5.3 wants m the larger
    z = math.sqrt(m * n / (m + n)) * d
    return d, min(1.0, math.exp(-2 * z**2 - 2 * z * (m + 2 * n) / math.sqrt(m * n * (m + n)) / 3.0))


def _ks_exact(n1: int, n2: int, d: float) -> tuple[float, float] | None:
    """The statistic on the lattice of possible values and the exact one-sided p-value (Hodges 1958, as scipy counts
    it); None where scipy's float count overflows and it falls back to the approximation."""
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = round(d * lcm)
    d = h / lcm
    if h == 0:
        return d, 1.0
    if n1 == n2:
        return d, float(np.prod((n1 - np.arange(h)) / (n1 + np.arange(h) + 1.0)))
    total = math.comb(n1 + n2, n1)
    if total > sys.float_info.max:
        return None
    return d, _paths_outside(n1, n2, g, h) / total


def _paths_outside(m: int, n: int, g: int, h: int) -> int:
    """Lattice paths from (0, 0) to (m, n) that reach the line m*y <= n*x - h*g somewhere, counted exactly."""
    m, n = max(m, n), min(m, n)
    mg, ng = m // g, n // g
    # Only the x where the boundary crosses an integer y matter: paths first reaching it at (xj[j], j).
    steps = n + (mg - h) // mg
    xj = [(h + mg * j + ng - 1) // ng for j in range(steps)]
    if steps == 0:
        return math.comb(m + n, n)
    first = [1]  # first[j]: paths to (xj[j], j) that reach the boundary there for the first time
    for j in range(1, steps):
        first.append(math.comb(xj[j] + j, j)
                     - sum(math.comb(xj[j] - xj[i] + j - i, j - i) * first[i] for i in range(j)))
    return sum(first[j] * math.comb(m - xj[j] + n - j, n - j) for j in range(steps))
