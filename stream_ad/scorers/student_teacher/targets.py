"""What both teachers are distilled from: the pretrained backbone's feature taps (backbone.layers), frozen.

Uninformed Students regress one vector per patch (the taps of the patch, resized to the backbone's input and
average-pooled, as the paper feeds patches to its ResNet-18); EfficientAD regresses a map (the taps of the whole
image, resized to the PDN's output grid). Targets are standardised per channel (ChannelStats) so one learning
rate suits any backbone.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from stream_ad.backbones import Backbone, load_backbone
from stream_ad.backbones.loader import resolve_weights
from stream_ad.settings import BackboneSettings

_CHUNK = 64  # images per backbone pass when computing targets


def teacher_provenance(settings: BackboneSettings) -> dict[str, str]:
    """The artefact's backbone identity (as Backbone.identity gives) without loading the network: scoring never
    runs it, but what the teachers were distilled from belongs in the provenance."""
    weights = resolve_weights(settings)
    return {"name": settings.name, "weights_sha256": weights.sha256, "layers": ",".join(settings.layers)}


class BackboneTargets:
    def __init__(self, settings: BackboneSettings, device: torch.device) -> None:
        self.backbone: Backbone = load_backbone(settings, device)
        self.device = device

    @torch.no_grad()
    def _taps(self, images: torch.Tensor, size: int) -> list[torch.Tensor]:
        images = F.interpolate(images.to(self.device), size=(size, size), mode="bilinear", align_corners=False)
        return [t.float() for t in self.backbone(images)]

    def pooled(self, patches: torch.Tensor, size: int) -> torch.Tensor:
        """(B, 3, p, p) patches seen at size x size -> (B, C): each tap averaged over the patch, concatenated."""
        return torch.cat([t.mean(dim=(2, 3)) for t in self._taps(patches, size)], dim=1)

    def dense(self, images: torch.Tensor, size: int, grid: int) -> torch.Tensor:
        """(B, 3, S, S) seen at size x size -> (B, C, grid, grid): every tap resized to the grid, concatenated."""
        taps = self._taps(images, size)
        return torch.cat([F.interpolate(t, size=(grid, grid), mode="bilinear", align_corners=False) for t in taps], 1)


class ChannelStats:
    """Per-channel mean and std of descriptors (B, C) or maps (B, C, h, w), accumulated chunk by chunk."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean, std

    @classmethod
    def of(cls, chunks: Iterable[torch.Tensor]) -> ChannelStats:
        total = total_sq = None
        count = 0
        for x in chunks:
            flat = x.detach().double().transpose(0, 1).reshape(x.shape[1], -1)  # (C, everything else)
            s, sq = flat.sum(dim=1), flat.square().sum(dim=1)
            total = s if total is None else total + s
            total_sq = sq if total_sq is None else total_sq + sq
            count += flat.shape[1]
        if total is None or total_sq is None:
            raise ValueError("no descriptors to take statistics of")
        mean = total / count
        std = (total_sq / count - mean.square()).clamp(min=1e-12).sqrt()
        return cls(mean.float(), std.float())

    def to(self, device: torch.device) -> ChannelStats:
        return ChannelStats(self.mean.to(device), self.std.to(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)
