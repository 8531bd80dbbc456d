"""DAAD's discriminator: a small patch discriminator whose intermediate features also serve the alignment loss and
the L(x) term of the anomaly score."""

from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        # No normalisation layers: real and generated batches pass separately, and batch statistics would tell
        # them apart by themselves.
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),
        )
        self.head = nn.Conv2d(4 * width, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real/fake logits per patch (B, 1, S/8, S/8) and the intermediate features (B, 4 * width, S/8, S/8)."""
        feats = self.features(x)
        return self.head(feats), feats
