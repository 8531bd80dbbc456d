"""The statistics of calibration: exact Clopper-Pearson bounds, the images a target rate needs, the order-statistic
threshold, the seeded hold-out split, and the settings that guard them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta

from stream_ad.calibration.bounds import allowed_false_alarms, fpr_upper_bound, images_needed
from stream_ad.calibration.holdout import split_good
from stream_ad.calibration.thresholds import defect_report, image_threshold
from stream_ad.errors import CalibrationError
from stream_ad.settings import CalibrationSettings, ConfigError, load_settings


@pytest.mark.parametrize(("k", "n"), [(0, 10), (0, 190), (3, 190), (7, 50)])
def test_bound_is_the_beta_quantile_of_clopper_pearson(k: int, n: int) -> None:
    assert fpr_upper_bound(k, n, 0.95) == pytest.approx(beta.ppf(0.95, k + 1, n - k), rel=1e-9)


@pytest.mark.parametrize(("target", "confidence"), [(0.02, 0.95), (0.01, 0.95), (0.05, 0.99), (0.3, 0.9)])
def test_images_needed_is_the_least_n_with_the_bound_met(target: float, confidence: float) -> None:
    n = images_needed(target, confidence)
    assert fpr_upper_bound(0, n, confidence) <= target < fpr_upper_bound(0, n - 1, confidence)
    assert allowed_false_alarms(n - 1, target, confidence) is None
    assert allowed_false_alarms(n, target, confidence) == 0


def test_threshold_is_the_highest_order_statistic_the_bound_allows() -> None:
    scores = np.random.default_rng(1).normal(size=1000)
    t = image_threshold(scores, 0.02, 0.95)
    k = t.allowed_false_alarms
    assert k > 0 and fpr_upper_bound(k, 1000, 0.95) <= 0.02 < fpr_upper_bound(k + 1, 1000, 0.95)
    assert t.false_alarms == k == int((scores > t.value).sum())
    assert t.value == np.sort(scores)[-(k + 1)]
    assert t.fpr_upper_bound <= 0.02 and t.observed_fpr < t.fpr_upper_bound


def test_the_bound_holds_at_its_confidence_over_repeated_draws() -> None:
    """The claim itself: over many calibrations on fresh good scores, the true rate exceeds the bound in at most
    about 1 - confidence of them (scores ~ N(0, 1), so the true rate of a threshold is 1 - Phi(t))."""
    from scipy.stats import norm

    rng = np.random.default_rng(7)
    misses = 0
    trials = 2000
    for _ in range(trials):
        t = image_threshold(rng.normal(size=200), 0.05, 0.9)
        misses += norm.sf(t.value) > t.fpr_upper_bound
    assert misses / trials < 0.1 + 3 * np.sqrt(0.1 * 0.9 / trials)
    assert misses / trials > 0.1 - 3 * np.sqrt(0.1 * 0.9 / trials)  # exact, not merely conservative


def test_too_few_images_is_an_error_with_the_number_needed() -> None:
    with pytest.raises(CalibrationError) as err:
        image_threshold(np.arange(100.0), 0.02, 0.95)
    msg = str(err.value)
    assert "100 good images" in msg and "at least 149" in msg and "calibration.target_fpr" in msg


def test_defect_report_uses_the_decide_rule() -> None:
    good = np.array([1.0, 2.0, 3.0, 4.0])
    bad = np.array([3.5, 5.0, 6.0])
    r = defect_report(good, bad, threshold=4.0)
    assert r["recall_at_threshold"] == pytest.approx(2 / 3)
    assert r["max_f1"] == pytest.approx(2 * 0.75 * 1.0 / 1.75)  # flag 3.5 and up: 3 of 4 flagged are defects
    assert 3.0 <= r["threshold_at_max_f1"] < 3.5
    flagged = np.r_[good, bad] > r["threshold_at_max_f1"]
    assert flagged.sum() == 4


def test_split_is_deterministic_disjoint_and_seeded(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i:03d}.png" for i in range(40)]
    cfg = CalibrationSettings(holdout_fraction=0.25, seed=3)
    a, b = split_good(paths, cfg), split_good(list(reversed(paths)), cfg)
    assert a.held_out == b.held_out and len(a.held_out) == 10 and len(a.fit) == 30
    assert not set(a.fit) & set(a.held_out) and set(a.fit) | set(a.held_out) == set(paths)
    assert split_good(paths, CalibrationSettings(holdout_fraction=0.25, seed=4)).held_out != a.held_out
    assert split_good(paths, CalibrationSettings(holdout_fraction=0.0)).fit == sorted(paths)
    with pytest.raises(CalibrationError, match="leaves none to fit on"):
        split_good(paths[:1], CalibrationSettings(holdout_fraction=0.9))


@pytest.mark.parametrize(
    ("key", "value"),
    [("target_fpr", "0"), ("target_fpr", "1"), ("target_fpr", "-0.1"), ("confidence", "1.5"),
     ("holdout_fraction", "1"), ("pixel_target_fpr", "0")],
)
def test_bad_calibration_settings_name_the_key(key: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"STREAM_AD_CALIBRATION__{key.upper()}", value)
    with pytest.raises(ConfigError, match=rf"calibration\.{key}"):
        load_settings()


@pytest.mark.parametrize(("n", "target", "confidence"), [(190, 0.01, 0.95), (100, 0.02, 0.95), (8, 0.05, 0.9)])
def test_too_few_images_says_which_looser_settings_the_count_supports(n: int, target: float,
                                                                      confidence: float) -> None:
    scores = np.random.default_rng(3).normal(size=n)
    with pytest.raises(CalibrationError) as err:
        image_threshold(scores, target, confidence)
    found = re.search(rf"{n} good images support target_fpr >= ([0-9.]+) at {confidence:.0%} confidence, or "
                      rf"confidence <= ([0-9.]+) at target_fpr {target:g}", str(err.value))
    assert found, str(err.value)
    rate, conf = float(found[1]), float(found[2])
    # Each suggestion works with these very images, and is tight: a little stricter and it fails again.
    assert image_threshold(scores, rate, confidence).fpr_upper_bound <= rate
    assert image_threshold(scores, target, conf).fpr_upper_bound <= target
    with pytest.raises(CalibrationError):
        image_threshold(scores, rate - 1e-3, confidence)
    with pytest.raises(CalibrationError):
        image_threshold(scores, target, conf + 0.01)
