"""DAAD's generator: a UNet whose every skip and its bottleneck pass through a block-wise memory of their own scale.

Encoder stage i (stride-2 conv, then a 3x3 conv) outputs channels[i] at input_size / 2^(i+1); the deepest stage is
the bottleneck. The decoder climbs back, concatenating each scale's memory answer, and a last transposed conv
returns to full size. No encoder feature reaches the decoder except through a memory, so the reconstruction is
assembled from what the good images taught (the paper's multi-scale memories; widths here are CPU-sized).
"""

from __future__ import annotations

import torch
from torch import nn

from stream_ad.scorers.reconstruction.memory import BlockMemory


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 4 if stride == 2 else 3, stride, 1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


class MemoryUNet(nn.Module):
    def __init__(
        self, input_size: int, channels: list[int], grids: list[int], items: int, temperature: float
    ) -> None:
        super().__init__()
        ins = [3, *channels[:-1]]
        self.encoder = nn.ModuleList(
            nn.Sequential(_block(a, b, 2), _block(b, b, 1)) for a, b in zip(ins, channels)
        )
        self.memories = nn.ModuleList(
            BlockMemory(c, input_size // 2 ** (i + 1), g, items, temperature)
            for i, (c, g) in enumerate(zip(channels, grids))
        )
        # Decoder level i: up from level i + 1, concatenate level i's memory answer, fuse.
        self.ups = nn.ModuleList(_up(channels[i + 1], channels[i]) for i in range(len(channels) - 1))
        self.fuse = nn.ModuleList(_block(2 * c, c, 1) for c in channels[:-1])
        # Straight to pixels, without norm or activation (normalised pixels are unbounded); a full-resolution conv
        # stage here would cost a quarter of the training time.
        self.head = nn.ConvTranspose2d(channels[0], 3, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        answers = []
        for stage, memory in zip(self.encoder, self.memories):
            x = stage(x)
            answers.append(memory(x))
        y = answers[-1]
        for i in reversed(range(len(self.ups))):
            y = self.fuse[i](torch.cat([self.ups[i](y), answers[i]], dim=1))
        return self.head(y)
