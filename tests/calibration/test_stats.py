"""The line's scipy-free statistics against scipy itself (in the dev install only) over many random cases: tiny and
large samples, ties, k = 0 and k = n, and each side of scipy's switch between its exact and approximate methods.

Tolerances: the Clopper-Pearson bound to 1e-11 absolute (scipy finds it by brentq with xtol 2e-12; ours is exact to
a float), the p-values to 1e-9 relative or 1e-14 absolute (scipy counts in floats, we in integers), the KS statistic
exactly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import beta, binomtest, ks_2samp, mannwhitneyu

from stream_ad.calibration.stats import (
    KS_EXACT_MAX,
    MWU_EXACT_MAX,
    clopper_pearson_upper,
    ks_less,
    mann_whitney_greater,
)

P_REL, P_ABS = 1e-9, 1e-14


def _samples(rng: np.random.Generator, n: int, tied: bool, shift: float = 0.0) -> np.ndarray:
    values = rng.normal(shift, 1.0, n)
    return np.round(values, 1) if tied else values  # rounding to a tenth ties most values of a large sample


def _scipy_upper(k: int, n: int, confidence: float) -> float:
    return float(binomtest(k, n, alternative="less").proportion_ci(confidence_level=confidence, method="exact").high)


@pytest.mark.parametrize("n", [1, 2, 5, 37, 190, 1000, 100_000])
@pytest.mark.parametrize("confidence", [0.5, 0.9, 0.95, 0.99, 0.999])
def test_clopper_pearson_matches_scipy_at_k_0_some_and_n(n: int, confidence: float) -> None:
    rng = np.random.default_rng(n)
    for k in sorted({0, 1, n // 2, n - 1, *rng.integers(0, n, 5).tolist()} - {n}):
        got = clopper_pearson_upper(k, n, confidence)
        assert got == pytest.approx(_scipy_upper(k, n, confidence), abs=1e-11, rel=0), (k, n)
        assert got == pytest.approx(beta.ppf(confidence, k + 1, n - k), rel=1e-9), (k, n)
    assert clopper_pearson_upper(n, n, confidence) == _scipy_upper(n, n, confidence) == 1.0


def test_clopper_pearson_rejects_impossible_counts() -> None:
    for k, n, c in [(-1, 5, 0.9), (6, 5, 0.9), (0, 0, 0.9), (1, 5, 1.0), (1, 5, 0.0)]:
        with pytest.raises(ValueError, match="successes|confidence"):
            clopper_pearson_upper(k, n, c)


@pytest.mark.parametrize("tied", [False, True])
def test_mann_whitney_matches_scipy_on_both_sides_of_its_exact_switch(tied: bool) -> None:
    rng = np.random.default_rng(11 + tied)
    sizes = [(1, 1), (1, 9), (3, 4), (MWU_EXACT_MAX, 50), (5, 300), (MWU_EXACT_MAX + 1, MWU_EXACT_MAX + 1),
             (50, 190), (50, 1000), (400, 1000)]
    for n1, n2 in sizes:
        for shift in (-0.5, 0.0, 0.7, 3.0):  # 3.0: p-values far in the tail (1e-40 and below)
            x, y = _samples(rng, n1, tied, shift), _samples(rng, n2, tied)
            want = float(mannwhitneyu(x, y, alternative="greater").pvalue)
            assert mann_whitney_greater(x, y) == pytest.approx(want, rel=P_REL, abs=P_ABS), (n1, n2, shift)


def test_mann_whitney_on_samples_capped_as_the_start_up_check_caps_them() -> None:
    rng = np.random.default_rng(5)
    for n_live in (1, 3, 8, 50):
        ref = rng.normal(20.0, 1.0, 190)
        cap = float(np.median(ref))
        live = np.minimum(rng.normal(20.3, 1.0, n_live), cap)
        want = float(mannwhitneyu(live, np.minimum(ref, cap), alternative="greater").pvalue)
        assert mann_whitney_greater(live, np.minimum(ref, cap)) == pytest.approx(want, rel=P_REL, abs=P_ABS)


def test_mann_whitney_refuses_empty_or_nan_samples() -> None:
    for x, y in [([], [1.0]), ([1.0], []), ([np.nan], [1.0])]:
        with pytest.raises(ValueError, match="non-empty samples without NaN"):
            mann_whitney_greater(np.asarray(x), np.asarray(y))


def _scipy_ks(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():  # scipy warns when its exact count overflows and it approximates instead
        warnings.simplefilter("ignore", RuntimeWarning)
        test = ks_2samp(x, y, alternative="less")
    return float(test.statistic), float(test.pvalue)


@pytest.mark.parametrize("tied", [False, True])
def test_ks_matches_scipy_exact_approximate_and_where_its_count_overflows(tied: bool) -> None:
    rng = np.random.default_rng(21 + tied)
    # (100, 1000): the drift watch's defaults; (400, 1000): C(1400, 400) > 1e308, so scipy approximates;
    # (20, KS_EXACT_MAX + 1): past scipy's exact limit.
    sizes = [(1, 1), (1, 7), (5, 5), (10, 15), (100, 100), (100, 200), (100, 1000), (37, 1000), (400, 1000),
             (20, KS_EXACT_MAX), (20, KS_EXACT_MAX + 1)]
    for n1, n2 in sizes:
        for shift in (-0.3, 0.0, 0.4, 3.0):
            x, y = _samples(rng, n1, tied, shift), _samples(rng, n2, tied)
            want_d, want_p = _scipy_ks(x, y)
            d, p = ks_less(x, y)
            assert d == pytest.approx(want_d, rel=1e-15, abs=0), (n1, n2, shift)
            assert p == pytest.approx(want_p, rel=P_REL, abs=P_ABS), (n1, n2, shift)


def test_ks_of_identical_samples_finds_nothing() -> None:
    x = np.arange(10.0)
    assert ks_less(x, x) == (0.0, 1.0) == _scipy_ks(x, x)


def test_ks_refuses_an_empty_sample() -> None:
    with pytest.raises(ValueError, match="non-empty samples"):
        ks_less(np.asarray([]), np.asarray([1.0]))
