"""Whether a candidate beats the default configuration beyond the noise of a small validation set.

The test: a paired, stratified bootstrap of the image-AUROC difference (candidate minus default) over the validation
images, or of the pixel-AUROC difference where image AUROC cannot tell the candidates apart (it saturates,
SATURATED below, or no candidate beats the default's beyond noise: search.ranked_on). Why this one:
- paired: every candidate is scored on the same images, so most of the noise (which images happen to be held out,
  which synthetic defects happen to be easy) is shared; resampling images and comparing both on each resample
  cancels it, where two independent intervals would not;
- stratified: good and defective images are resampled separately, keeping their counts, as the validation set was
  drawn (its defects are as many as asked, not a random share);
- exact per resample: AUROC is the mean of a defect-by-good comparison matrix (1 above, 0.5 tied, 0 below), so a
  resample's AUROC is that matrix weighted by how often each image was drawn: no sorting per resample, and a few
  thousand resamples of a few hundred images take well under a second;
- no distribution assumed (DeLong's normal approximation is poor near AUROC 1.0, where tuning usually is).
A candidate beats the default when the lower end of its interval is above 0. The confidence is Bonferroni-corrected
over the candidates compared, so with `confidence` 0.95 the chance that tune leaves the default for a candidate that
is in truth no better is at most about 5 % per test, however many candidates the grid has.

Saturation (many candidates at synthetic AUROC 1.0, the default among them): their differences are 0 on every
resample, so none beats the default and it is kept; where the default is below and several saturated candidates beat
it, their bounds tie and the cheaper one (the earlier in the grid, cheapest first) wins.

Where the default's image AUROC is SATURATED, no candidate can show a gain in it beyond the noise, so the candidates
are ranked on pixel AUROC instead (as they are where none beats it beyond noise: configurations that detect alike,
told apart by their maps), by the same bootstrap: images drawn with their pixels. Two tests in turn, each at
`confidence`: a candidate no better is chosen at most about twice as often as with one. Each image's map is
counted into histograms over PIXEL_BINS bins at the quantiles of the candidate's pixels (defect and defect-free), so a
resample's pixel AUROC is its weighted histograms' area, and two pixels in one bin count as a tie; with quantile bins
a bin holds about 1 / PIXEL_BINS of the defect-free pixels, so this moves pixel AUROC by at most about
1 / (2 * PIXEL_BINS) (PixelHistograms.max_error computes the bound from the counts). On synthetic defects far from
square frames (magnetic_tile stacked into 500 x 1250 strips) the default separated them at image AUROC 0.9988 while
tile 224 and letterbox 320 beat it on real ones (0.795 and 0.775 against 0.691); their synthetic pixel AUROC ranked
them the same way (0.976-0.982 and 0.962-0.966 against 0.951: README, "Tuning to a line").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
# The default's image AUROC on the validation set from which no candidate can show a gain in it beyond the noise:
# candidates are then ranked on pixel AUROC (where the defects have masks).
SATURATED = 0.99
PIXEL_BINS = 1024  # bins of a candidate's map values: 16 KB a validation image
QUANTILE_SAMPLE = 1_000_000  # pixels the bins' edges are placed by


@dataclass(frozen=True)
class Interval:
    """A candidate's AUROC difference from the default (image or pixel: rank() says which): the point estimate and a
    two-sided interval whose lower end is the one-sided bound the decision uses (so the interval's coverage is
    1 - 2 * (1 - level))."""

    difference: float
    low: float
    high: float
    level: float  # the per-comparison one-sided confidence, after the Bonferroni correction

    @property
    def beats_default(self) -> bool:
        return self.low > 0.0

    @property
    def worse(self) -> bool:
        """Worse than the default beyond noise."""
        return self.high < 0.0

    def __str__(self) -> str:
        return f"{self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


@dataclass(frozen=True)
class Resamples:
    """How often each validation image is drawn in each resample, good and defective images drawn separately
    (stratified): (RESAMPLES, images) counts over the validation set's order."""

    labels: np.ndarray
    weights: np.ndarray

    @classmethod
    def draw(cls, labels: Sequence[int], seed: int) -> Resamples:
        y = np.asarray(labels)
        rng = np.random.default_rng(seed)
        weights = np.zeros((RESAMPLES, y.size))
        # The defective images' draws first, then the good ones', as every tune before pixel ranking drew them.
        for label in (1, 0):
            idx = np.flatnonzero(y == label)
            weights[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1 / idx.size), size=RESAMPLES)
        return cls(y, weights)


def image_auroc_resampled(resamples: Resamples, scores: Sequence[float]) -> np.ndarray:
    """The image AUROC of `scores` (in the validation set's order) on every resample (RESAMPLES,), exactly: AUROC is
    the mean of a defect-by-good comparison matrix (1 above, 0.5 tied, 0 below), so a resample's is that matrix
    weighted by how often each image was drawn."""
    y, s = resamples.labels, np.asarray(scores, dtype=np.float64)
    bad, good = s[y == 1], s[y == 0]
    comparisons = (bad[:, None] > good[None, :]) + 0.5 * (bad[:, None] == good[None, :])
    w_bad, w_good = resamples.weights[:, y == 1], resamples.weights[:, y == 0]
    return ((w_bad @ comparisons) * w_good).sum(axis=1) / (bad.size * good.size)


@dataclass(frozen=True)
class PixelHistograms:
    """One candidate's maps on the validation images: per image, its defect-free and defect pixels counted over
    PIXEL_BINS bins of ascending map value, (images, bins) each."""

    ok: np.ndarray
    defect: np.ndarray

    @classmethod
    def count(cls, masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], seed: int = 0) -> PixelHistograms:
        """The bins' edges are quantiles of the maps' values (of a seeded sample of about QUANTILE_SAMPLE pixels), so
        each holds about as many pixels."""
        rng = np.random.default_rng(seed)
        total = sum(m.size for m in maps)
        # Drawn image by image in proportion to its pixels: no copy of every map at once (100 strips of 500 x 1250
        # are 62 M pixels).
        sample = np.concatenate([m.ravel()[rng.integers(0, m.size, -(-QUANTILE_SAMPLE * m.size // total))]
                                 if total > QUANTILE_SAMPLE else m.ravel() for m in maps])
        edges = np.unique(np.quantile(sample.astype(np.float64), np.linspace(0, 1, PIXEL_BINS + 1)[1:-1]))
        ok, defect = np.zeros((len(maps), PIXEL_BINS)), np.zeros((len(maps), PIXEL_BINS))
        for i, (mask, amap) in enumerate(zip(masks, maps, strict=True)):
            if amap.shape != mask.shape:
                raise ValueError(f"validation image {i}: map {amap.shape} but mask {mask.shape}")
            bins = np.searchsorted(edges, amap.ravel().astype(np.float64), side="right")
            flat = mask.ravel().astype(bool)
            ok[i] = np.bincount(bins[~flat], minlength=PIXEL_BINS)
            defect[i] = np.bincount(bins[flat], minlength=PIXEL_BINS)
        return cls(ok, defect)

    def auroc(self) -> float:
        """Pixel AUROC of all the images (pixels sharing a bin count as tied)."""
        return float(self.resampled(np.ones((1, self.ok.shape[0])))[0])

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        """Pixel AUROC of the images weighted by `weights`, (resamples, images): one figure per resample."""
        ok, defect = weights @ self.ok, weights @ self.defect
        below = np.cumsum(ok, axis=1) - ok
        return (defect * (below + 0.5 * ok)).sum(axis=1) / (defect.sum(axis=1) * ok.sum(axis=1))

    def max_error(self) -> float:
        """How far the binned pixel AUROC of all images can lie from the exact one: half the bins' own boxes."""
        ok, defect = self.ok.sum(axis=0), self.defect.sum(axis=0)
        return float(0.5 * np.sum(ok * defect) / (ok.sum() * defect.sum()))


def intervals(default: np.ndarray, candidates: Sequence[np.ndarray], points: Sequence[float],
              confidence: float) -> list[Interval]:
    """Each candidate's difference from the default (`points`: the differences on the validation set itself) with
    its interval from the same resamples (`default`, `candidates`: a figure per resample), at `confidence`
    Bonferroni-corrected over the candidates."""
    if not candidates:
        return []
    alpha = (1.0 - confidence) / len(candidates)
    out = []
    for boot, point in zip(candidates, points, strict=True):
        low, high = np.quantile(boot - default, [alpha, 1.0 - alpha])
        out.append(Interval(float(point), float(low), float(high), 1.0 - alpha))
    return out


def intervals_against_default(labels: Sequence[int], default: Sequence[float], candidates: Sequence[Sequence[float]],
                              confidence: float, seed: int) -> list[Interval]:
    """Each candidate's image-AUROC difference from the default, on the same validation images (`labels`: 0 good,
    1 defective; scores in the order of `labels`), with the interval at `confidence` Bonferroni-corrected over the
    candidates. The same resamples serve every candidate, so their bounds compare with each other too."""
    resamples = Resamples.draw(labels, seed)
    full = Resamples(resamples.labels, np.ones((1, len(labels))))
    base, base_point = image_auroc_resampled(resamples, default), image_auroc_resampled(full, default)[0]
    return intervals(base, [image_auroc_resampled(resamples, s) for s in candidates],
                     [image_auroc_resampled(full, s)[0] - base_point for s in candidates], confidence)


def pixel_intervals_against_default(labels: Sequence[int], default: PixelHistograms,
                                    candidates: Sequence[PixelHistograms], confidence: float,
                                    seed: int) -> list[Interval]:
    """As intervals_against_default, of pixel AUROC: images resampled (stratified, the same draws as image AUROC's
    at the same seed) with all their pixels."""
    weights = Resamples.draw(labels, seed).weights
    return intervals(default.resampled(weights), [c.resampled(weights) for c in candidates],
                     [c.auroc() - default.auroc() for c in candidates], confidence)
