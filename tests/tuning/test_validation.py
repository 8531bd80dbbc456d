"""The note tune adds when synthetic defects are too easy to tell its candidates apart by image AUROC: only where
they are synthetic and the default separates them almost perfectly (SATURATED); it says what the ranking fell back
on (pixel AUROC with masks) and whether the default was kept."""

from __future__ import annotations

import numpy as np

from stream_ad.tuning import SATURATED, ValidationSet, saturation_note

FRAMES = (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
MASKS = (np.zeros((8, 8), bool), np.ones((8, 8), bool))


def test_a_saturated_synthetic_validation_asks_for_labelled_defects() -> None:
    synthetic = ValidationSet(FRAMES, (0, 1), None, "2 synthetic defects (scratch)", synthetic=True)
    note = saturation_note(synthetic, 0.9988, kept=True)
    assert note is not None and "0.9988" in note and "--defects DIR" in note
    assert "no candidate could show a gain" in note and "the default was kept" in note
    assert saturation_note(synthetic, SATURATED - 1e-4, kept=True) is None  # room left for a gain to show


def test_with_masks_the_note_says_the_candidates_were_ranked_on_pixel_auroc() -> None:
    synthetic = ValidationSet(FRAMES, (0, 1), MASKS, "2 synthetic defects (scratch)", synthetic=True)
    left = saturation_note(synthetic, 1.0, kept=False)
    assert left is not None and "ranked on pixel AUROC instead" in left and "the default was left" in left


def test_labelled_defects_need_no_note() -> None:
    labelled = ValidationSet(FRAMES, (0, 1), None, "1 labelled defects (line)")
    assert not labelled.synthetic and saturation_note(labelled, 1.0, kept=True) is None
