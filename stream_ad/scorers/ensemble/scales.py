"""Anomaly maps of different methods put on one scale: each standardised by the mean and spread of its values on the
good images, so that a good pixel's value means about the same in each map."""

from __future__ import annotations

from collections.abc import Sequence

import torch

_FLOOR = 1e-6  # a spread below this (a constant map) would blow the map up: it counts as this much


class MapScales:
    """The mean and standard deviation of each method's map values, accumulated batch by batch (float64 sums: no
    map is kept, whatever the number of images)."""

    def __init__(self, methods: int) -> None:
        self.count = 0
        self.sums = torch.zeros(methods, 2, dtype=torch.float64)  # per method: sum of values, of squares

    def add(self, maps: Sequence[torch.Tensor]) -> None:
        """One batch's maps, one (B, H, W) tensor per method, all of the same shape."""
        for row, m in zip(self.sums, maps, strict=True):
            values = m.detach().double().cpu()
            row += torch.stack([values.sum(), values.square().sum()])
        self.count += maps[0].numel()

    def scales(self) -> torch.Tensor:
        """(methods, 2) float32: each method's mean and standard deviation."""
        if not self.count:
            raise ValueError("no maps were added: the scales need good images")
        mean = self.sums[:, 0] / self.count
        variance = (self.sums[:, 1] / self.count - mean.square()).clamp_min(0)
        return torch.stack([mean, variance.sqrt()], dim=1).float()


def standardised(maps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Maps (B, H, W) of one method on the common scale: (map - mean) / std, `scale` that method's row."""
    return (maps - scale[0]) / scale[1].clamp_min(_FLOOR)
