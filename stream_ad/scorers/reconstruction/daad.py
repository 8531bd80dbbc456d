"""DAAD, "Divide-and-Assemble: Learning Block-wise Memory for Unsupervised Anomaly Detection" (Hou et al., ICCV
2021), registered as `daad`.

A UNet reconstructs the image through block-wise memories at every scale (unet.py, memory.py); it trains against
a discriminator with three losses: reconstruction (L2), adversarial (non-saturating GAN) and alignment (L2 between
the discriminator's intermediate features of the image and of its reconstruction).

Score, as read here: A(x) = gamma * R(x) + (1 - gamma) * L(x) with R(x) the squared reconstruction error
||x - x_hat||^2 and L(x) the alignment error ||D_f(x) - D_f(x_hat)||^2 of the discriminator's intermediate features.
Both are kept as maps (R per pixel, channel mean; L per feature cell, channel mean, upsampled), combined pixel-wise,
smoothed, and the image score is the map's maximum.

Departures: each term is divided by its mean over the training images before mixing (measured once after training
and saved), so gamma weighs comparable quantities whatever the data set's contrast; the paper mixes raw terms and
scores whole images. Network widths, the memory temperature and the training budget are CPU-sized.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from stream_ad.scorers.base import FitBatches, ScorerContext, ScorerParams, Scores
from stream_ad.scorers.components.training import Step
from stream_ad.scorers.reconstruction.common import (
    TrainedScorer,
    build_seeded,
    minibatches,
    require_divisible,
    scores_from_maps,
    training_images,
)
from stream_ad.scorers.reconstruction.discriminator import Discriminator
from stream_ad.scorers.reconstruction.unet import MemoryUNet
from stream_ad.scorers.registry import register_scorer

DISCRIMINATOR_STRIDE = 8


class DAADParams(ScorerParams):
    # Encoder widths, one stage per entry, each halving the size; the last one is the bottleneck.
    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64, 128], min_length=2, max_length=6)
    # Block grid of each stage's memory (blocks per side), same length as channels.
    block_grids: list[PositiveInt] = Field(default_factory=lambda: [16, 8, 4, 2], min_length=2, max_length=6)
    memory_items: int = Field(100, ge=1, le=10_000)  # N, per scale
    temperature: float = Field(0.1, gt=0.0)  # of the cosine-similarity softmax
    gamma: float = Field(0.5, ge=0.0, le=1.0)  # weight of R(x) against L(x)
    rec_weight: float = Field(1.0, ge=0.0)
    adv_weight: float = Field(0.05, ge=0.0)
    align_weight: float = Field(1.0, ge=0.0)
    discriminator_width: int = Field(16, ge=4, le=512)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(5e-4, gt=0.0)
    blur_sigma: float = Field(2.0, ge=0.0)

    # The discriminator's features score too (L(x)): its width is part of the scoring networks.
    scoring = frozenset({"channels", "block_grids", "memory_items", "temperature", "gamma", "discriminator_width",
                         "blur_sigma"})
    not_scoring = frozenset({"rec_weight", "adv_weight", "align_weight", "epochs", "batch_size", "lr"})

    @model_validator(mode="after")
    def _grids_match_stages(self) -> DAADParams:
        if len(self.block_grids) != len(self.channels):
            raise ValueError(
                f"block_grids has {len(self.block_grids)} entries but channels has {len(self.channels)}: "
                "give one block grid per encoder stage"
            )
        return self


class TermScales(nn.Module):
    """Mean R and L over the training images: the divisors that make gamma's two terms comparable."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rec", torch.ones(()))
        self.register_buffer("align", torch.ones(()))


