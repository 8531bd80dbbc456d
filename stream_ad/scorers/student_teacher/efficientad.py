"""EfficientAD-S (Batzner et al., "EfficientAD: Accurate Visual Anomaly Detection at Millisecond-Level Latencies",
WACV 2024).

A PDN teacher distilled from the pretrained backbone (distill.py), its outputs standardised over the training
images; a PDN student with twice the channels: the first half regresses the teacher under the hard-feature loss
(only the elements above the 0.999 quantile of the squared error count), the second half regresses an autoencoder
that reconstructs the teacher from a 64-dim code of the whole image (logical anomalies), both trained on the same
randomly brightness/contrast/saturation-augmented images. Maps: local = mean_c (T - S_st)^2, global = mean_c
(A - S_ae)^2, each mapped by its 0.9 and 0.995 quantiles on held-out good images q_a, q_b to 0.1 (M - q_a) / (q_b -
q_a), averaged; upsampled to the input. Image score: the combined map's maximum.

Departures from the paper, for a 2-core CPU and a machine without ImageNet:
- the teacher distils from MobileNetV2's taps (backbone.layers) of the training images and their mirror images,
  not WideResNet-101 features on ImageNet; its output has as many channels as those taps (56 for the pipeline's
  features.3 + features.6, paper 384). The teacher's quality decides the method: on magnetic_tile at 128 px a
  teacher left at distillation loss 0.89 gave image AUROC 0.62, one trained to 0.54 (low taps, 4x the steps
  thanks to targets computed once) 0.71 (measured on a third of the test set);
- PDN width 0.25 (32/64/64 hidden channels, paper 128/256/256);
- budgets counted in steps of 8 images (pipeline: 1,000 teacher, 400 student + autoencoder; paper 70,000 steps of
  one image), learning rate 1e-3 (paper 1e-4), a tenth of it for the last 5 % as in the paper;
- edge cells of the maps repeated rather than zero-padded (combined_map says why);
- no ImageNet penalty term on the student (there are no ImageNet images here).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from stream_ad.backbones import load_backbone, resolve_normalisation
from stream_ad.runtime.accelerate import Features, accelerate_module, source_sha256
from stream_ad.scorers.base import (
    FitBatches,
    NotFittedError,
    Scorer,
    ScorerContext,
    ScorerParams,
    Scores,
)
from stream_ad.scorers.components.training import Step, fingerprint, stack_batches
from stream_ad.scorers.registry import register_scorer
from stream_ad.scorers.student_teacher.distill import MapDistillation, Phase, Steps, distill_pdn
from stream_ad.scorers.student_teacher.networks import PDN, Autoencoder
from stream_ad.scorers.student_teacher.sampling import check_input_size, chunks, split_validation
from stream_ad.scorers.student_teacher.targets import BackboneTargets, ChannelStats, teacher_provenance

# The quantiles that map each map's good-image range to [0, 0.1] (paper, Sec. 3.4).
_Q_LOW, _Q_HIGH = 0.9, 0.995
_MIN_INPUT = 64  # the autoencoder halves the input five times


class EfficientADParams(ScorerParams):
    width: float = Field(0.25, gt=0.0, le=1.0)  # PDN hidden channels as a fraction of the paper's 128/256/256
    teacher_steps: int = Field(1000, ge=1)
    steps: int = Field(400, ge=1)  # student + autoencoder (paper 70,000 of one image; lr / 10 after 95 %)
    batch_size: int = Field(8, ge=1)
    checkpoint_every: int = Field(50, ge=1)  # steps per progress line and resumable checkpoint
    learning_rate: float = Field(1e-3, gt=0.0)  # paper 1e-4 over 70k iterations
    weight_decay: float = Field(1e-5, ge=0.0)
    hard_quantile: float = Field(0.999, ge=0.0, lt=1.0)  # the hard-feature loss keeps errors above this quantile
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # good images held out for the map quantiles
    teacher_images: Literal["train_good"] = "train_good"  # what the teacher was distilled on (see distill.py)

    scoring = frozenset({"width"})  # the networks' shape; the map quantiles are fitted state
    not_scoring = frozenset({"teacher_steps", "steps", "batch_size", "checkpoint_every", "learning_rate",
                             "weight_decay", "hard_quantile", "validation_fraction", "teacher_images"})


class _Networks(nn.Module):
    def __init__(self, channels: int, input_size: int, width: float) -> None:
        super().__init__()
        self.teacher = PDN(channels, width)
        self.student = PDN(2 * channels, width)
        self.autoencoder = Autoencoder(channels, input_size)
        self.register_buffer("teacher_mean", torch.zeros(channels))
        self.register_buffer("teacher_std", torch.ones(channels))
        self.register_buffer("quantiles", torch.tensor([0.0, 1.0, 0.0, 1.0]))  # q_a, q_b of local, then global map

    def raw_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, h, w) local and global maps on the PDN's output cells, before quantile normalisation."""
        c = self.teacher_mean.shape[0]
        teacher = ChannelStats(self.teacher_mean, self.teacher_std)(self.teacher(x))
        student = self.student(x)
        local = (teacher - student[:, :c]).square().mean(dim=1, keepdim=True)
        glob = (self.autoencoder(x) - student[:, c:]).square().mean(dim=1, keepdim=True)
        return local, glob

    def combined_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, S): the normalised maps averaged, on the input's pixels. The raw maps are padded to the input's
        full stride-4 grid, which puts each cell over the centre of its receptive field, then upsampled. The
        reference code pads with zeros; at 128 px that marks 16 px along every edge normal whatever is there, and
        magnetic_tile's breaks sit on the edges (pixel AUROC 0.39 on them), so the edge cells, whose receptive
        fields reach the border, are repeated instead."""
        local, glob = (F.pad(m, (PDN.MAP_PAD,) * 4, mode="replicate") for m in self.raw_maps(x))
        la, lb, ga, gb = self.quantiles
        combined = 0.5 * 0.1 * (local - la) / (lb - la) + 0.5 * 0.1 * (glob - ga) / (gb - ga)
        return F.interpolate(combined, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


class _MapGraph(nn.Module):
    """The scoring networks as one module (input batch -> (combined map,)), for runtime.accelerate's paths."""

    def __init__(self, nets: _Networks) -> None:
        super().__init__()
        self.nets = nets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.nets.combined_map(x),)


