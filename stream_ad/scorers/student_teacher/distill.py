"""Teacher distillation from the pretrained backbone, for both methods, through the shared training loop.

No ImageNet here: both teachers learn from the training images (`teacher_images: train_good`; Uninformed Students'
from patches of them, EfficientAD's from the whole images and their mirror images), where the papers distil once on
ImageNet. A teacher therefore knows the line's good parts well and other content less; the
students never see other content either, so the discrepancy on defects remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stream_ad.scorers.components.training import EpochFn, Step, train_phase
from stream_ad.scorers.student_teacher.networks import PDN, PatchNet
from stream_ad.scorers.student_teacher.sampling import chunks, crop_at, random_positions
from stream_ad.scorers.student_teacher.targets import BackboneTargets, ChannelStats


@dataclass(frozen=True)
class Phase:
    """What every training phase passes to train_phase besides its modules and epoch function."""

    method: str
    seed: int
    checkpoint_dir: Path | None
    key: str  # fingerprint of the params and training images

    def run(self, name: str, epochs: int, steps: int, run_epoch: EpochFn, modules: dict[str, nn.Module],
            optimizers: dict[str, torch.optim.Optimizer]) -> list[dict[str, float]]:
        return train_phase(method=self.method, phase=name, epochs=epochs, steps=steps, run_epoch=run_epoch,
                           modules=modules, optimizers=optimizers, seed=self.seed, checkpoint_dir=self.checkpoint_dir,
                           key=self.key)


@dataclass(frozen=True)
class PatchDistillation:
    epochs: int
    patches: int  # the fixed set of patches (and backbone targets) one epoch passes over
    batch_size: int
    target_size: int  # side the backbone sees a patch at
    learning_rate: float
    weight_decay: float
    margin: float  # triplet margin delta
    shift: int  # a positive is its anchor moved by up to this many pixels, plus noise


def correlation_loss(desc: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Descriptor compactness on the batch's correlation matrix (paper Eq. 4), as the mean |c_ij| over i != j, with
    c_ij = cov_ij / sqrt((var_i + eps)(var_j + eps)).

    The paper sums the signed c_ij; that sum is smallest (-d) when every descriptor's components sum to zero, which
    a teacher reaches at once (measured: -63.9 of -64 after one epoch) and at weight 1 it outweighs the other losses
    by d. Exact correlations divide by the components' spread, tiny at initialisation, and their gradient then
    collapsed the descriptors (triplet loss stuck at its margin, measured); eps (descriptors are on the targets'
    unit scale) keeps it bounded."""
    z = desc - desc.mean(dim=0)
    cov = z.T @ z / desc.shape[0]
    scale = (cov.diagonal() + eps).sqrt()
    corr = (cov / scale[:, None] / scale[None, :]).abs()
    d = corr.shape[0]
    return (corr.sum() - corr.diagonal().sum()) / (d * (d - 1))


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """Paper Eq. 3: delta+ = |a - p|^2, delta- = min(|a - n|^2, |p - n|^2), loss max(0, margin + delta+ - delta-)."""
    d_pos = (anchor - positive).square().sum(dim=1)
    d_neg = torch.minimum((anchor - negative).square().sum(dim=1), (positive - negative).square().sum(dim=1))
    return F.relu(margin + d_pos - d_neg).mean()


