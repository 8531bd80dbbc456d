"""Backbone taps onto one grid, and per-position scores onto the input: the feature-map plumbing the feature methods
(PatchCore, PaDiM) share, plain torch so it traces into an exported scoring graph."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from stream_ad.scorers.components.blur import blur_radius, gaussian_kernel


def stack_taps(taps: list[torch.Tensor], size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Taps (B, C_i, h_i, w_i), bilinearly resampled to `size` where they differ, concatenated: (B, sum C_i, *size)."""
    return torch.cat([t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                      for t in taps], dim=1)


def _bilinear(cells: int, size: int) -> np.ndarray:
    """(size, cells): F.interpolate's bilinear weights along one axis (align_corners False, edges clamped)."""
    source = np.maximum((np.arange(size) + 0.5) * cells / size - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(int), cells - 1)
    high = np.minimum(low + 1, cells - 1)
    weights = np.zeros((size, cells))
    np.add.at(weights, (np.arange(size), low), 1.0 - (source - low))
    np.add.at(weights, (np.arange(size), high), source - low)
    return weights


def _reflected_blur(size: int, sigma: float, radius: int) -> np.ndarray:
    """(size, size): gaussian_blur's 1-D pass along one axis, borders reflected (without repeating the edge)."""
    kernel = gaussian_kernel(sigma, radius)
    taps = np.arange(size)[:, None] + np.arange(-radius, radius + 1)[None, :]
    taps = np.abs(taps)
    taps = np.where(taps > size - 1, 2 * (size - 1) - taps, taps)
    blur = np.zeros((size, size))
    np.add.at(blur, (np.repeat(np.arange(size), 2 * radius + 1), taps.ravel()), np.tile(kernel, size))
    return blur


@lru_cache(maxsize=64)
def _axis_operator(cells: int, size: int, sigma: float, radius: int) -> np.ndarray:
    """(size, cells) float64: along one axis, bilinear from `cells` grid positions to `size` pixels, then the blur's
    1-D pass: each column is what one grid cell's unit score becomes. Built in numpy, so a traced graph holds it as
    a constant instead of recomputing it on every call; a tensor made of it each call traces the same whether the
    cache held it or not (the tracer checks that two traces agree)."""
    weights = _bilinear(cells, size)
    if sigma > 0:
        weights = _reflected_blur(size, sigma, radius) @ weights
    weights.setflags(write=False)  # cached: shared by every caller
    return weights


def map_operators(grid: tuple[int, int], out_size: tuple[int, int], blur_sigma: float,
                  like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' (H, h) and the columns' (W, w) operators of anomaly_maps, in `like`'s dtype and device."""
    # Sizes are static in a traced graph (the tracer hands them over as tensors): plain ints key the cache.
    h, w, height, width = (int(n) for n in (*grid, *out_size))
    radius = blur_radius(blur_sigma, height, width) if blur_sigma > 0 else 0
    rows, columns = (torch.from_numpy(_axis_operator(cells, size, blur_sigma, radius).copy()).to(like)
                     for cells, size in ((h, height), (w, width)))
    return rows, columns


def anomaly_maps(scores: torch.Tensor, grid: tuple[int, int, int], out_size: tuple[int, int],
                 blur_sigma: float) -> torch.Tensor:
    """Per-position scores (B, h*w) -> maps (B, H, W): bilinear to the input size, then a Gaussian blur (PatchCore's
    sigma 4, which PaDiM's paper also uses).

    Both are linear and separable, so they are applied as one matrix per axis, rows @ scores @ columns^T: the same
    maps as interpolating then blurring (components.blur) to float32 rounding, at a fraction of the cost (per-op
    profile of PatchCore's OpenVINO graph, 224 px, one thread: 0.71 ms as upsampling and blur passes, 0.05 ms so)."""
    b, h, w = grid
    rows, columns = map_operators((h, w), out_size, blur_sigma, scores)
    return rows @ scores.view(b, h, w) @ columns.T
