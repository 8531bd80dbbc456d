"""Whether a candidate beats the default configuration beyond the noise of a small validation set.

The test: a paired, stratified bootstrap of the image-AUROC difference (candidate minus default) over the validation
images. Why this one:
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
is in truth no better is at most about 5 %, however many candidates the grid has.

Saturation (many candidates at synthetic AUROC 1.0, the default among them): their differences are 0 on every
resample, so none beats the default and it is kept; where the default is below and several saturated candidates beat
it, their bounds tie and the cheaper one (the earlier in the grid, cheapest first) wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A candidate's image-AUROC difference from the default: the point estimate and a two-sided interval whose
    lower end is the one-sided bound the decision uses (so the interval's coverage is 1 - 2 * (1 - level))."""

    difference: float
    low: float
    high: float
    level: float  # the per-comparison one-sided confidence, after the Bonferroni correction

    @property
    def beats_default(self) -> bool:
        return self.low > 0.0

    def __str__(self) -> str:
        return f"{self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def _comparisons(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Defect-by-good matrix: 1 where the defect scores above the good image, 0.5 tied, 0 below."""
    bad, good = scores[labels == 1], scores[labels == 0]
    return (bad[:, None] > good[None, :]) + 0.5 * (bad[:, None] == good[None, :])


def intervals_against_default(labels: Sequence[int], default: Sequence[float], candidates: Sequence[Sequence[float]],
                              confidence: float, seed: int) -> list[Interval]:
    """Each candidate's image-AUROC difference from the default, on the same validation images (`labels`: 0 good,
    1 defective; scores in the order of `labels`), with the interval at `confidence` Bonferroni-corrected over the
    candidates. The same resamples serve every candidate, so their bounds compare with each other too."""
    if not candidates:
        return []
    y = np.asarray(labels)
    n_bad, n_good = int((y == 1).sum()), int((y == 0).sum())
    rng = np.random.default_rng(seed)
    # How often each image is drawn in each resample: multinomial counts within each class.
    w_bad = rng.multinomial(n_bad, np.full(n_bad, 1 / n_bad), size=RESAMPLES).astype(np.float64)
    w_good = rng.multinomial(n_good, np.full(n_good, 1 / n_good), size=RESAMPLES).astype(np.float64)
    base = _comparisons(y, np.asarray(default, dtype=np.float64))
    alpha = (1.0 - confidence) / len(candidates)
    out = []
    for scores in candidates:
        diff = _comparisons(y, np.asarray(scores, dtype=np.float64)) - base
        boot = ((w_bad @ diff) * w_good).sum(axis=1) / (n_bad * n_good)
        low, high = np.quantile(boot, [alpha, 1.0 - alpha])
        out.append(Interval(float(diff.mean()), float(low), float(high), 1.0 - alpha))
    return out
