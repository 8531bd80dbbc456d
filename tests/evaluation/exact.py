"""The exact pixel metrics the binned ones are checked against: sklearn's roc_auc_score over every pixel, and the
PRO curve from one sort of every pixel (stream_ad's own before it was binned; fine on test-sized data only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

_EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def exact_pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    y = np.concatenate([m.ravel() for m in masks])
    s = np.concatenate([a.ravel() for a in maps]).astype(np.float32, copy=False)
    return float(roc_auc_score(y, s))


def exact_pro_curve(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) at every distinct score threshold, from the highest threshold down."""
    pro_weight, fpr_weight, scores = [], [], []
    regions_total = 0
    per_image_labels = []
    for mask in masks:
        labelled, n = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        per_image_labels.append((labelled, n))
        regions_total += n
    n_ok = sum(int((~m.astype(bool)).sum()) for m in masks)
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
    last_of_run = np.append(s[1:] != s[:-1], True)
    return np.concatenate([[0.0], fpr[last_of_run]]), np.concatenate([[0.0], pro[last_of_run]])


def exact_pro_auc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_fpr: float = 0.3) -> float:
    fpr, pro = exact_pro_curve(masks, maps)
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr:
        nxt = int(np.argmax(fpr > max_fpr))
        x, y = np.append(x, max_fpr), np.append(y, np.interp(max_fpr, fpr[nxt - 1:nxt + 1], pro[nxt - 1:nxt + 1]))
    return float(np.trapezoid(y, x) / max_fpr)
