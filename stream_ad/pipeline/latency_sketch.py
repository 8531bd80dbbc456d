"""The run's latency distribution in fixed memory, for the summary's percentiles over runs of days.

Log-spaced buckets (DDSketch's scheme, Masson et al. 2019, with a fixed range): bucket i counts the samples in
(gamma^(i-1), gamma^i], gamma = (1 + a) / (1 - a), and answers with 2 gamma^i / (gamma + 1), which is within a
relative `a` of every sample in it. So each quantile is within RELATIVE_ACCURACY of the sample at its rank (numpy's
percentile with method "lower"), or within LOWEST_S for samples at or below it, up to HIGHEST_S; max and mean are
exact. Memory: one int64 per bucket (about 2,500 for 1 us .. 1 day at 0.5 %), whatever the number of samples.
"""

from __future__ import annotations

import math

import numpy as np

RELATIVE_ACCURACY = 0.005
LOWEST_S = 1e-6  # at or below: one bucket (a latency of 1 us or less reads as 0)
HIGHEST_S = 86_400.0  # a quantile in the top bucket (verdicts about a day late, or later) reads as the exact max


class LatencySketch:
    def __init__(self, relative_accuracy: float = RELATIVE_ACCURACY) -> None:
        self.relative_accuracy = relative_accuracy
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        # counts[0]: samples <= LOWEST_S; counts[b]: those in (gamma^(i-1), gamma^i] with i = b + _offset.
        self._offset = math.ceil(math.log(LOWEST_S) / self._log_gamma) - 1
        top = math.ceil(math.log(HIGHEST_S) / self._log_gamma)
        self.counts = np.zeros(top - self._offset + 1, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        if seconds <= LOWEST_S:
            bucket = 0
        else:
            bucket = min(math.ceil(math.log(seconds) / self._log_gamma) - self._offset, len(self.counts) - 1)
        self.counts[bucket] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def merge(self, other: LatencySketch) -> None:
        """Add every sample of `other` (of the same accuracy): as if each had been added here."""
        if other.relative_accuracy != self.relative_accuracy:
            raise ValueError("sketches of different accuracies cannot be merged")
        self.counts += other.counts
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def quantile(self, q: float) -> float:
        """The q-quantile in seconds (0 <= q <= 1): the sample at rank floor(q (count - 1)), within the accuracy."""
        if not self.count:
            raise ValueError("no samples")
        rank = math.floor(q * (self.count - 1))
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank, side="right"))
        if bucket == 0:
            return 0.0
        if bucket == len(self.counts) - 1:  # open-ended
            return self.max
        return min(2 * self._gamma ** (bucket + self._offset) / (self._gamma + 1), self.max)

    def summary_ms(self) -> dict[str, float]:
        """p50 / p90 / p99 / max / mean in milliseconds ({} without any sample), as summary.percentiles gives."""
        if not self.count:
            return {}
        out = {f"p{int(q * 100)}": self.quantile(q) * 1000.0 for q in (0.5, 0.9, 0.99)}
        return {**out, "max": self.max * 1000.0, "mean": self.total / self.count * 1000.0}
