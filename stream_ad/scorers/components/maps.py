"""Backbone taps onto one grid, and per-position scores onto the input: the feature-map plumbing the feature methods
(PatchCore, PaDiM) share, plain torch so it traces into an exported scoring graph."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stream_ad.scorers.components.blur import gaussian_blur


def stack_taps(taps: list[torch.Tensor], size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Taps (B, C_i, h_i, w_i), bilinearly resampled to `size` where they differ, concatenated: (B, sum C_i, *size)."""
    return torch.cat([t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)
                      for t in taps], dim=1)


def anomaly_maps(scores: torch.Tensor, grid: tuple[int, int, int], out_size: tuple[int, int],
                 blur_sigma: float) -> torch.Tensor:
    """Per-position scores (B, h*w) -> maps (B, H, W): bilinear to the input size, then a Gaussian blur (PatchCore's
    sigma 4, which PaDiM's paper also uses)."""
    b, h, w = grid
    maps = F.interpolate(scores.view(b, 1, h, w), size=out_size, mode="bilinear", align_corners=False)
    return gaussian_blur(maps, blur_sigma)[:, 0]
