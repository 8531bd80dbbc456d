"""The drift watch's test on synthetic scores: quiet on the calibration's own distribution, raised by a shift."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from stream_ad.console.drift import DriftWatch
from stream_ad.settings import DriftSettings

CFG = DriftSettings(window=100, significance=0.001)


def _calibration(rng: np.random.Generator) -> np.ndarray:
    return rng.gamma(8.0, 0.25, 200)  # good scores around 2, threshold near their top


def test_same_distribution_raises_no_warning() -> None:
    rng = np.random.default_rng(0)
    reference = _calibration(rng)
    watch = DriftWatch(reference, float(np.quantile(reference, 0.95)), CFG)
    statuses = [watch.add(float(s)) for s in _calibration(rng)[:600]]
    assert not any(s.drifting for s in statuses)
    assert statuses[-1].n == 100


def test_a_shift_of_the_scores_raises_the_warning() -> None:
    rng = np.random.default_rng(1)
    reference = _calibration(rng)
    threshold = float(np.quantile(reference, 0.95))
    watch = DriftWatch(reference, threshold, CFG)
    live = np.concatenate([_calibration(rng) for _ in range(5)]) + 0.3  # 0.4 standard deviations
    statuses = [watch.add(float(s)) for s in live if s <= threshold]
    assert not statuses[0].drifting
    warned = [s for s in statuses if s.drifting]
    assert len(warned) > 50 and all(s.live_median > s.reference_median for s in warned)


def test_too_few_calibration_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="2 calibration scores below the threshold"):
        DriftWatch([1.0, 2.0, 9.0], 5.0, CFG)


def test_the_warning_clears_only_once_the_scores_are_back() -> None:
    rng = np.random.default_rng(2)
    reference = _calibration(rng)
    threshold = float(np.quantile(reference, 0.95))
    watch = DriftWatch(reference, threshold, CFG)
    shifted = [watch.add(float(s)) for s in _calibration(rng) + 0.8 if s <= threshold]
    assert shifted[-1].drifting
    back = [watch.add(float(s)) for s in np.concatenate([_calibration(rng) for _ in range(2)])]
    flips = sum(a.drifting != b.drifting for a, b in pairwise(back))
    assert not back[-1].drifting and flips <= 1  # one clearing, no flapping on the way
