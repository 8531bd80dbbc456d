"""The binned pixel metrics: exact where every distinct score has its own bin, within their stated error bound of the
exact ones (sklearn's roc_auc_score, the sort-everything PRO) on random and real maps, and the bound itself small."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_ad.data import MVTecCategory, read_mask
from stream_ad.evaluation import image_auroc, pixel_auroc, predict_test, pro_auc, pro_curve
from stream_ad.evaluation.accuracy import PixelTally, recall_at_fpr
from tests.conftest import PIPED
from tests.evaluation.exact import exact_pixel_auroc, exact_pro_auc, exact_pro_curve

PIPED_CATEGORY = PIPED / "PA_BDP01_TL"
BOUND = 1e-3  # the error bound the binning must keep on test-sized data (the report states the actual one)


@pytest.mark.parametrize("curve", [pro_curve, exact_pro_curve], ids=["binned", "exact"])
def test_pro_curve_by_hand(curve: Any) -> None:
    # One image, two defect regions: A = 2 pixels, B = 1 pixel; 3 defect-free pixels.
    mask = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]], dtype=bool)
    amap = np.array([[0.9, 0.2, 0.8], [0.1, 0.1, 0.1], [0.3, 0.3, 0.7]], dtype=np.float32)
    fpr, pro = curve([mask], [amap])
    # Thresholds from the top: 0.9 covers half of A -> PRO (0.5 + 0) / 2; then 0.8 is a false positive (1 of 6 ok);
    # then 0.7 covers B -> PRO (0.5 + 1) / 2; 0.3 ties two ok pixels; 0.2 finishes A; 0.1 three ok pixels.
    np.testing.assert_allclose(fpr, [0, 0, 1 / 6, 1 / 6, 3 / 6, 3 / 6, 1.0])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 0.75, 1.0, 1.0])


def test_pro_auc_integrates_up_to_max_fpr() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[:2, :2] = True
    perfect = mask.astype(np.float32)
    assert pro_auc([mask], [perfect]).value == pytest.approx(1.0)
    assert pro_auc([mask], [1.0 - perfect]).value == pytest.approx(0.0)
    # A constant map: one step from (0, 0) to (1, 1); the curve is closed at 0.3 by linear interpolation
    # (as in the MVTec AD evaluation code), so it scores like a random ranking: 0.5 * 0.3 * 0.3 / 0.3.
    assert pro_auc([mask], [np.zeros_like(perfect)]).value == pytest.approx(0.15)


def test_pro_auc_linear_case() -> None:
    # Defect pixel scored like the ok pixels: with 1 region of 1 pixel and ranking random, area ~ 0.15 / 0.3.
    rng = np.random.default_rng(0)
    masks = [np.zeros((50, 50), dtype=bool) for _ in range(200)]
    for m in masks:
        m[25, 25] = True
    maps = [rng.random((50, 50)).astype(np.float32) for _ in masks]
    assert pro_auc(masks, maps).value == pytest.approx(0.15, abs=0.03)


def test_auroc_wrappers() -> None:
    assert image_auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert image_auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    m = np.array([[0, 1], [0, 1]], dtype=bool)
    assert pixel_auroc([m], [m.astype(np.float32)]).value == 1.0


def test_pro_needs_regions() -> None:
    with pytest.raises(ValueError, match="defect region"):
        pro_auc([np.zeros((3, 3), bool)], [np.zeros((3, 3), np.float32)])


def test_a_map_with_nan_is_named() -> None:
    amap = np.zeros((4, 4), np.float32)
    amap[1, 1] = np.nan
    with pytest.raises(ValueError, match="anomaly map of frame7.png holds NaN"):
        PixelTally().add("good", amap, np.zeros((4, 4), bool), "frame7.png")


def random_set(seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Blobs of defect scored a little higher than the rest; ranges that grow from image to image (the first map, a
    good image's, constant), so the binning is widened many times."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for i in range(40):
        mask = np.zeros((96, 128), bool)
        for _ in range(rng.integers(0, 4) if i else 0):
            y, x, r = rng.integers(5, 90), rng.integers(5, 120), rng.integers(1, 8)
            mask[max(0, y - r):y + r, max(0, x - r):x + r] = True
        amap = rng.gamma(2.0, 1.0, mask.shape) + 1.5 * mask * rng.random(mask.shape)
        maps.append(np.zeros(mask.shape, np.float32) if i == 0 else (amap * 1.04**i - 0.05 * i).astype(np.float32))
        masks.append(mask)
    return masks, maps


def assert_within_bound(masks: list[np.ndarray], maps: list[np.ndarray]) -> None:
    auroc, pro = pixel_auroc(masks, maps), pro_auc(masks, maps)
    exact_auroc, exact_pro = exact_pixel_auroc(masks, maps), exact_pro_auc(masks, maps)
    assert abs(auroc.value - exact_auroc) <= auroc.max_error + 1e-12, (auroc, exact_auroc)
    assert abs(pro.value - exact_pro) <= pro.max_error + 1e-12, (pro, exact_pro)
    assert auroc.max_error < BOUND and pro.max_error < BOUND, (auroc, pro)


@pytest.mark.parametrize("seed", [0, 1])
def test_binned_within_bound_of_exact_on_random_maps(seed: int) -> None:
    assert_within_bound(*random_set(seed))


def test_binned_within_bound_of_exact_on_real_maps(piped_patchcore: tuple[Any, Path]) -> None:
    model, _ = piped_patchcore
    test = MVTecCategory(model.settings.data.root).test()
    preds = predict_test(model, test)
    masks = [read_mask(s, m.shape) for s, m in zip(test, preds.maps)]
    assert sum(int(m.sum()) for m in masks) > 0
    assert_within_bound(masks, preds.maps)


def test_recall_at_fpr_allows_floor_of_the_rate_times_good_images() -> None:
    good = np.arange(100, dtype=float)  # 0..99
    defective = np.array([97.5, 98.5, 99.5, 50.0])
    assert recall_at_fpr(good, defective, 0.01) == 0.5  # one false alarm allowed: alarm above 98
    assert recall_at_fpr(good, defective, 0.0) == 0.25  # none: alarm above 99
    assert recall_at_fpr(good, defective, 0.05) == 0.75  # five: alarm above 94


def test_test_batches_are_cut_by_pixels_as_well_as_by_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_ad.evaluation import report

    test = MVTecCategory(PIPED_CATEGORY).test()[:10]  # 128 x 128 images
    monkeypatch.setattr(report, "BATCH_PIXELS", 3 * 128 * 128)
    assert [len(b) for b in report._batches(test, 16)] == [3, 3, 3, 1]
    assert [len(b) for b in report._batches(test, 2)] == [2, 2, 2, 2, 2]
    assert [p for b in report._batches(test, 2) for p in b] == [s.path for s in test]
