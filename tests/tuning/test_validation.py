"""The note tune adds when synthetic defects cannot tell its candidates apart: only where they are synthetic, the
default was kept and it separates them almost perfectly (SATURATED)."""

from __future__ import annotations

import numpy as np

from stream_ad.tuning import ValidationSet, saturation_note
from stream_ad.tuning.validation import SATURATED

FRAMES = (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))


def test_a_saturated_synthetic_validation_asks_for_labelled_defects() -> None:
    synthetic = ValidationSet(FRAMES, (0, 1), None, "2 synthetic defects (scratch)", synthetic=True)
    note = saturation_note(synthetic, 0.9988, kept=True)
    assert note is not None and "0.9988" in note and "--defects DIR" in note
    assert saturation_note(synthetic, SATURATED - 1e-4, kept=True) is None  # room left for a gain to show
    assert saturation_note(synthetic, 1.0, kept=False) is None  # a candidate beat it: the choice says something


def test_labelled_defects_need_no_note() -> None:
    labelled = ValidationSet(FRAMES, (0, 1), None, "1 labelled defects (line)")
    assert not labelled.synthetic and saturation_note(labelled, 1.0, kept=True) is None
