"""Image AUROC, pixel AUROC and PRO (per-region overlap, Bergmann et al., MVTec AD, IJCV 2021)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

# Regions are 8-connected, as in the MVTec AD evaluation code.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def image_auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    return float(roc_auc_score(np.asarray(labels), np.asarray(scores, dtype=np.float64)))


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([a.ravel() for a in maps]).astype(np.float32, copy=False)
    return float(roc_auc_score(y, s))


def pro_curve(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every distinct score threshold, from the highest threshold down.

    PRO(t) is the mean, over every connected defect region of every image, of the fraction of that region scored
    >= t; FPR(t) is the fraction of all defect-free pixels scored >= t. One sort of all pixels gives every point:
    a pixel of region r adds 1 / (R * |r|) to PRO, a defect-free pixel adds 1 / N_ok to FPR.
    """
    pro_weight, fpr_weight, scores = [], [], []
    regions_total = 0
    per_image_labels = []
    for mask in masks:
        labelled, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        per_image_labels.append((labelled, n))
        regions_total += n
    if regions_total == 0:
        raise ValueError("PRO needs at least one defect region in the masks")
    n_ok = sum(int((~m.astype(bool)).sum()) for m in masks)
    if n_ok == 0:
        raise ValueError("PRO needs defect-free pixels for its false-positive rate")
    for (labelled, n), amap in zip(per_image_labels, maps):
        sizes = np.bincount(labelled.ravel(), minlength=n + 1).astype(np.float64)
        w_pro = np.zeros(n + 1)
        w_pro[1:] = 1.0 / (regions_total * sizes[1:])
        flat = labelled.ravel()
        pro_weight.append(w_pro[flat])
        fpr_weight.append((flat == 0) / n_ok)
        scores.append(amap.ravel().astype(np.float32, copy=False))
    s = np.concatenate(scores)
    order = np.argsort(-s, kind="stable")
    s = s[order]
    pro = np.cumsum(np.concatenate(pro_weight)[order])
    fpr = np.cumsum(np.concatenate(fpr_weight)[order])
    # Pixels with equal scores pass a threshold together: keep the last point of each run of ties.
    last_of_run = np.append(s[1:] != s[:-1], True)
    return np.concatenate([[0.0], fpr[last_of_run]]), np.concatenate([[0.0], pro[last_of_run]])


def pro_auc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, max_fpr], divided by max_fpr (1.0 = perfect)."""
    fpr, pro = pro_curve(masks, maps)
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr:  # close the curve at max_fpr by linear interpolation to the next point
        nxt = int(np.argmax(fpr > max_fpr)) if (fpr > max_fpr).any() else None
        y_end = y[-1] if nxt is None else np.interp(max_fpr, [fpr[nxt - 1], fpr[nxt]], [pro[nxt - 1], pro[nxt]])
        x, y = np.append(x, max_fpr), np.append(y, y_end)
    return float(np.trapezoid(y, x) / max_fpr)
