"""Accuracy on labelled test images (plain folders or the MVTec AD layout): image AUROC, pixel AUROC, PRO (binned,
in bounded memory), recall at false-alarm rates, and an HTML report with pictures."""

from stream_ad.evaluation.accuracy import Estimate, image_auroc, pixel_auroc, pro_auc, pro_curve
from stream_ad.evaluation.report import Report, TestPredictions, evaluate, metrics_for, predict_test

__all__ = [
    "Estimate",
    "Report",
    "TestPredictions",
    "evaluate",
    "image_auroc",
    "metrics_for",
    "pixel_auroc",
    "predict_test",
    "pro_auc",
    "pro_curve",
]
