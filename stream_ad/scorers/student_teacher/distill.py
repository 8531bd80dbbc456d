"""Teacher distillation from the pretrained backbone, for both methods, through the shared training loop.

No ImageNet here: both teachers learn from crops of the training images (`teacher_images: train_good`), where the
papers distil once on ImageNet. A teacher therefore knows the line's good parts well and other content less; the
students never see other content either, so the discrepancy on defects remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stream_ad.scorers.student_teacher.networks import PDN, PatchNet
from stream_ad.scorers.student_teacher.sampling import chunks, crop_at, random_positions
from stream_ad.scorers.student_teacher.targets import BackboneTargets, ChannelStats
from stream_ad.scorers.training import train_phase


@dataclass(frozen=True)
class Phase:
    """What every training phase passes to train_phase besides its modules and epoch function."""

    method: str
    seed: int
    checkpoint_dir: Path | None
    key: str  # fingerprint of the params and training images

    def run(self, name: str, epochs: int, run_epoch, modules: dict[str, nn.Module],
            optimizers: dict[str, torch.optim.Optimizer]) -> list[dict[str, float]]:
        return train_phase(method=self.method, phase=name, epochs=epochs, run_epoch=run_epoch, modules=modules,
                           optimizers=optimizers, seed=self.seed, checkpoint_dir=self.checkpoint_dir, key=self.key)


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

    def epoch(_: int) -> dict[str, float]:
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
            totals += losses.detach().cpu()
        totals /= len(batches)
        return {"distill": totals[0].item(), "triplet": totals[1].item(), "compact": totals[2].item()}

    teacher.train()
    return phase.run(f"teacher-{p}", cfg.epochs, epoch, modules, {"adam": opt})


@dataclass(frozen=True)
class MapDistillation:
    epochs: int
    steps: int  # minibatches per epoch
    batch_size: int
    learning_rate: float
    weight_decay: float


def random_resized_crops(images: torch.Tensor, min_scale: float = 0.5) -> torch.Tensor:
    """Each image replaced by a random square crop of 50-100 % of its side, resized back: more views per image."""
    size = images.shape[-1]
    out = []
    for image in images:
        side = int(torch.randint(int(size * min_scale), size + 1, ()))
        y, x = (int(torch.randint(size - side + 1, ())) for _ in range(2))
        crop = image[None, :, y : y + side, x : x + side]
        out.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False))
    return torch.cat(out)


def distill_pdn(teacher: PDN, images: torch.Tensor, targets: BackboneTargets, cfg: MapDistillation,
                phase: Phase) -> list[dict[str, float]]:
    """EfficientAD's teacher: the PDN regresses the backbone's standardised taps on its output grid. The backbone
    sees the image at 8x the grid size, so its stride-8 tap lands on the PDN's stride-4 grid one to one."""
    device = targets.device
    grid = PDN.output_size(images.shape[-1])
    seen = 8 * grid
    stats = ChannelStats.of(targets.dense(c, seen, grid) for c in chunks(images, 32)).to(device)
    opt = torch.optim.Adam(teacher.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def epoch(_: int) -> dict[str, float]:
        total = 0.0
        for _ in range(cfg.steps):
            x = random_resized_crops(images[torch.randint(images.shape[0], (cfg.batch_size,))]).to(device)
            loss = F.mse_loss(teacher(x), stats(targets.dense(x, seen, grid)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        return {"distill": total / cfg.steps}

    teacher.train()
    return phase.run("teacher", cfg.epochs, epoch, {"teacher": teacher}, {"adam": opt})