def distill_patch_teacher(teacher: PatchNet, images: torch.Tensor, targets: BackboneTargets,
                          cfg: PatchDistillation, phase: Phase, generator: torch.Generator) -> list[dict[str, float]]:
    """Uninformed Students' T-hat: knowledge distillation through a linear decoder to the backbone's pooled taps,
    the triplet loss and descriptor compactness, all weighted 1 as in the paper."""
    device = targets.device
    p = teacher.patch_size
    index, ys, xs = random_positions(images, p, cfg.patches, generator)
    # The backbone runs once over the fixed patch set, not once per epoch.
    wanted = torch.cat([targets.pooled(crop_at(images, i, y, x, p), cfg.target_size)
                        for i, y, x in zip(*(t.split(256) for t in (index, ys, xs)))])
    wanted = ChannelStats.of([wanted])(wanted)
    decoder = nn.Linear(teacher.convs[-1].out_channels, wanted.shape[1]).to(device)
    modules = {"teacher": teacher, "decoder": decoder}
    opt = torch.optim.Adam([*teacher.parameters(), *decoder.parameters()], lr=cfg.learning_rate,
                           weight_decay=cfg.weight_decay)
    h, w = images.shape[-2:]

    def epoch(_: int, step: Step) -> dict[str, float]:
        totals = torch.zeros(3)
        batches = torch.randperm(cfg.patches).split(cfg.batch_size)
        for batch in batches:
            anchor = crop_at(images, index[batch], ys[batch], xs[batch], p).to(device)
            dy, dx = (torch.randint(-cfg.shift, cfg.shift + 1, (len(batch),)) for _ in range(2))
            pos_y, pos_x = (ys[batch] + dy).clamp(0, h - p), (xs[batch] + dx).clamp(0, w - p)
            positive = crop_at(images, index[batch], pos_y, pos_x, p)
            positive = (positive + 0.1 * torch.randn_like(positive)).to(device)
            a, pos = teacher(anchor), teacher(positive)
            neg = a.roll(1, dims=0)  # another patch of the batch
            losses = torch.stack([
                F.mse_loss(decoder(a), wanted[batch].to(device)),
                triplet_loss(a, pos, neg, cfg.margin),
                correlation_loss(a),
            ])
            opt.zero_grad()
            losses.sum().backward()
            opt.step()
            step()
            totals += losses.detach().cpu()
        totals /= len(batches)
        return {"distill": totals[0].item(), "triplet": totals[1].item(), "compact": totals[2].item()}

    teacher.train()
    steps = cfg.epochs * -(-cfg.patches // cfg.batch_size)
    return phase.run(f"teacher-{p}", cfg.epochs, steps, epoch, modules, {"adam": opt})


@dataclass(frozen=True)
class Steps:
    """A budget counted in optimiser steps, as the paper's iterations, whatever the number of training images; run
    in chunks of `checkpoint_every` steps, each one progress line and one resumable checkpoint of the shared loop."""

    total: int
    checkpoint_every: int

    @property
    def chunks(self) -> int:
        return -(-self.total // self.checkpoint_every)

    def of_chunk(self, chunk: int) -> range:
        """The global indices of the steps in one chunk (the last may be shorter)."""
        start = chunk * self.checkpoint_every
        return range(start, min(self.total, start + self.checkpoint_every))


@dataclass(frozen=True)
class MapDistillation:
    steps: Steps
    batch_size: int
    learning_rate: float
    weight_decay: float


def pdn_targets(targets: BackboneTargets, images: torch.Tensor) -> torch.Tensor:
    """The backbone's taps on the PDN's output cells. The unpadded PDN's cell (i, j) is the input's stride-4 cell
    (i + MAP_PAD, j + MAP_PAD); the backbone sees the image at 8x that full grid, so its stride-8 tap lands on it one
    to one, and the MAP_PAD border cells are cropped off."""
    grid = PDN.output_size(images.shape[-1]) + 2 * PDN.MAP_PAD
    full = targets.dense(images, 8 * grid, grid)
    return full[..., PDN.MAP_PAD : grid - PDN.MAP_PAD, PDN.MAP_PAD : grid - PDN.MAP_PAD]


def distill_pdn(teacher: PDN, images: torch.Tensor, targets: BackboneTargets, cfg: MapDistillation,
                phase: Phase) -> list[dict[str, float]]:
    """EfficientAD's teacher: the PDN regresses the backbone's standardised taps on its output grid. The backbone
    runs once over the training images and their mirror images (a second view whose targets are exact), not at
    every step: there it took three quarters of each step (measured), so this buys four times the steps."""
    device = targets.device
    views = torch.cat([images, images.flip(-1)])
    wanted = torch.cat([pdn_targets(targets, c).cpu() for c in chunks(views, 32)])
    wanted = ChannelStats.of([wanted])(wanted)
    opt = torch.optim.Adam(teacher.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def epoch(chunk: int, step: Step) -> dict[str, float]:
        steps = cfg.steps.of_chunk(chunk)
        total = 0.0
        for _ in steps:
            pick = torch.randint(views.shape[0], (cfg.batch_size,))
            loss = F.mse_loss(teacher(views[pick].to(device)), wanted[pick].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step()
            total += loss.item()
        return {"distill": total / len(steps)}

    teacher.train()
    return phase.run("teacher", cfg.steps.chunks, cfg.steps.total, epoch, {"teacher": teacher}, {"adam": opt})
