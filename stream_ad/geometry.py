"""Where each model input's pixels come from in its frame, and the CPU preprocessing built on it (Pillow, OpenCV and
numpy only): the geometry every preprocessing path shares (on the CPU, as tensor operations on the device, in the
torch-free line runtime), and the mapping of scores back to each frame.

Torch-free on purpose: a line PC serving an exported runtime artefact (stream_ad.line) preprocesses with exactly
this code, so its inputs equal the fitting path's bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Placement:
    """One input tensor's content: tensor rows/cols [0:th, 0:tw] show frame rows [y0:y1] and cols [x0:x1]."""

    frame: int
    th: int
    tw: int
    y0: int
    y1: int
    x0: int
    x1: int


@dataclass
class Prepared:
    inputs: Any  # (N, 3, S, S) float32, normalised: a torch tensor, or a numpy array on the torch-free line runtime
    placements: list[Placement]
    frame_shapes: list[tuple[int, int]]


@dataclass(frozen=True)
class FramePrediction:
    scores: np.ndarray  # (N,) image scores
    maps: list[np.ndarray]  # N maps, each at its frame's own (H, W)


@dataclass(frozen=True)
class Geometry:
    """preprocess.mode and its sizes, as plain data (PreprocessSettings' fields the geometry reads)."""

    mode: str  # one of MODES
    image_size: int
    tile_size: int
    tile_overlap: float
    pad_value: int

    @property
    def input_size(self) -> int:
        return self.tile_size if self.mode == "tile" else self.image_size


# preprocess.mode's values. aspect: the frame scaled, its aspect ratio kept, until its short side is image_size, then
# cut along its long side into overlapping image_size squares as tile cuts a native frame.
MODES = ("resize", "letterbox", "tile", "aspect")


def letterbox_size(h: int, w: int, side: int) -> tuple[int, int]:
    """The frame's size inside a side x side letterbox: the long edge fills it, the aspect ratio is kept."""
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def aspect_size(h: int, w: int, side: int) -> tuple[int, int]:
    """The frame's size in aspect mode: the short edge at `side`, the aspect ratio kept."""
    scale = side / min(h, w)
    return max(side, round(h * scale)), max(side, round(w * scale))


def cut_size(geometry: Geometry, h: int, w: int) -> tuple[int, int]:
    """The size a frame is cut into tiles at: its own (tile), or aspect_size (aspect)."""
    return aspect_size(h, w, geometry.image_size) if geometry.mode == "aspect" else (h, w)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one axis: a regular stride, plus a last tile flush with the far edge."""
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_grid(index: int, frame_hw: tuple[int, int], cut_hw: tuple[int, int], geometry: Geometry
              ) -> list[tuple[int, int, Placement]]:
    """Frame `index`'s tiles: per tile its origin (y, x) in the frame as cut (at cut_hw: cut_size) and the frame
    region it shows, scaled back to the frame's own pixels."""
    (h, w), (ch, cw), s = frame_hw, cut_hw, geometry.input_size
    grid = []
    for y in tile_starts(ch, s, geometry.tile_overlap):
        for x in tile_starts(cw, s, geometry.tile_overlap):
            th, tw = min(s, ch - y), min(s, cw - x)
            grid.append((y, x, Placement(index, th, tw, round(y * h / ch), round((y + th) * h / ch),
                                         round(x * w / cw), round((x + tw) * w / cw))))
    return grid


