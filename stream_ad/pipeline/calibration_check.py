"""At start-up: do the first frames' scores look like the good scores the threshold was calibrated on?

The supervisor sees every verdict's score (accounting.py); this keeps the first pipeline.calibration_check.frames of
them and tests them once against the calibration record's good scores (stream_ad.calibration.shift: only the lower
part of the distributions is compared, so a minority of defective parts does not trip it). A difference logs one
warning naming both distributions and the commands that fix it, and sets stream_ad_calibration_mismatch{camera} to
1 (deploy/prometheus/alerts.yml). Keeping a score is an append; the test runs once, in well under a millisecond.
"""

from __future__ import annotations

import logging

from stream_ad.calibration.shift import GoodScores, ScoreShift, compare_scores
from stream_ad.pipeline.metrics import SupervisorMetrics
from stream_ad.settings import CalibrationCheckSettings

log = logging.getLogger("stream_ad.pipeline.calibration_check")


class CalibrationCheck:
    def __init__(self, reference: GoodScores | None, cfg: CalibrationCheckSettings, camera: str,
                 metrics: SupervisorMetrics) -> None:
        self.reference = reference
        self.cfg = cfg
        self.camera = camera
        self.gauge = metrics.calibration_mismatch.labels(camera)
        self.gauge.set(0)  # the series exists from the start; 1 once a mismatch is found
        self.scores: list[float] = []
        self.result: ScoreShift | None = None
        if cfg.enabled and reference is None:
            log.info("calibration check off: the model's calibration record keeps no good scores (a threshold set "
                     "by hand, or calibrated before stream_ad recorded them); `stream-ad calibrate` records them")

    @property
    def waiting(self) -> bool:
        return self.cfg.enabled and self.reference is not None and self.result is None

    def observe(self, score: float | None) -> None:
        """One verdict's score; the check runs once the first cfg.frames are in."""
        if score is None or not self.waiting:
            return
        self.scores.append(score)
        if len(self.scores) < self.cfg.frames:
            return
        assert self.reference is not None
        self.result = compare_scores(self.reference, self.scores)
        self.scores = []
        r = self.result
        shown = (f"first {r.n_live} frames median {r.live_median:.4g}, p95 {r.live_p95:.4g}; calibration's "
                 f"{self.reference.n} good images median {r.reference_median:.4g}, p95 {r.reference_p95:.4g}")
        if not r.shifted(self.cfg.significance):
            log.info("calibration check, camera %s: scores as calibrated (%s; p = %.3g)", self.camera, shown,
                     r.p_value)
            return
        self.gauge.set(1)
        log.warning(
            "calibration check, camera %s: the scores differ from those the threshold was calibrated on (%s; "
            "Mann-Whitney p = %.2g < %g): the stated false-alarm bound does not hold for these frames. Unless the "
            "first parts were mostly defective, record good frames from this camera and calibrate on them: "
            "`stream-ad record PIPELINE.yaml --frames 300 --out DIR`, then "
            "`stream-ad -c PIPELINE.yaml calibrate --good DIR` (PIPELINE.yaml: this pipeline's file)",
            self.camera, shown, r.p_value, self.cfg.significance,
        )
