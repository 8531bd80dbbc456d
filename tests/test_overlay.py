"""The alarm overlay a person reads: the frame untouched where the map is low, colour and an outline where it is above
the pixel threshold (or the stated quantile), and a legend with the score against the threshold and a colour bar."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream_ad.data import read_image
from stream_ad.overlay import (
    ALARM_TEXT,
    BACKGROUND,
    COLOUR_WEIGHT,
    MIN_SIDE,
    OK_TEXT,
    OUTLINE,
    draw_overlay,
)
from tests.conftest import MAGNETIC_TILE

SIDE = 400  # >= MIN_SIDE: drawn at its own size, at the bottom left of the picture
REGION = (slice(100, 200), slice(150, 270))  # rows, columns of the high part of the map
INSIDE = (slice(115, 185), slice(165, 255))  # the region less its outline
OUTSIDE = (slice(0, 80), slice(0, SIDE))  # far from the region and its outline


@pytest.fixture(scope="module")
def tile() -> np.ndarray:
    """A real magnetic_tile test frame (RGB), SIDE x SIDE."""
    path = min((MAGNETIC_TILE / "test" / "good").glob("*.jpg"))
    return cv2.resize(read_image(path), (SIDE, SIDE))


def _map(rng: np.random.Generator) -> np.ndarray:
    """Low noise everywhere, high inside REGION: 12,000 of 160,000 pixels."""
    amap = rng.uniform(0.0, 1.0, (SIDE, SIDE)).astype(np.float32)
    amap[REGION] = 4.0 + rng.uniform(0.0, 1.0, (100, 120))
    return amap


def _body(picture: np.ndarray) -> np.ndarray:
    return picture[-SIDE:, :SIDE]


@pytest.mark.parametrize("pixel_threshold", [2.0, None], ids=["pixel-threshold", "quantile"])
def test_colour_only_where_the_map_is_high_and_the_region_outlined(tile: np.ndarray,
                                                                   pixel_threshold: float | None) -> None:
    rng = np.random.default_rng(0)
    amap = _map(rng)
    if pixel_threshold is None:  # without one, only the top 1 % is coloured: make REGION that 1 %
        amap = np.where(amap < 4.0, 0.0, amap).astype(np.float32)
        amap[REGION] = 0.0
        amap[110:150, 160:200] = 4.0 + rng.uniform(0.0, 1.0, (40, 40))  # 1,600 pixels = 1 %
    picture = draw_overlay(tile, amap, score=5.0, threshold=3.0, pixel_threshold=pixel_threshold)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    body = _body(picture)
    frame_bgr = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
    # Where the map is low the frame is as the camera gave it, pixel for pixel.
    assert np.array_equal(body[OUTSIDE], frame_bgr[OUTSIDE])
    assert np.array_equal(body[300:, :], frame_bgr[300:, :])
    # Inside the high region: coloured (red to yellow: red channel up, blue down), the frame still shows through.
    inside = (slice(120, 140), slice(170, 190)) if pixel_threshold is None else INSIDE
    got, was = body[inside].astype(int), frame_bgr[inside].astype(int)
    assert (got[..., 2] - was[..., 2]).mean() > 40
    # The colours have no blue: there the frame shows through at 1 - COLOUR_WEIGHT, texture and all.
    assert np.abs(got[..., 0] - was[..., 0] * (1 - COLOUR_WEIGHT)).max() <= 1 and was[..., 0].std() > 3
    # The outline: pixels of the outline colour along the region's top edge, none far from it.
    edge_row = 100 if pixel_threshold is not None else 110
    edge = body[edge_row, 200 - 20:200 + 20].astype(int)
    assert (np.abs(edge - np.array(OUTLINE)).sum(axis=1) < 60).sum() >= 20
    assert not (np.abs(body[OUTSIDE].astype(int) - np.array(OUTLINE)).sum(axis=2) < 60).any()


def test_legend_says_score_against_threshold_and_shows_a_colour_bar(tile: np.ndarray) -> None:
    amap = _map(np.random.default_rng(1))
    alarm = draw_overlay(tile, amap, score=5.0, threshold=3.0, pixel_threshold=2.0)
    ok = draw_overlay(tile, amap, score=2.0, threshold=3.0, pixel_threshold=2.0)
    for picture, verdict_colour in ((alarm, ALARM_TEXT), (ok, OK_TEXT)):
        h, w = picture.shape[:2]
        assert h > SIDE and w > SIDE  # a header above, a colour bar on the right
        header = picture[: h - SIDE]
        assert (header != np.array(BACKGROUND, np.uint8)).any(axis=2).sum() > 500  # text drawn there
        assert (np.abs(header.astype(int) - np.array(verdict_colour)).sum(axis=2) < 30).sum() > 50
        bar = picture[h - SIDE:, SIDE:]
        # The colour bar runs from red (the pixel threshold) to yellow (the map's maximum).
        assert ((bar[..., 2] > 200) & (bar[..., 1] < 40) & (bar[..., 0] < 40)).sum() > 50
        assert ((bar[..., 2] > 200) & (bar[..., 1] > 220) & (bar[..., 0] < 40)).sum() > 50
    assert not np.array_equal(alarm, ok)  # the verdict line differs


def test_small_grey_frame_is_enlarged_whole_and_an_other_sized_map_fits_it() -> None:
    rng = np.random.default_rng(2)
    grey = rng.integers(0, 255, (100, 80), dtype=np.uint8)
    amap = np.zeros((25, 20), np.float32)  # a quarter of the frame's size, as a coarse model map
    amap[5:10, 5:10] = 3.0
    picture = draw_overlay(grey, amap, score=3.0, threshold=1.0, pixel_threshold=1.0)
    k = -(-MIN_SIDE // 80)  # whole factor up to the short side MIN_SIDE
    body = picture[-100 * k:, :80 * k]
    enlarged = np.repeat(np.repeat(grey, k, axis=0), k, axis=1)
    far = (slice(60 * k, 100 * k), slice(0, 80 * k))
    assert np.array_equal(body[far], np.repeat(enlarged[far][..., None], 3, axis=2))
    centre = body[30 * k - 4:30 * k + 4, 30 * k - 4:30 * k + 4].astype(int)
    assert (centre[..., 2] - centre[..., 0]).mean() > 60  # coloured where the (resized) map is high


def test_a_map_nowhere_above_the_pixel_threshold_leaves_the_frame_as_it_is(tile: np.ndarray) -> None:
    picture = draw_overlay(tile, np.zeros((SIDE, SIDE), np.float32), score=1.0, threshold=3.0, pixel_threshold=0.5)
    assert np.array_equal(_body(picture), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))


def test_a_frame_of_another_shape_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"\(4, 4, 4\)"):
        draw_overlay(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.float32), 1.0, 1.0)
