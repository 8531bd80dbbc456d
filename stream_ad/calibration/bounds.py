"""How sure a false-alarm rate measured on n good images is: exact one-sided Clopper-Pearson bounds
(stream_ad.calibration.stats).

Setting the threshold at the (k+1)-th highest of n good scores makes its true false-alarm rate a Beta(k+1, n-k)
variable (order statistics of exchangeable scores), whose `confidence` quantile is exactly the Clopper-Pearson upper
bound for k of n. So "with 95 % confidence the rate is at most the bound" holds for the threshold chosen this way.
"""

from __future__ import annotations

import math
from functools import lru_cache

from stream_ad.calibration.stats import clopper_pearson_upper


@lru_cache(maxsize=4096)  # the bound is found by bisection; callers ask the same (k, n) repeatedly
def fpr_upper_bound(false_alarms: int, n: int, confidence: float) -> float:
    """Exact one-sided upper confidence bound on a rate of which `false_alarms` of `n` were observed."""
    return clopper_pearson_upper(false_alarms, n, confidence)


def images_needed(target_fpr: float, confidence: float) -> int:
    """The fewest good images that can show a rate of at most target_fpr at this confidence (none above it)."""
    # Zero of n bounds the rate by 1 - (1 - confidence)^(1/n); solve for n, then settle float rounding at the edge.
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(1.0 - target_fpr)))
    while fpr_upper_bound(0, n, confidence) > target_fpr:
        n += 1
    return n


def supported_fpr(n: int, confidence: float) -> float:
    """The lowest target false-alarm rate n good images can show at this confidence (none of them above)."""
    return fpr_upper_bound(0, n, confidence)


def supported_confidence(n: int, target_fpr: float) -> float:
    """The highest confidence at which n good images can show a rate of at most target_fpr (none of them above):
    1 - (1 - c)^(1/n) <= r solved for c."""
    return 1.0 - (1.0 - target_fpr) ** n


def allowed_false_alarms(n: int, target_fpr: float, confidence: float) -> int | None:
    """The most good images of n that may score above the threshold with the bound still <= target_fpr (None:
    not even zero may: n is too small)."""
    k = -1
    while k + 1 < n and fpr_upper_bound(k + 1, n, confidence) <= target_fpr:
        k += 1
    return k if k >= 0 else None