@register_scorer("efficientad")
class EfficientAD(Scorer):
    Params = EfficientADParams
    params: EfficientADParams

    def __init__(self, params: EfficientADParams, context: ScorerContext) -> None:
        super().__init__(params, context)
        check_input_size("efficientad's autoencoder", _MIN_INPUT, context.input_size)
        # The teacher regresses the backbone's taps: as many channels as they have together.
        channels = _tap_channels(context)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            self.nets = _Networks(channels, context.input_size, params.width)
        self.nets.to(context.device).eval()
        mean, std = resolve_normalisation(context.backbone)
        self._pixel = (torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1))
        self._maps: Features | None = None  # the trained networks behind runtime.accelerate's path
        self.history: dict[str, list[dict[str, float]]] = {}  # losses per epoch of each training phase

    @property
    def _fitted(self) -> bool:
        return self._maps is not None

    def _accelerate(self) -> None:
        """Serve the trained networks through runtime.accelerate (the PDN is the method's whole cost per image),
        cached under a hash of their weights and code."""
        weights = hashlib.sha256()
        for name, tensor in self.nets.state_dict().items():
            weights.update(name.encode())
            weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        identity = {"name": self.name, "weights_sha256": weights.hexdigest(),
                    "code_sha256": source_sha256(_MapGraph, PDN, Autoencoder, ChannelStats)}
        self._maps = accelerate_module(_MapGraph(self.nets).eval(), identity, self.context.device,
                                       self.context.input_size, self.context.accelerate)

    def backbone_identity(self) -> dict[str, str]:
        return teacher_provenance(self.context.backbone)

    def fit(self, batches: FitBatches) -> None:
        p, nets, device = self.params, self.nets, self.context.device
        train, val = split_validation(stack_batches(batches), p.validation_fraction)
        phase = Phase(self.name, self.context.seed, self.context.checkpoint_dir,
                      fingerprint(type(self), {"params": p.model_dump(), "backbone": self.backbone_identity()}, train))
        targets = BackboneTargets(self.context.backbone, device)
        budget = MapDistillation(Steps(p.teacher_steps, p.checkpoint_every), p.batch_size, p.learning_rate,
                                 p.weight_decay)
        self.history["teacher"] = distill_pdn(nets.teacher, train, targets, budget, phase)
        nets.eval()
        with torch.no_grad():
            stats = ChannelStats.of(nets.teacher(c.to(device)) for c in chunks(train, 32))
        nets.teacher_mean.copy_(stats.mean)
        nets.teacher_std.copy_(stats.std)
        self.history["student"] = self._train_student_and_autoencoder(train, phase)
        nets.eval()
        nets.quantiles.copy_(self._quantiles(val))
        self._accelerate()

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's AE augmentation: one of brightness, contrast, saturation, factor 0.8-1.2, in pixel space."""
        mean, std = (t.to(x.device) for t in self._pixel)
        pixels = x * std + mean
        out = []
        for image in pixels:
            kind, factor = int(torch.randint(3, ())), float(torch.empty(()).uniform_(0.8, 1.2))
            grey = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]
            anchor = torch.zeros_like(image) if kind == 0 else grey.mean() if kind == 1 else grey
            out.append((anchor + factor * (image - anchor)).clamp(0.0, 1.0))
        return (torch.stack(out) - mean) / std

    def _train_student_and_autoencoder(self, images: torch.Tensor, phase: Phase) -> list[dict[str, float]]:
        p, nets, device = self.params, self.nets, self.context.device
        c = nets.teacher_mean.shape[0]
        teacher_stats = ChannelStats(nets.teacher_mean, nets.teacher_std)
        opt = torch.optim.Adam([*nets.student.parameters(), *nets.autoencoder.parameters()], lr=p.learning_rate,
                               weight_decay=p.weight_decay)
        steps = Steps(p.steps, p.checkpoint_every)

        def epoch(chunk: int, step_done: Step) -> dict[str, float]:
            totals = torch.zeros(3)
            for step in steps.of_chunk(chunk):
                for group in opt.param_groups:  # the paper's drop to a tenth for the last 5 % of the steps
                    group["lr"] = p.learning_rate * (0.1 if step >= 0.95 * p.steps else 1.0)
                x = images[torch.randint(images.shape[0], (p.batch_size,))].to(device)
                x_aug = self._augment(x)
                with torch.no_grad():
                    teacher, teacher_aug = teacher_stats(nets.teacher(x)), teacher_stats(nets.teacher(x_aug))
                error = (teacher - nets.student(x)[:, :c]).square()
                threshold = error.flatten().kthvalue(max(1, int(p.hard_quantile * error.numel()))).values
                hard = error[error >= threshold].mean()
                reconstruction = nets.autoencoder(x_aug)
                losses = torch.stack([
                    hard,
                    F.mse_loss(reconstruction, teacher_aug),
                    F.mse_loss(nets.student(x_aug)[:, c:], reconstruction),
                ])
                opt.zero_grad()
                losses.sum().backward()
                opt.step()
                step_done()
                totals += losses.detach().cpu()
            totals /= len(steps.of_chunk(chunk))
            return {"hard": totals[0].item(), "autoencoder": totals[1].item(), "student_ae": totals[2].item()}

        nets.student.train()
        nets.autoencoder.train()
        return phase.run("student", steps.chunks, steps.total, epoch,
                         {"student": nets.student, "autoencoder": nets.autoencoder}, {"adam": opt})

    @torch.no_grad()
    def _quantiles(self, val: torch.Tensor) -> torch.Tensor:
        maps = [self.nets.raw_maps(c.to(self.context.device)) for c in chunks(val, 8)]
        out = []
        for which in range(2):
            values = torch.cat([m[which].flatten() for m in maps]).cpu().numpy()
            low, high = np.quantile(values, [_Q_LOW, _Q_HIGH])
            out += [low, max(high, low + 1e-8)]
        return torch.tensor(out, dtype=torch.float32)

    @torch.inference_mode()
    def score(self, batch: torch.Tensor) -> Scores:
        if not self._fitted:
            raise NotFittedError("efficientad is not trained: fit() or load it first")
        maps = self._maps(batch.to(self.context.device))[0]  # type: ignore[misc]
        return Scores(image=maps.flatten(1).amax(dim=1), maps=maps)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if not self._fitted:
            raise NotFittedError("efficientad is not trained: fit() it first")
        return dict(self.nets.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.nets.load_state_dict(tensors)
        self.nets.eval()
        self._accelerate()


def _tap_channels(context: ScorerContext) -> int:
    """Channels of the backbone's taps together, from one small forward pass."""
    backbone = load_backbone(context.backbone, "cpu")
    with torch.no_grad():
        return sum(t.shape[1] for t in backbone(torch.zeros(1, 3, 64, 64)))