@register_scorer("daad")
class DAAD(TrainedScorer):
    Params = DAADParams
    params: DAADParams
    TRAINING_FIELDS = frozenset(set(DAADParams.model_fields) - {"gamma", "blur_sigma"})

    def __init__(self, params: DAADParams, context: ScorerContext) -> None:
        size = context.input_size
        levels = len(params.channels)
        require_divisible(size, math.lcm(2**levels, DISCRIMINATOR_STRIDE),
                          f"the UNet halves the image {levels} times (scorer.params.channels) and the "
                          f"discriminator {int(math.log2(DISCRIMINATOR_STRIDE))} times")
        for i, grid in enumerate(params.block_grids):
            side = size // 2 ** (i + 1)
            if side % grid:
                raise ValueError(
                    f"scorer.params.block_grids[{i}] = {grid} does not divide stage {i}'s {side} x {side} feature "
                    f"map (preprocess.image_size {size} / 2^{i + 1}); pick a divisor of {side}"
                )
        self.generator = build_seeded(context.seed, lambda: MemoryUNet(
            size, params.channels, params.block_grids, params.memory_items, params.temperature))
        self.discriminator = build_seeded(context.seed + 1, lambda: Discriminator(params.discriminator_width))
        self.scales = TermScales()
        super().__init__(params, context, {
            "generator": self.generator, "discriminator": self.discriminator, "scales": self.scales,
        })

    def fit(self, batches: FitBatches) -> None:
        images = training_images(batches, self.context.input_size)
        p = self.params
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=p.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=p.lr, betas=(0.5, 0.999))

        def run_epoch(epoch: int, step: Step) -> dict[str, float]:
            self.generator.train()
            self.discriminator.train()
            sums = torch.zeros(4)
            count = 0
            for x in minibatches(images, p.batch_size, self.context.device):
                recon = self.generator(x)
                real_logits, real_feats = self.discriminator(x)
                fake_logits, fake_feats = self.discriminator(recon)
                rec = F.mse_loss(recon, x)
                adv = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
                # The discriminator's view of the real image is a target here, not something to move.
                align = F.mse_loss(fake_feats, real_feats.detach())
                loss_g = p.rec_weight * rec + p.adv_weight * adv + p.align_weight * align
                opt_g.zero_grad()
                loss_g.backward()
                opt_g.step()

                real_logits = self.discriminator(x)[0]
                fake_logits = self.discriminator(recon.detach())[0]
                loss_d = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
                    F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                opt_d.zero_grad()
                loss_d.backward()
                opt_d.step()
                step()
                sums += torch.stack([rec, adv, align, loss_d]).detach().cpu() * len(x)
                count += len(x)
            rec, adv, align, disc = (sums / count).tolist()
            return {"rec": rec, "adv": adv, "align": align, "disc": disc}

        self.train_networks(images, "gan", p.epochs, p.batch_size, run_epoch, {"generator": opt_g, "discriminator": opt_d})
        self._measure_scales(images)

    @torch.no_grad()
    def term_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw R(x) (B, 1, S, S) and L(x) (B, 1, S, S) maps, before the training-mean scaling."""
        recon = self.generator(x)
        rec = (x - recon).square().mean(dim=1, keepdim=True)
        align = (self.discriminator(x)[1] - self.discriminator(recon)[1]).square().mean(dim=1, keepdim=True)
        return rec, F.interpolate(align, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def _measure_scales(self, images: torch.Tensor) -> None:
        sums = torch.zeros(2)
        for start in range(0, len(images), self.params.batch_size):
            rec, align = self.term_maps(images[start : start + self.params.batch_size].to(self.context.device))
            sums += torch.stack([rec.mean(dim=(1, 2, 3)).sum(), align.mean(dim=(1, 2, 3)).sum()]).cpu()
        # A floor keeps a perfectly reproduced training set from dividing by zero.
        rec_mean, align_mean = (sums / len(images)).clamp(min=1e-12).tolist()
        self.scales.rec.fill_(rec_mean)
        self.scales.align.fill_(align_mean)

    def score(self, batch: torch.Tensor) -> Scores:
        self.require_fitted()
        x = batch.to(self.context.device)
        rec, align = self.term_maps(x)
        g = self.params.gamma
        maps = g * rec / self.scales.rec + (1.0 - g) * align / self.scales.align
        out = scores_from_maps(maps, self.params.blur_sigma)
        return Scores(image=out.image.to(batch.device), maps=out.maps.to(batch.device))
