"""Calibration: the decision threshold from good images the model never saw, for a target false-alarm rate with
the confidence the number of images allows (stream-ad calibrate). See calibration/README.md at the repo root.

holdout.py (the split), crossfit.py (cross-fitted calibration), bounds.py, thresholds.py, shift.py (the start-up
score comparison), calibrate.py. This file imports none of them: `stream-ad run` of a runtime artefact uses thresholds
and shift on a line PC without torch, which holdout's data-set reader needs."""

from stream_ad.errors import CalibrationError

__all__ = ["CalibrationError"]
