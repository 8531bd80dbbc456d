"""Accuracy on labelled test images (plain folders or the MVTec AD layout): image AUROC, pixel AUROC, PRO."""

from stream_ad.evaluation.accuracy import image_auroc, pixel_auroc, pro_auc, pro_curve
from stream_ad.evaluation.report import Report, TestPredictions, evaluate, metrics_for, predict_test

__all__ = [
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