# How frames are resampled to the model's input: part of what a saved model was fitted with (Preprocessor.describe).
RESAMPLING = "bilinear-antialiased-float32"


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (h, w, 3) on 0..255: bilinear, antialiased along each axis that shrinks, a triangle
    filter widened by that axis's own shrink factor (Pillow's BILINEAR; torch's antialias=True, the device path's and
    torchvision's Resize, is the same filter).

    Not OpenCV's: INTER_AREA averages only when both axes shrink, so a frame shrunk along one axis and enlarged along
    the other (magnetic_tile's 632 x 222 to 224 x 224) was sampled without any filter; and its box filter passes about
    4x the triangle's aliasing of fine stripes squeezed 5.6x (a 500 x 1250 frame to 224 x 224), a moire that moves
    with the part and reads as anomalous patches. Kept in float, not rounded to grey levels: a pixel averaged from
    many (12 per input pixel there) is known to a fraction of a level, and rounding puts steps into smooth dark
    surfaces (on the 500 x 1250 magnetic_tile set, pixel AUROC 0.698 rounded, 0.742 not). tests/data/test_preprocess.py
    holds these cases.

    A grey frame given as RGB (three equal planes, as image files and most mono cameras are read) is resized once:
    the same result for a third of the work."""
    planes = [np.ascontiguousarray(img[..., c]) for c in range(img.shape[2])]
    if all(np.array_equal(planes[0], plane) for plane in planes[1:]):
        return np.repeat(_resize_plane(planes[0], h, w)[:, :, None], len(planes), axis=2)
    return np.stack([_resize_plane(plane, h, w) for plane in planes], axis=-1)


def _resize_plane(plane: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(plane).convert("F").resize((w, h), Image.Resampling.BILINEAR))


def as_rgb(i: int, frame: np.ndarray) -> np.ndarray:
    """A uint8 (H, W, 3) or (H, W) frame as (H, W, 3); anything else a ValueError naming frame i."""
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame {i}: expected uint8 (H, W, 3) or (H, W), got {frame.dtype} {frame.shape}")
    return frame


def place(geometry: Geometry, index: int, img: np.ndarray) -> tuple[list[np.ndarray], list[Placement]]:
    """Frame `index` -> its (S, S, 3) inputs on 0..255 (one, or a tile each) and where each came from: float32 where
    resampled (resize, letterbox, aspect), uint8 tiles cut at native resolution."""
    h, w = img.shape[:2]
    s, mode = geometry.input_size, geometry.mode
    if mode == "resize":
        return [resize(img, s, s)], [Placement(index, s, s, 0, h, 0, w)]
    if mode == "letterbox":
        th, tw = letterbox_size(h, w, s)
        canvas = np.full((s, s, 3), geometry.pad_value, dtype=np.float32)
        canvas[:th, :tw] = resize(img, th, tw)
        return [canvas], [Placement(index, th, tw, 0, h, 0, w)]
    if mode not in MODES:  # an artefact from a newer stream_ad: never cut it as something else
        raise ValueError(f"preprocess mode {mode!r} is not one of {', '.join(MODES)}")
    cut = img if mode == "tile" else resize(img, *cut_size(geometry, h, w))
    tiles, places = [], []
    for y, x, p in tile_grid(index, (h, w), cut.shape[:2], geometry):
        crop = cut[y : y + s, x : x + s]
        if (p.th, p.tw) != (s, s):  # a frame smaller than a tile: pad, never stretch
            canvas = np.full((s, s, 3), geometry.pad_value, dtype=cut.dtype)
            canvas[: p.th, : p.tw] = crop
            crop = canvas
        tiles.append(crop)
        places.append(p)
    return tiles, places


def place_frames(geometry: Geometry, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, Prepared]:
    """Frames -> their stacked (N, S, S, 3) inputs (place: float32 or uint8), and a Prepared holding no inputs yet
    (placements, shapes)."""
    arrays: list[np.ndarray] = []
    placements: list[Placement] = []
    shapes: list[tuple[int, int]] = []
    for i, frame in enumerate(frames):
        frame = as_rgb(i, frame)
        shapes.append(frame.shape[:2])
        a, p = place(geometry, i, frame)
        arrays.extend(a)
        placements.extend(p)
    return np.ascontiguousarray(np.stack(arrays)), Prepared(None, placements, shapes)


def normalise(pixels: np.ndarray, mean255: np.ndarray, std255: np.ndarray) -> np.ndarray:
    """(N, S, S, 3) on 0..255 (place_frames) -> (N, 3, S, S) float32 (x - mean) / std, with mean and std (3,) float32
    on 0..255: the same float32 operations as the torch path, so the same values."""
    x = pixels.transpose(0, 3, 1, 2).astype(np.float32)
    return np.ascontiguousarray((x - mean255.reshape(1, 3, 1, 1)) / std255.reshape(1, 3, 1, 1))


def frame_scores(prepared: Prepared, image_scores: np.ndarray) -> np.ndarray:
    """Per-input scores -> per-frame score (N,) float32: the highest of the frame's inputs (its tiles)."""
    scores = np.full(len(prepared.frame_shapes), -np.inf, dtype=np.float32)
    np.maximum.at(scores, [p.frame for p in prepared.placements], np.asarray(image_scores, dtype=np.float32))
    return scores


def map_score(amap: np.ndarray, fraction: float) -> float:
    """The mean of the map over its highest `fraction` of pixels (at least one): a frame's score from its map."""
    flat = amap.ravel()
    top = max(1, round(flat.size * fraction))
    return float(np.partition(flat, flat.size - top)[flat.size - top:].mean())


def describe_frame_score(map_score_fraction: float | None) -> str:
    """preprocess.map_score_fraction in words, for the one-line descriptions of artefacts."""
    if map_score_fraction is None:
        return "the method's image score"
    return f"the mean of the map's top {map_score_fraction:.2%}"


def to_frames(prepared: Prepared, image_scores: np.ndarray, maps: np.ndarray,
              map_score_fraction: float | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-input scores and (S, S) maps -> per-frame score and map at the frame's size. The score: the highest of
    its inputs' (tiles'), or with `map_score_fraction` the map's (map_score; preprocess.map_score_fraction)."""
    frame_maps = _frame_maps(prepared, maps)
    if map_score_fraction is None:
        return frame_scores(prepared, image_scores), frame_maps
    return np.array([map_score(m, map_score_fraction) for m in frame_maps], dtype=np.float32), frame_maps


def _frame_maps(prepared: Prepared, maps: np.ndarray) -> list[np.ndarray]:
    n = len(prepared.frame_shapes)
    if [p.frame for p in prepared.placements] == list(range(n)) and all(
        (p.y1 - p.y0, p.x1 - p.x0) == prepared.frame_shapes[p.frame] for p in prepared.placements
    ):  # input i covers frame i whole (resize, letterbox): its map is the frame's, no mean to take
        return [_at_frame_size(p, m) for p, m in zip(prepared.placements, maps)]
    sums = [np.zeros(shape, dtype=np.float32) for shape in prepared.frame_shapes]
    counts = [np.zeros(shape, dtype=np.float32) for shape in prepared.frame_shapes]
    for p, m in zip(prepared.placements, maps):
        region = (slice(p.y0, p.y1), slice(p.x0, p.x1))
        sums[p.frame][region] += _at_frame_size(p, m)
        counts[p.frame][region] += 1.0
    return [s / c for s, c in zip(sums, counts)]


def _at_frame_size(p: Placement, m: np.ndarray) -> np.ndarray:
    """An input's (S, S) map -> the map of the frame region it came from, at that region's size."""
    content = m[: p.th, : p.tw]
    target = (p.y1 - p.y0, p.x1 - p.x0)
    if content.shape == target:
        return np.array(content, dtype=np.float32)
    return cv2.resize(content, (target[1], target[0]), interpolation=cv2.INTER_LINEAR)
