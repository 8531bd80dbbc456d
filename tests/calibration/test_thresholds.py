"""checked_threshold: a decision threshold must be finite, not negative for scores that never are, and not far
outside the good scores it was calibrated on (the probe's NaN, 1e30 and -5)."""

from __future__ import annotations

import re

import pytest

from stream_ad.calibration import CalibrationError
from stream_ad.calibration.shift import GoodScores
from stream_ad.calibration.thresholds import checked_threshold

GOOD = GoodScores.of([1.0, 1.5, 2.0, 2.5, 3.0])  # range 1 to 3


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_threshold_that_is_not_finite_is_refused(value: float) -> None:
    with pytest.raises(CalibrationError, match=rf"the decision threshold {value} \(manifest\) is not a finite number"):
        checked_threshold(value, "manifest", GOOD, nonnegative=True)
    with pytest.raises(CalibrationError, match="is not a finite number"):
        checked_threshold(value, "manifest", None, nonnegative=False)


@pytest.mark.parametrize("value", [1e30, -5.0, 5.01, -1.01])
def test_a_threshold_far_outside_the_calibration_range_is_refused(value: float) -> None:
    message = re.escape(f"{value:g} (the record) is far outside the scores of the 5 good images it was calibrated "
                        "on (1 to 3)")
    with pytest.raises(CalibrationError, match=message):
        checked_threshold(value, "the record", GOOD, nonnegative=False)


def test_a_negative_threshold_for_nonnegative_scores_is_refused() -> None:
    with pytest.raises(CalibrationError, match=r"-5 \(setting\) is negative, but this model's scores never are"):
        checked_threshold(-5.0, "setting", None, nonnegative=True)
    assert checked_threshold(-5.0, "setting", None, nonnegative=False) == -5.0  # standardised scores can be


@pytest.mark.parametrize("value", [1.0, 2.2, 3.0, 4.9, 0.0])
def test_thresholds_within_a_range_of_the_good_scores_pass(value: float) -> None:
    assert checked_threshold(value, "manifest", GOOD, nonnegative=True) == value
    assert checked_threshold(value, "manifest", None, nonnegative=True) == value
