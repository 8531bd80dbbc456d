import numpy as np
import pytest

from stream_ad.evaluation import image_auroc, pixel_auroc, pro_auc, pro_curve


def test_pro_curve_by_hand() -> None:
    # One image, two defect regions: A = 2 pixels, B = 1 pixel; 3 defect-free pixels.
    mask = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=bool)
    amap = np.array([[0.9, 0.2, 0.8], [0.1, 0.1, 0.1], [0.3, 0.3, 0.7]], dtype=np.float32)
    fpr, pro = pro_curve([mask], [amap])
    # Thresholds from the top: 0.9 covers half of A -> PRO (0.5 + 0) / 2; then 0.8 is a false positive (1 of 6 ok);
    # then 0.7 covers B -> PRO (0.5 + 1) / 2; 0.3 ties two ok pixels; 0.2 finishes A; 0.1 three ok pixels.
    np.testing.assert_allclose(fpr, [0, 0, 1 / 6, 1 / 6, 3 / 6, 3 / 6, 1.0])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 0.75, 1.0, 1.0])


def test_pro_auc_integrates_up_to_max_fpr() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[:2, :2] = True
    perfect = mask.astype(np.float32)
    assert pro_auc([mask], [perfect]) == pytest.approx(1.0)
    assert pro_auc([mask], [1.0 - perfect]) == pytest.approx(0.0)
    # A constant map: one step from (0, 0) to (1, 1); the curve is closed at 0.3 by linear interpolation
    # (as in the MVTec AD evaluation code), so it scores like a random ranking: 0.5 * 0.3 * 0.3 / 0.3.
    assert pro_auc([mask], [np.zeros_like(perfect)]) == pytest.approx(0.15)


def test_pro_auc_linear_case() -> None:
    # Defect pixel scored like the ok pixels: with 1 region of 1 pixel and ranking random, area ~ 0.15 / 0.3.
    rng = np.random.default_rng(0)
    masks = [np.zeros((50, 50), dtype=bool) for _ in range(200)]
    for m in masks:
        m[25, 25] = True
    maps = [rng.random((50, 50)).astype(np.float32) for _ in masks]
    assert pro_auc(masks, maps) == pytest.approx(0.15, abs=0.03)


def test_auroc_wrappers() -> None:
    assert image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert image_auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    m = np.array([[0, 1], [0, 1]], dtype=bool)
    assert pixel_auroc([m], [m.astype(np.float32)]) == 1.0


def test_pro_needs_regions() -> None:
    with pytest.raises(ValueError, match="defect region"):
        pro_auc([np.zeros((3, 3), bool)], [np.zeros((3, 3), np.float32)])
