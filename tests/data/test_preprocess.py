import typing

import cv2
import numpy as np
import pytest

from stream_ad.data import Preprocessor
from stream_ad.geometry import (
    MODES,
    Geometry,
    aspect_size,
    frame_scores,
    map_score,
    place,
    resize,
    tile_starts,
    to_frames,
)
from stream_ad.settings import PreprocessSettings


def make(mode: str, **kw: object) -> Preprocessor:
    """A Preprocessor scoring frames by the method's own score (the highest input's), unless `kw` names a fraction."""
    kw.setdefault("map_score_fraction", None)
    return Preprocessor(PreprocessSettings(mode=mode, **kw), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_normalisation_uses_the_backbones_mean_and_std() -> None:
    frame = np.full((10, 20, 3), 255, np.uint8)
    out = make("resize", image_size=32)([frame]).inputs
    assert out.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(out.numpy(), 1.0)  # (1 - 0.5) / 0.5


def resized_grey(frame: np.ndarray, size: int = 224) -> np.ndarray:
    """The resize input of a grey frame, back on 0..255."""
    return make("resize", image_size=size)([frame]).inputs[0, 0].numpy() * 127.5 + 127.5


def test_an_axis_shrunk_while_the_other_grows_is_filtered() -> None:
    # Rows alternating 0/255, 632 x 222 -> 224 x 224: rows shrink, columns grow. A filtered shrink averages the rows
    # to mid grey; OpenCV's INTER_AREA (the frame shrinks by area) sampled them unfiltered: std 85 grey levels.
    frame = np.zeros((632, 222), np.uint8)
    frame[::2] = 255
    out = resized_grey(frame)
    assert out.std() < 12.0 and abs(out.mean() - 127.5) < 2.0


def test_stripes_squeezed_far_from_square_alias_little() -> None:
    # Bars 3 px on, 4 px off across a 500 x 1250 frame squeezed 5.6x: beyond the input's Nyquist, so a good filter
    # leaves a near flat image. INTER_AREA's box filter left a moire of std 27 grey levels; the triangle about 7.
    frame = np.zeros((500, 1250), np.uint8)
    for on in range(3):
        frame[:, on::7] = 255
    assert resized_grey(frame).std() < 10.0


def test_a_shrunk_ramp_keeps_its_fractions_of_a_grey_level() -> None:
    # A dark, noisy surface brightening by 3 grey levels over 1250 px: averaged down, each input pixel is known to a
    # fraction of a level. Rounded (OpenCV's uint8 output) it was 0.26 level off on average, in bands; now 0.06.
    ramp = np.linspace(10.0, 13.0, 1250)
    noise = np.random.default_rng(0).uniform(-0.5, 0.5, (500, 1250))
    frame = (ramp + noise).round().astype(np.uint8)
    truth = np.interp((np.arange(224) + 0.5) * 1250 / 224 - 0.5, np.arange(1250), ramp)  # at the pixels' centres
    assert np.abs(resized_grey(frame) - truth).mean() < 0.1


def test_tile_starts_cover_the_axis() -> None:
    assert tile_starts(100, 100, 0.25) == [0]
    starts = tile_starts(1000, 224, 0.25)
    assert starts[0] == 0 and starts[-1] == 1000 - 224
    assert all(b - a <= 224 for a, b in zip(starts, starts[1:]))


def test_tiles_stitch_back_at_native_resolution() -> None:
    pre = make("tile", tile_size=64, tile_overlap=0.5)
    frame = np.zeros((150, 200, 3), np.uint8)
    prepared = pre([frame, np.zeros((40, 50), np.uint8)])
    assert prepared.inputs.shape[1:] == (3, 64, 64)
    # Each tile's map = the frame's own row index, so a correct stitch reproduces the row ramp.
    maps = []
    for p in prepared.placements:
        m = np.zeros((64, 64), np.float32)
        m[: p.th, : p.tw] = np.arange(p.y0, p.y1, dtype=np.float32)[:, None]
        maps.append(m)
    scores = np.arange(len(maps), dtype=np.float32)
    frame_scores, frame_maps = pre.to_frames(prepared, scores, np.stack(maps))
    assert frame_maps[0].shape == (150, 200) and frame_maps[1].shape == (40, 50)
    np.testing.assert_allclose(frame_maps[0], np.arange(150, dtype=np.float32)[:, None].repeat(200, 1))
    last_tile_of_first = max(i for i, p in enumerate(prepared.placements) if p.frame == 0)
    assert frame_scores[0] == last_tile_of_first and frame_scores[1] == len(maps) - 1


def test_scores_alone_are_the_highest_tile_s_as_with_maps() -> None:
    """frame_scores (a caller without use for maps: the infer stage when nothing draws them) gives each frame what
    to_frames gives: its highest input's score, for tiles and for one input per frame."""
    rng = np.random.default_rng(1)
    for pre in (make("tile", tile_size=64, tile_overlap=0.5), make("resize", image_size=64)):
        prepared = pre([np.zeros((150, 200, 3), np.uint8), np.zeros((40, 50), np.uint8), np.zeros((90, 70), np.uint8)])
        scores = rng.normal(size=len(prepared.placements)).astype(np.float32)
        with_maps, _ = pre.to_frames(prepared, scores, np.zeros((len(scores), 64, 64), np.float32))
        alone = frame_scores(prepared, scores)
        np.testing.assert_array_equal(alone, with_maps)
        want = [max(s for p, s in zip(prepared.placements, scores) if p.frame == f) for f in range(3)]
        np.testing.assert_array_equal(alone, np.array(want, np.float32))


def test_a_map_score_is_the_mean_of_the_map_s_highest_fraction() -> None:
    amap = np.arange(200, dtype=np.float32).reshape(10, 20)  # values 0..199
    assert map_score(amap, 0.01) == 198.5  # the top 2 of 200 pixels
    assert map_score(amap, 1e-9) == 199.0  # at least one pixel: the maximum
    assert map_score(amap, 1.0) == pytest.approx(99.5)  # all of it: the mean
    tiles = make("tile", tile_size=64, tile_overlap=0.5)
    prepared = tiles([np.zeros((150, 200, 3), np.uint8)])
    maps = np.random.default_rng(2).random((len(prepared.placements), 64, 64)).astype(np.float32)
    scores, frame_maps = tiles.to_frames(prepared, np.zeros(len(maps), np.float32), maps)
    by_map, same_maps = to_frames(prepared, np.zeros(len(maps), np.float32), maps, 0.02)
    assert by_map[0] == pytest.approx(map_score(frame_maps[0], 0.02)) and scores[0] == 0.0  # the stitched map's
    np.testing.assert_array_equal(same_maps[0], frame_maps[0])


def test_letterbox_keeps_aspect_and_maps_back() -> None:
    pre = make("letterbox", image_size=64)
    frame = np.full((50, 200, 3), 200, np.uint8)
    prepared = pre([frame])
    p = prepared.placements[0]
    assert (p.th, p.tw) == (16, 64)
    # Padding rows carry the pad value, not the frame.
    assert float(prepared.inputs[0, 0, 40, 0]) == pytest.approx(-1.0)
    amap = np.zeros((1, 64, 64), np.float32)
    amap[0, :16] = 5.0
    amap[0, 16:] = 99.0  # must be cropped away
    _, maps = pre.to_frames(prepared, np.zeros(1, np.float32), amap)
    assert maps[0].shape == (50, 200)
    np.testing.assert_allclose(maps[0], 5.0)


def test_aspect_scales_the_short_side_and_tiles_the_long_one() -> None:
    """Aspect: a 50 x 200 frame at 64 px is resized (aspect kept) to 64 x 256, cut into 64 px tiles along its width,
    each tile the resized frame's pixels; a map that is the frame's own column index in each tile stitches back to
    that ramp at the frame's size."""
    pre = make("aspect", image_size=64, tile_overlap=0.5)
    ramp = np.tile(np.linspace(0, 255, 200, dtype=np.float32), (50, 1)).round().astype(np.uint8)
    prepared = pre([np.repeat(ramp[:, :, None], 3, axis=2), np.zeros((64, 64), np.uint8)])
    assert aspect_size(50, 200, 64) == (64, 256) and aspect_size(300, 90, 64) == (213, 64)
    first = [p for p in prepared.placements if p.frame == 0]
    assert [p.x0 for p in first] == [0, 25, 50, 75, 100, 125, 150] and all(p.x1 - p.x0 == 50 for p in first)
    assert all((p.th, p.tw, p.y0, p.y1) == (64, 64, 0, 50) for p in first)
    whole = resize(np.repeat(ramp[:, :, None], 3, axis=2), 64, 256)
    for i, p in enumerate(first):  # tile i holds the resized frame's columns [32 i, 32 i + 64)
        np.testing.assert_allclose(prepared.inputs[i].permute(1, 2, 0).numpy() * 127.5 + 127.5,
                                   whole[:, 32 * i : 32 * i + 64], atol=1e-3)
    maps = []
    for p in prepared.placements:
        m = np.zeros((64, 64), np.float32)
        m[:, :] = np.linspace(p.x0, p.x1, 64, endpoint=False, dtype=np.float32)[None, :]
        maps.append(m)
    _, frame_maps = pre.to_frames(prepared, np.zeros(len(maps), np.float32), np.stack(maps))
    assert frame_maps[0].shape == (50, 200) and frame_maps[1].shape == (64, 64)
    np.testing.assert_allclose(frame_maps[0][0], np.arange(200), atol=0.5)  # bilinear within half a column
    assert len(prepared.placements) == 8  # a square frame at the size is one tile: resize's input


def test_a_mode_the_geometry_does_not_know_is_refused_and_the_settings_know_every_mode() -> None:
    assert typing.get_args(PreprocessSettings.model_fields["mode"].annotation) == MODES
    with pytest.raises(ValueError, match="preprocess mode 'zoom' is not one of resize, letterbox, tile, aspect"):
        place(Geometry("zoom", 64, 64, 0.25, 0), 0, np.zeros((10, 10, 3), np.uint8))


def test_one_input_per_frame_maps_back_to_each_frame_at_its_size() -> None:
    """Resize: each frame's map is its input's map stretched back to the frame (bilinear), its score the input's."""
    pre = make("resize", image_size=64)
    frames = [np.zeros((50, 200, 3), np.uint8), np.zeros((64, 64), np.uint8), np.zeros((120, 30, 3), np.uint8)]
    prepared = pre(frames)
    maps = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    scores, frame_maps = pre.to_frames(prepared, np.array([3.0, 1.0, 2.0], np.float32), maps)
    assert scores.tolist() == [3.0, 1.0, 2.0]
    for frame, amap, got in zip(frames, maps, frame_maps):
        h, w = frame.shape[:2]
        want = amap if (h, w) == (64, 64) else cv2.resize(amap, (w, h), interpolation=cv2.INTER_LINEAR)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


def test_a_grey_frame_given_as_rgb_resizes_as_each_plane_would() -> None:
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (373, 248), dtype=np.uint8)
    as_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    colour = as_rgb.copy()
    colour[0, 0, 2] ^= 1  # one pixel off in one plane: resized plane by plane
    got, got_colour = resize(as_rgb, 224, 224), resize(colour, 224, 224)
    assert got.shape == (224, 224, 3) and got.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], got_colour[..., 0])
    assert not np.array_equal(got_colour[..., 2], got_colour[..., 0])


def test_bad_frame_is_rejected() -> None:
    with pytest.raises(ValueError, match="frame 0"):
        make("resize")([np.zeros((10, 10, 4), np.uint8)])
