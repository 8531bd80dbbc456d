"""A test set's predictions, accumulated as they stream in: what the report needs and nothing more. Per image its
score (a float); per defect type the binned pixel histograms (accuracy.PixelTally, bounded whatever the number of
pixels); and the few worst misses and false alarms with their maps shrunk to picture size, for the report's pictures.
No full-size map is kept past the image it belongs to."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from stream_ad.data import Sample, read_mask
from stream_ad.data.folders import GOOD
from stream_ad.evaluation.accuracy import Estimate, PixelTally, image_auroc, recall_at_fpr

OVERALL = "overall"
WORST = 4  # misses and false alarms kept for pictures
PICTURE_SIDE = 512  # px: the long side a kept map is shrunk to
FALSE_ALARM_RATES = (0.01, 0.05)  # the recall is reported at these rates on the test's good images
Rows = dict[str, dict[str, float | int | None]]  # per defect type and OVERALL: figure name -> value


@dataclass(frozen=True)
class Example:
    """A scored test image kept for a picture: its map at most PICTURE_SIDE on its long side."""

    sample: Sample
    score: float
    amap: np.ndarray
    shape: tuple[int, int]  # the image's own (H, W)


def shrink(image: np.ndarray, side: int = PICTURE_SIDE) -> np.ndarray:
    """`image` with its long side at most `side` (area-averaged: a small defect fades, never vanishes)."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class Worst:
    """The k examples with the highest rank seen so far; an example is built (its map shrunk) only when it enters."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, Example]] = []  # a min-heap on rank; the int spares comparing examples
        self._arrivals = itertools.count()

    def offer(self, rank: float, make: Callable[[], Example]) -> None:
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (rank, next(self._arrivals), make()))
        elif rank > self._heap[0][0]:
            heapq.heapreplace(self._heap, (rank, next(self._arrivals), make()))

    def examples(self) -> list[Example]:
        """Worst first."""
        return [example for _, _, example in sorted(self._heap, key=lambda item: item[0], reverse=True)]


@dataclass
class Tally:
    """Accumulates (sample, score, map) triples; `threshold`: the calibrated one (misses are defective images scored
    at or below it, false alarms good ones above it), or None: the lowest-scored defective and highest-scored good
    images stand in."""

    with_masks: bool
    threshold: float | None = None
    samples: list[Sample] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    pixels: PixelTally = field(default_factory=PixelTally)
    misses: Worst = field(default_factory=lambda: Worst(WORST))
    false_alarms: Worst = field(default_factory=lambda: Worst(WORST))

    def add(self, sample: Sample, score: float, amap: np.ndarray) -> None:
        score = float(score)
        self.samples.append(sample)
        self.scores.append(score)
        if self.with_masks:
            self.pixels.add(sample.defect, amap, read_mask(sample, amap.shape), sample.path)
        wrong = (score <= self.threshold if sample.label else score > self.threshold) if self.threshold is not None \
            else True
        if wrong:
            worst = self.misses if sample.label else self.false_alarms
            worst.offer(-score if sample.label else score, lambda: Example(sample, score, shrink(amap), amap.shape))

    @property
    def defect_types(self) -> list[str]:
        return sorted({s.defect for s in self.samples if s.label})

    def scores_of(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(good scores, defective scores) of a defect type, or of every defect type for OVERALL."""
        scores = np.asarray(self.scores)
        good = np.array([s.label == 0 for s in self.samples])
        chosen = np.array([s.label == 1 and name in (OVERALL, s.defect) for s in self.samples])
        return scores[good], scores[chosen]

    def pixel_estimates(self, name: str) -> tuple[Estimate, Estimate] | None:
        """(pixel AUROC, PRO) of a defect type with the good images, or of all for OVERALL; None without masks, or
        where its masks are all empty."""
        if not self.with_masks:
            return None
        counts = self.pixels.counts(self.pixels.names if name == OVERALL else [GOOD, name])
        if counts.defect.sum() == 0:
            return None
        return counts.pixel_auroc(), counts.pro_auc()

    def rows(self) -> Rows:
        rows: Rows = {}
        for name in [*self.defect_types, OVERALL]:
            good, defective = self.scores_of(name)
            labels = [0] * len(good) + [1] * len(defective)
            pixel = self.pixel_estimates(name)
            rows[name] = {
                "images": len(labels),
                "image_auroc": image_auroc(labels, np.concatenate([good, defective])),
                "pixel_auroc": pixel[0].value if pixel else None,
                "pro": pixel[1].value if pixel else None,
            }
        return rows

    def max_errors(self) -> dict[str, float]:
        """The largest bound, over the rows, on how far each binned pixel figure may be from the exact one."""
        estimates = [e for e in map(self.pixel_estimates, [*self.defect_types, OVERALL]) if e is not None]
        return {"pixel_auroc": max((a.max_error for a, _ in estimates), default=0.0),
                "pro": max((p.max_error for _, p in estimates), default=0.0)}

    def false_alarms_at_threshold(self) -> dict[str, int] | None:
        """Good test images scored above the calibrated threshold, of how many (None without a threshold): what
        the calibration's false-alarm bound promises about."""
        if self.threshold is None:
            return None
        good, _ = self.scores_of(OVERALL)
        return {"good_images": int(good.size), "above_threshold": int((good > self.threshold).sum())}

    def recall_rows(self) -> Rows:
        """Per defect type and overall: defective images, recall at the calibrated threshold (None without one) and
        at each of FALSE_ALARM_RATES on the test's good images."""
        rows: Rows = {}
        for name in [*self.defect_types, OVERALL]:
            good, defective = self.scores_of(name)
            row: dict[str, float | int | None] = {
                "defective_images": len(defective),
                "at_threshold": float(np.mean(defective > self.threshold)) if self.threshold is not None else None,
            }
            row.update({f"at_fpr_{rate:g}": recall_at_fpr(good, defective, rate) for rate in FALSE_ALARM_RATES})
            rows[name] = row
        return rows
