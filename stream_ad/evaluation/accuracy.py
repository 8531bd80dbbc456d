"""Image AUROC, recall at a false-alarm rate, and pixel AUROC and PRO (per-region overlap, Bergmann et al., MVTec AD,
IJCV 2021) in bounded memory.

The pixel metrics never hold the test set's pixels: each map is counted into histograms over one shared, fine
binning of the score range (PixelTally: `BINS` equal bins, widened by merging when a map falls outside), per set of
images (a defect type, the good images). A curve is then read from the bins, highest first; within a bin the pixels'
order is unknown, so the binned area can differ from the exact one by at most the area of the boxes the curve
crosses bin by bin, a bound computed from the same counts and returned with each figure (Estimate.max_error):

    pixel AUROC:  |binned - exact| <= 1/2 * sum_b fpr_b * tpr_b
    PRO (to m):   |binned - exact| <= sum_b fpr_b * pro_b / m   over the bins that start below FPR m

(fpr_b, tpr_b, pro_b: the bin's own steps of the curve). Pixels with equal scores share a bin, as they share a
threshold, so a bin of ties costs nothing in truth; the bound still counts it (many defect and defect-free pixels
scored exactly alike, a map clamped at 0 say, make it loose, never wrong).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

# Regions are 8-connected, as in the MVTec AD evaluation code.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=int)
BINS = 1 << 20  # bins of the score range: 24 MB of float64 per set of images (three histograms)
PRO_MAX_FPR = 0.3
_OK, _DEFECT, _REGION_SHARE = 0, 1, 2  # the histograms of a set: defect-free pixels, defect pixels, PRO weight


def image_auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    return float(roc_auc_score(np.asarray(labels), np.asarray(scores, dtype=np.float64)))


def recall_at_fpr(good: np.ndarray, defective: np.ndarray, fpr: float) -> float:
    """The fraction of defective scores above the lowest threshold at which at most `fpr` of the good scores are
    above it (alarm = score > threshold, as the decide stage rules); with n good images that allows floor(fpr * n)
    false alarms."""
    allowed = math.floor(fpr * len(good))
    if allowed >= len(good):
        return 1.0
    threshold = np.sort(good)[::-1][allowed]
    return float(np.mean(defective > threshold))


@dataclass(frozen=True)
class Estimate:
    value: float
    max_error: float  # |value - the exact figure| is at most this (see the module's docstring)


@dataclass(frozen=True)
class PixelCounts:
    """The binned pixels of some images: per bin (ascending score) defect-free and defect pixels, and the sum over
    the bin's defect pixels of 1 / the size of their region; `regions`: how many defect regions there are."""

    ok: np.ndarray
    defect: np.ndarray
    region_share: np.ndarray
    regions: int

    def _steps(self, values: np.ndarray, total: float) -> np.ndarray:
        """The curve's steps, highest bin first, over the non-empty bins only."""
        filled = (self.ok + self.defect)[::-1] > 0
        return values[::-1][filled] / total

    def pixel_auroc(self) -> Estimate:
        n_ok, n_defect = self.ok.sum(), self.defect.sum()
        if n_ok == 0 or n_defect == 0:
            raise ValueError("pixel AUROC needs defect and defect-free pixels in the masks")
        dx, dy = self._steps(self.ok, n_ok), self._steps(self.defect, n_defect)
        x, y = np.cumsum(dx), np.cumsum(dy)
        return Estimate(float(np.trapezoid(np.append(0.0, y), np.append(0.0, x))), float(0.5 * np.sum(dx * dy)))

    def pro_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(FPR, PRO) at every bin's lower edge, from the highest down, starting at (0, 0). PRO(t) is the mean, over
        every connected defect region of every image, of the fraction of that region scored >= t; FPR(t) is the
        fraction of all defect-free pixels scored >= t."""
        if self.regions == 0:
            raise ValueError("PRO needs at least one defect region in the masks")
        n_ok = self.ok.sum()
        if n_ok == 0:
            raise ValueError("PRO needs defect-free pixels for its false-positive rate")
        fpr = np.cumsum(self._steps(self.ok, n_ok))
        pro = np.cumsum(self._steps(self.region_share, self.regions))
        return np.append(0.0, fpr), np.append(0.0, pro)

    def pro_auc(self, max_fpr: float = PRO_MAX_FPR) -> Estimate:
        """Area under the PRO curve for FPR in [0, max_fpr], divided by max_fpr (1.0 = perfect)."""
        fpr, pro = self.pro_curve()
        keep = fpr <= max_fpr
        x, y = fpr[keep], pro[keep]
        if x[-1] < max_fpr:  # close the curve at max_fpr by linear interpolation to the next point
            x, y = np.append(x, max_fpr), np.append(y, np.interp(max_fpr, fpr, pro))
        below = fpr[:-1] < max_fpr  # the bins whose box the integrated part of the curve crosses
        boxes = np.diff(fpr)[below] * np.diff(pro)[below]
        return Estimate(float(np.trapezoid(y, x) / max_fpr), float(boxes.sum() / max_fpr))


class PixelTally:
    """Histograms of the pixels of named sets of images (a defect type, the good images) over one shared binning of
    the scores seen so far. The binning starts at the first map's range; a map outside it widens it by a power of
    two, merging neighbouring bins, so every histogram stays what it would have counted on the wider bins."""

    def __init__(self, bins: int = BINS) -> None:
        self.bins = bins
        self.lo = 0.0
        self.width = 0.0  # 0: no map seen yet
        self._counts: dict[str, np.ndarray] = {}  # name -> (3, bins): _OK, _DEFECT, _REGION_SHARE
        self._regions: dict[str, int] = {}

    def add(self, name: str, amap: np.ndarray, mask: np.ndarray, source: object = "a map") -> None:
        """Count one image's map into the set `name`; `mask`: its defect pixels (all False for a good image);
        `source` names the image in an error."""
        if amap.shape != mask.shape:
            raise ValueError(f"anomaly map of {source} is {amap.shape} but its mask is {mask.shape}")
        lo, hi = float(amap.min()), float(amap.max())
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"anomaly map of {source} holds NaN or infinite scores")
        self._cover(lo, hi)
        labelled, regions = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        bin_of = self._bin_of(amap).ravel()
        labels = labelled.ravel()
        sizes = np.bincount(labels, minlength=regions + 1).astype(np.float64)
        share = np.zeros(regions + 1)
        share[1:] = 1.0 / sizes[1:]
        counts = self._counts.setdefault(name, np.zeros((3, self.bins)))
        defect = labels > 0
        counts[_OK] += np.bincount(bin_of[~defect], minlength=self.bins)
        counts[_DEFECT] += np.bincount(bin_of[defect], minlength=self.bins)
        counts[_REGION_SHARE] += np.bincount(bin_of[defect], weights=share[labels[defect]], minlength=self.bins)
        self._regions[name] = self._regions.get(name, 0) + regions

    def counts(self, names: Iterable[str]) -> PixelCounts:
        """The pooled counts of the named sets (a name never added counts nothing)."""
        names = [n for n in names if n in self._counts]
        total = sum((self._counts[n] for n in names), np.zeros((3, self.bins)))
        return PixelCounts(total[_OK], total[_DEFECT], total[_REGION_SHARE], sum(self._regions[n] for n in names))

    @property
    def names(self) -> list[str]:
        return list(self._counts)

    def _bin_of(self, amap: np.ndarray) -> np.ndarray:
        # Monotone in the score (float rounding never swaps two scores' order), so bins keep the scores' ranking.
        index = np.floor((amap.astype(np.float64) - self.lo) / self.width)
        return np.clip(index, 0, self.bins - 1).astype(np.int64)

    def _cover(self, lo: float, hi: float) -> None:
        """Widen the binning (if needed) to take scores in [lo, hi]."""
        if self.width == 0.0:
            self.lo = lo
            self.width = (hi - lo) / (self.bins - 1) if hi > lo else max(abs(lo), 1.0) / self.bins
            return
        top = self.lo + self.bins * self.width
        if lo >= self.lo and hi < top:
            return
        below = math.ceil((self.lo - lo) / self.width) if lo < self.lo else 0  # old bins needed at the bottom
        needed = below + max(self.bins, math.floor((hi - self.lo) / self.width) + 1)
        factor = 1 << max(0, math.ceil(math.log2(needed / self.bins)))
        while factor * self.bins < needed:  # log2's rounding
            factor *= 2
        # Half the room left over goes below: a range drifting down (or up) widens a few times, not at every map.
        below += (factor * self.bins - needed) // 2
        new_lo = self.lo - below * self.width
        new_width = self.width * factor
        # The new edges are old edges (new_lo is one, the width a whole multiple): each old bin falls into one new
        # bin, found from its centre.
        centres = self.lo + (np.arange(self.bins) + 0.5) * self.width
        target = np.clip(np.floor((centres - new_lo) / new_width), 0, self.bins - 1).astype(np.int64)
        for counts in self._counts.values():
            for row in counts:
                row[:] = np.bincount(target, weights=row, minlength=self.bins)
        self.lo, self.width = new_lo, new_width


def _tally(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> PixelCounts:
    tally = PixelTally()
    for i, (mask, amap) in enumerate(zip(masks, maps, strict=True)):
        tally.add("all", amap, mask.astype(bool), f"image {i}")
    return tally.counts(["all"])


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> Estimate:
    """Binned pixel AUROC of maps against their masks (the same pixels in any number of images)."""
    return _tally(masks, maps).pixel_auroc()


def pro_curve(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return _tally(masks, maps).pro_curve()


def pro_auc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = PRO_MAX_FPR) -> Estimate:
    return _tally(masks, maps).pro_auc(max_fpr)
