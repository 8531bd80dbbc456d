"""Where each model input's pixels come from in its frame: the geometry both preprocessing paths (OpenCV on the CPU,
tensor operations on the device) share, and that maps scores back to each frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
    inputs: torch.Tensor  # (N, 3, S, S) float32, normalised
    placements: list[Placement]
    frame_shapes: list[tuple[int, int]]


def letterbox_size(h: int, w: int, side: int) -> tuple[int, int]:
    """The frame's size inside a side x side letterbox: the long edge fills it, the aspect ratio is kept."""
    scale = side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile origins along one axis: a regular stride, plus a last tile flush with the far edge."""
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts
