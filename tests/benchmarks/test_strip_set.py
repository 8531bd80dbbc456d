"""benchmarks.strip_set: frames far from square whose masks sit where their defects do."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.strip_set import Strips


@pytest.mark.parametrize(("height", "width"), [(500, 1250), (1250, 500)])
def test_a_defect_and_its_mask_land_in_the_same_cell(height: int, width: int) -> None:
    strips = Strips(height, width, 5, np.random.default_rng(0))
    good = [np.full((40, 30, 3), 10, np.uint8)]
    defect = np.full((60, 50, 3), 200, np.uint8)
    mask = np.zeros((60, 50), np.uint8)
    mask[20:40, 10:30] = 255
    frame, frame_mask = strips.defect(defect, mask, good)
    assert frame.shape == (height, width, 3) and frame_mask.shape == (height, width)
    assert set(np.unique(frame_mask)) == {0, 255}  # nearest neighbour: still a binary mask
    assert np.all(frame[frame_mask > 0] == 200)  # every mask pixel lies on the defective image
    assert np.count_nonzero(frame[..., 0] == 200) == height * width // 5  # which fills exactly one cell


def test_cells_must_divide_the_long_edge() -> None:
    with pytest.raises(ValueError, match="do not divide"):
        Strips(500, 1250, 3, np.random.default_rng(0))
