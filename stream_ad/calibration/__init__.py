"""Calibration: the decision threshold from good images the model never saw, for a target false-alarm rate with
the confidence the number of images allows (stream-ad calibrate). See calibration/README.md at the repo root."""

from stream_ad.calibration.holdout import CalibrationError, HoldoutSplit, split_good

__all__ = ["CalibrationError", "HoldoutSplit", "split_good"]
