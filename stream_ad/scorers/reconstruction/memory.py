"""Block-wise memory (DAAD, Hou et al., ICCV 2021): divide a feature map into blocks, answer each from memory, assemble.

A (B, C, H, W) map is cut into a grid x grid array of blocks; each block, flattened to C * (H/grid) * (W/grid)
values, is one query. It is answered by softmax attention over N learned memory items of that length, weighted by
cosine similarity (scaled by 1/temperature, as plain cosines in [-1, 1] would give near-uniform weights), and the
answers are put back in place. The output is a convex combination of memory items, so whatever the decoder receives
was learned from good images: an anomaly cannot pass through. Memory is bounded: N items per scale.

Departure: no hard shrinkage of the weights (MemAE's sparsity trick); the temperature alone sharpens them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BlockMemory(nn.Module):
    def __init__(self, channels: int, size: int, grid: int, items: int, temperature: float) -> None:
        super().__init__()
        if size % grid:
            raise ValueError(f"a {size} x {size} feature map cannot be cut into a {grid} x {grid} block grid")
        self.grid = grid
        self.block = size // grid
        self.temperature = temperature
        self.items = nn.Parameter(torch.randn(items, channels * self.block**2))

    def attention(self, queries: torch.Tensor) -> torch.Tensor:
        """(Q, D) queries -> (Q, N) weights; each row sums to 1."""
        cosine = F.normalize(queries, dim=1) @ F.normalize(self.items, dim=1).T
        return torch.softmax(cosine / self.temperature, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g, k = self.grid, self.block
        queries = x.reshape(b, c, g, k, g, k).permute(0, 2, 4, 1, 3, 5).reshape(b * g * g, c * k * k)
        answers = self.attention(queries) @ self.items
        return answers.reshape(b, g, g, c, k, k).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)
