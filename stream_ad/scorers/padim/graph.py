"""PaDiM's scoring math as pure torch functions, and the whole scoring path as one module for graph compilers.

Shared by the two ways PaDiM scores, as PatchCore's graph.py is: step by step (model.Padim.score, the backbone on the
path runtime.accelerate picks) and as one graph (ScoringGraph: backbone, channel subset, Mahalanobis distances, map),
which OpenVINO converts whole so a CPU line PC makes one call per batch (patchcore/graph.py says why that matters).
"""

from __future__ import annotations

import torch
from torch import nn

from stream_ad.scorers.components.maps import anomaly_maps, stack_taps


def embedding(taps: list[torch.Tensor], channels: torch.Tensor) -> torch.Tensor:
    """Taps stacked at the finest tap's grid, the chosen channels only: (B, d, h, w)."""
    finest = max((t.shape[-2:] for t in taps), key=lambda s: s[0] * s[1])
    return stack_taps(taps, finest).index_select(1, channels)


def as_rows(emb: torch.Tensor) -> torch.Tensor:
    """(B, d, h, w) -> (B, h*w, d) float32: one feature row per image and grid position, row-major over the grid."""
    b, d = emb.shape[:2]
    return emb.reshape(b, d, -1).transpose(1, 2).float()


def mahalanobis(rows: torch.Tensor, mean: torch.Tensor, inv_covariance: torch.Tensor) -> torch.Tensor:
    """Per-position Mahalanobis distances (B, P) of rows (B, P, d) from Gaussians mean (P, d), inverse covariance
    (P, d, d): one batched matmul over the positions, which OpenVINO runs as one MatMul with a dynamic batch."""
    diff = (rows - mean).transpose(0, 1)  # (P, B, d)
    squared = (torch.matmul(diff, inv_covariance) * diff).sum(dim=2).transpose(0, 1)
    return squared.clamp(min=0.0).sqrt()  # rounding can take a near-0 quadratic form below 0


def scores(taps: list[torch.Tensor], channels: torch.Tensor, mean: torch.Tensor, inv_covariance: torch.Tensor,
           out_size: tuple[int, int], blur_sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Image scores (B,) and maps (B, H, W) from the backbone's taps: the distances upsampled and blurred, each image
    scored by its map's maximum (as the paper and the other map methods here: a small defect is not diluted)."""
    emb = embedding(taps, channels)
    b, _, h, w = emb.shape
    maps = anomaly_maps(mahalanobis(as_rows(emb), mean, inv_covariance), (b, h, w), out_size, blur_sigma)
    return maps.flatten(1).amax(dim=1), maps


class ScoringGraph(nn.Module):
    """Input batch (B, 3, S, S) -> (image scores (B,), maps (B, S, S)): PaDiM's whole scoring path, its fitted state
    as buffers (constants in a converted graph)."""

    def __init__(self, backbone: nn.Module, channels: torch.Tensor, mean: torch.Tensor, inv_covariance: torch.Tensor,
                 blur_sigma: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("channels", channels.long().contiguous())
        self.register_buffer("mean", mean.float().contiguous())
        self.register_buffer("inv_covariance", inv_covariance.float().contiguous())
        self.blur_sigma = blur_sigma

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return scores(self.backbone(x), self.channels, self.mean, self.inv_covariance, (x.shape[-2], x.shape[-1]),
                      self.blur_sigma)
