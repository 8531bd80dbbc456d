"""Does the camera deliver what the threshold was calibrated on? The calibration record keeps the good scores it was
set on (GoodScores); the running pipeline compares the scores of its first frames with them (compare_scores, called
by stream_ad.pipeline.calibration_check).

Which test: a line streams defective parts too, and nothing tells the check which frames are good. So it compares
only the lower part of the two distributions: in both samples every score above the calibration's median is capped
at that median, and a one-sided Mann-Whitney U test (stream_ad.calibration.stats) asks whether the live scores sit
higher. A defect, however high it scores, then weighs no more than a good part that scored just above the median:
defects on a minority of frames barely move the test, while a change of the images themselves (compression,
scaling, colour conversion) moves every frame's score, the lower half included, and shows. What it cannot do: tell
a start-up window of mostly defective parts from such a shift (both put the live frames above the calibration's
median).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_ad.calibration.stats import mann_whitney_greater

# The record keeps up to this many sorted good scores; more are kept as this many evenly spaced quantiles.
SAMPLE_SIZE = 1000


@dataclass(frozen=True)
class GoodScores:
    """The good scores a threshold was calibrated on, as the calibration record keeps them."""

    sample: tuple[float, ...]  # sorted: the scores themselves, or SAMPLE_SIZE quantiles of more
    n: int  # how many good images were scored

    @property
    def median(self) -> float:
        return float(np.median(self.sample))

    @property
    def p95(self) -> float:
        return float(np.quantile(self.sample, 0.95))

    @classmethod
    def of(cls, scores: Sequence[float] | np.ndarray) -> GoodScores:
        values = np.sort(np.asarray(scores, dtype=np.float64))
        if values.size > SAMPLE_SIZE:
            values = np.quantile(values, np.linspace(0.0, 1.0, SAMPLE_SIZE))
        return cls(tuple(float(v) for v in values), int(np.size(scores)))

    def record(self) -> dict[str, Any]:
        """The calibration record's `good_scores` (median and p95 for a reader; the sample for the check)."""
        return {"n": self.n, "median": self.median, "p95": self.p95, "sample": list(self.sample)}

    @classmethod
    def from_record(cls, threshold: Any) -> GoodScores | None:
        """From a manifest's threshold record; None when it keeps no good scores (a bare number, or calibrated
        before stream_ad recorded them)."""
        summary = threshold.get("good_scores") if isinstance(threshold, dict) else None
        if not summary:
            return None
        return cls(tuple(float(v) for v in summary["sample"]), int(summary["n"]))


@dataclass(frozen=True)
class ScoreShift:
    """The live scores against the calibration's: the test's p-value and both distributions' median and p95."""

    p_value: float  # small: the live lower half sits above the calibration's
    n_live: int
    live_median: float
    live_p95: float
    reference_median: float
    reference_p95: float

    def shifted(self, significance: float) -> bool:
        return self.p_value < significance


def compare_scores(reference: GoodScores, live: Sequence[float] | np.ndarray) -> ScoreShift:
    """One-sided Mann-Whitney U of the live scores against the calibration's, both capped at its median."""
    scores = np.asarray(live, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no live scores to compare with the calibration's")
    cap = reference.median
    ref = np.minimum(np.asarray(reference.sample), cap)
    got = np.minimum(scores, cap)
    # All tied (every score at or above the cap in both samples): nothing tells them apart.
    p = 1.0 if np.ptp(np.r_[ref, got]) == 0 else mann_whitney_greater(got, ref)
    return ScoreShift(p_value=p, n_live=int(scores.size), live_median=float(np.median(scores)),
                      live_p95=float(np.quantile(scores, 0.95)), reference_median=cap,
                      reference_p95=reference.p95)
