"""Drift watch: do the good frames still score as the calibration's good images did?

Which test: per camera, the scores of the last `window` frames judged ok against the good scores the threshold was
calibrated on, both taken below the threshold only (a live frame above it is an alarm, not an ok frame: cutting the
calibration's sample there too compares like with like), by a one-sided two-sample Kolmogorov-Smirnov test
(stream_ad.calibration.stats.ks_less: scipy's ks_2samp with alternative "less": somewhere the live scores'
distribution function lies below the calibration's, i.e. the live scores sit higher). A change of material or light
moves every good frame's score, the bulk of them well below the threshold first, so the whole distribution shifts
before its tail crosses the threshold often enough to break the calibrated false-alarm bound: the test sees the bulk
move. The statistic D (0: alike; 1: every live score above every calibration score) is the gauge; p below
`significance` raises the warning, and it stays raised until p climbs above CLEAR_FACTOR times that (a p-value
hovering at the level would make it flap).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream_ad.calibration.stats import ks_less
from stream_ad.settings import DriftSettings

MIN_REFERENCE = 5  # calibration scores below the threshold needed for a test at all
CLEAR_FACTOR = 10.0


@dataclass(frozen=True)
class DriftStatus:
    n: int  # ok scores in the window (the test runs once it is full)
    statistic: float  # one-sided KS D, 0..1
    p_value: float
    drifting: bool
    live_median: float
    reference_median: float


class DriftWatch:
    def __init__(self, reference: Sequence[float], threshold: float, cfg: DriftSettings) -> None:
        ref = np.asarray(reference, dtype=np.float64)
        self.reference = np.sort(ref[ref <= threshold])
        if self.reference.size < MIN_REFERENCE:
            raise ValueError(f"{self.reference.size} calibration scores below the threshold: the drift watch needs "
                             f"{MIN_REFERENCE}; calibrate on more good images (stream-ad calibrate)")
        self.cfg = cfg
        self.scores: deque[float] = deque(maxlen=cfg.window)
        self.drifting = False

    def add(self, score: float) -> DriftStatus:
        """One more frame judged ok; the test on the window (not drifting until the window is full)."""
        self.scores.append(score)
        live = np.fromiter(self.scores, dtype=np.float64)
        ref_median = float(np.median(self.reference))
        if live.size < self.cfg.window:
            return DriftStatus(live.size, 0.0, 1.0, False, float(np.median(live)), ref_median)
        statistic, p = ks_less(live, self.reference)
        self.drifting = p < self.cfg.significance * (CLEAR_FACTOR if self.drifting else 1.0)
        return DriftStatus(live.size, statistic, p, self.drifting, float(np.median(live)), ref_median)
