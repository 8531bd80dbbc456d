"""Thresholds from scores: the image threshold for a target false-alarm rate, the pixel threshold of the map, and
what labelled defects say about it (max-F1 threshold, recall), and whether a threshold can decide at all
(checked_threshold). Pure numpy (sklearn for the defect report), no model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stream_ad.calibration.bounds import (
    allowed_false_alarms,
    fpr_upper_bound,
    images_needed,
    supported_confidence,
    supported_fpr,
)
from stream_ad.calibration.shift import GoodScores
from stream_ad.errors import CalibrationError


@dataclass(frozen=True)
class ImageThreshold:
    value: float
    target_fpr: float
    confidence: float
    n_good: int
    allowed_false_alarms: int  # k: the threshold is the (k+1)-th highest good score
    false_alarms: int  # good calibration images above the threshold (fewer than k only with tied scores)
    fpr_upper_bound: float  # Clopper-Pearson at k of n: the true rate is at most this, at `confidence`

    @property
    def observed_fpr(self) -> float:
        return self.false_alarms / self.n_good

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "observed_fpr": self.observed_fpr}


def too_few_images(n: int, target_fpr: float, confidence: float, cross_fitted: bool = False) -> CalibrationError:
    """The error for n good images too few for the asked rate, with the looser settings n does support (rounded
    towards what holds: the rate up, the confidence down). `cross_fitted`: n are every good image's out-of-fold
    scores, so holding out more or cross-fitting cannot help."""
    supported = ""
    if n > 0:
        rate = math.ceil(supported_fpr(n, confidence) * 1e4) / 1e4
        conf = math.floor(supported_confidence(n, target_fpr) * 100) / 100
        supported = (f"; {n} good images support target_fpr >= {rate:.4f} at {confidence:.0%} confidence, or "
                     f"confidence <= {conf:.2f} at target_fpr {target_fpr:g}")
    return CalibrationError(
        f"{n} good images cannot show a false-alarm rate of at most {target_fpr:g} (calibration.target_fpr) at "
        f"{confidence:.0%} confidence (calibration.confidence): that needs at least "
        f"{images_needed(target_fpr, confidence)} good images the model was not fitted on{supported}; "
        + ("" if cross_fitted else "hold out more (calibration.holdout_fraction), cross-fit to calibrate on every "
           "good image (calibration.folds 4), ")
        + "give more good images (--good) or loosen calibration.target_fpr / calibration.confidence"
    )


def image_threshold(good_scores: np.ndarray, target_fpr: float, confidence: float) -> ImageThreshold:
    """The lowest threshold (most sensitive) whose false-alarm rate is bounded by target_fpr at this confidence."""
    scores = np.asarray(good_scores, dtype=np.float64)
    n = scores.size
    k = allowed_false_alarms(n, target_fpr, confidence)
    if k is None:
        raise too_few_images(n, target_fpr, confidence)
    value = float(np.sort(scores)[::-1][k])
    return ImageThreshold(
        value=value, target_fpr=target_fpr, confidence=confidence, n_good=n, allowed_false_alarms=k,
        false_alarms=int((scores > value).sum()), fpr_upper_bound=fpr_upper_bound(k, n, confidence),
    )


def pixel_threshold(good_maps: list[np.ndarray], target_fpr: float) -> dict[str, Any]:
    """The map value that this share of good pixels exceeds. Neighbouring pixels are strongly correlated (the map
    is upsampled and smoothed), so a binomial bound over pixels would be false confidence: none is stated."""
    pixels = np.concatenate([m.ravel() for m in good_maps]).astype(np.float32)
    value = float(np.quantile(pixels, 1.0 - target_fpr))
    return {
        "value": value,
        "target_fpr": target_fpr,
        "n_pixels": int(pixels.size),
        "observed_fpr": float((pixels > value).mean()),
        "method": "quantile of the good calibration images' map pixels (pixels are correlated: no bound stated)",
    }


def defect_report(good_scores: np.ndarray, defect_scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Recall at the chosen threshold, and the threshold at max F1 over these good + defective images (F1 depends
    on the share of defects in this set, so it is for comparison, not a production setting)."""
    # Imported here: `stream-ad run` uses checked_threshold on line PCs, whose install has no scikit-learn.
    from sklearn.metrics import f1_score, precision_recall_curve, recall_score

    y = np.r_[np.zeros(len(good_scores)), np.ones(len(defect_scores))].astype(int)
    s = np.r_[good_scores, defect_scores].astype(np.float64)
    precision, recall, cuts = precision_recall_curve(y, s)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision),
                   where=(precision + recall) > 0)
    best = int(np.argmax(f1[:-1]))
    # sklearn flags score >= cut; the decide stage flags score > threshold: the next float below gives the same set.
    best_threshold = float(np.nextafter(cuts[best], -np.inf))
    chosen = s > threshold
    return {
        "n_defective": int(len(defect_scores)),
        "n_good": int(len(good_scores)),
        "recall_at_threshold": float(recall_score(y, chosen)),
        "f1_at_threshold": float(f1_score(y, chosen, zero_division=0.0)),
        "threshold_at_max_f1": best_threshold,
        "max_f1": float(f1[best]),
        "recall_at_max_f1": float(recall[best]),
    }


def checked_threshold(value: float, origin: str, good: GoodScores | None, nonnegative: bool) -> float:
    """`value` if it can decide: finite, not negative where the model's scores never are (`nonnegative`), and not
    far outside the scores of the good images it was calibrated on (`good`, when recorded): more than their range
    beyond either end, where no calibration puts it and it alarms on every part or on none. Else a CalibrationError
    naming the value, where it came from (`origin`) and the range."""
    if not math.isfinite(value):
        raise CalibrationError(f"the decision threshold {value} ({origin}) is not a finite number: no score can be "
                               "judged against it; calibrate the model (`stream-ad calibrate`) or fix the setting")
    if nonnegative and value < 0:
        raise CalibrationError(f"the decision threshold {value:g} ({origin}) is negative, but this model's scores "
                               "never are: every frame would be an alarm; calibrate the model (`stream-ad calibrate`)")
    if good is not None:
        low, high = good.sample[0], good.sample[-1]
        margin = (high - low) or abs(high) or 1.0
        if not low - margin <= value <= high + margin:
            raise CalibrationError(
                f"the decision threshold {value:g} ({origin}) is far outside the scores of the {good.n} good images "
                f"it was calibrated on ({low:.4g} to {high:.4g}): it would alarm on every part or on none; "
                "recalibrate (`stream-ad calibrate`)"
            )
    return value
