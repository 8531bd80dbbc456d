"""Uninformed Students (Bergmann et al., "Uninformed Students: Student-Teacher Anomaly Detection with
Discriminative Latent Embeddings", CVPR 2020), multi-scale.

Per receptive field p (17, 33, 65): a teacher T-hat distilled from the pretrained backbone on p x p patches
(knowledge distillation through a decoder, triplet loss, descriptor compactness: distill.py); an ensemble of M
students of the same architecture, randomly initialised, regressing the teacher's descriptors standardised with
their mean/std over the training set. Both run densely (networks.PatchNet.dense: stride-1 pools + dilation, equal to
FDFE), one descriptor per pixel. Per pixel: regression error |mean_i S_i - T|^2 and predictive variance
mean_i |S_i|^2 - |mean_i S_i|^2, each standardised by its mean/std over held-out good images (every 10th training
image), summed; the scales' maps are averaged. Image score: the map's maximum.

Departures from the paper, for a 2-core CPU and a machine without ImageNet:
- teachers distil from crops of the line's own good images (no ImageNet), from MobileNetV2's taps (backbone.layers,
  patch resized to target_size and average-pooled) instead of ResNet-18's 512-d output;
- d = 64 descriptors (paper 128) and width 16 (the paper's 128/256 channels become 16/32: dense inference costs
  ~12 dense nets per image); pipelines/uninformed_students.yaml trains 40 epochs of 1,024 patches per teacher and
  per student ensemble instead of 50k teacher iterations and 100 student epochs over dense maps; learning rate
  1e-3 (paper 1e-4 / 2e-4);
- descriptor compactness as the mean |off-diagonal correlation| (distill.correlation_loss says why);
- students train on random p x p patches in patch mode (the dense map is every patch at once, so this samples
  its pixels), and the teacher's mean/std comes from 4 x patches_per_epoch such patches instead of every pixel;
  all patches, the teacher's too, are drawn from the images reflect-padded as the dense map pads them, so border
  patches are in the training set.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

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
from stream_ad.scorers.student_teacher.distill import PatchDistillation, Phase, distill_patch_teacher
from stream_ad.scorers.student_teacher.networks import PatchNet
from stream_ad.scorers.student_teacher.sampling import check_input_size, chunks, random_crops, split_validation
from stream_ad.scorers.student_teacher.targets import BackboneTargets, ChannelStats, teacher_provenance

ReceptiveField = Literal[17, 33, 65]


class UninformedStudentsParams(ScorerParams):
    receptive_fields: list[ReceptiveField] = Field(default_factory=lambda: [17, 33, 65], min_length=1)
    students: int = 3  # M, per receptive field
    descriptor_dim: int = Field(64, ge=8)  # d (paper 128)
    width: int = Field(16, ge=4)  # channels of the patch nets' first layers (paper 128)
    teacher_epochs: int = Field(8, ge=1)
    student_epochs: int = Field(8, ge=1)
    patches_per_epoch: int = Field(1024, ge=16)
    batch_size: int = Field(64, ge=2)  # >= 2: the triplet's negative and the correlation need another patch
    target_size: int = Field(64, ge=32)  # side the backbone sees a patch at
    learning_rate: float = Field(1e-3, gt=0.0)  # paper 1e-4 / 2e-4 over far more iterations
    weight_decay: float = Field(1e-5, ge=0.0)
    triplet_margin: float = Field(1.0, gt=0.0)
    positive_shift: int = Field(2, ge=0)  # the triplet's positive: the anchor moved up to this many px, plus noise
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # good images held out to standardise the scores
    # What the teachers were distilled on: the only source on this machine is the line's good training images.
    teacher_images: Literal["train_good"] = "train_good"

    scoring = frozenset({"receptive_fields", "students", "descriptor_dim", "width"})
    not_scoring = frozenset({"teacher_epochs", "student_epochs", "patches_per_epoch", "batch_size", "target_size",
                             "learning_rate", "weight_decay", "triplet_margin", "positive_shift",
                             "validation_fraction", "teacher_images"})

    @field_validator("students")
    @classmethod
    def _ensemble(cls, m: int) -> int:
        if m < 2:
            raise ValueError(f"needs at least 2 students (got {m}): the predictive variance of one student is 0")
        return m

    @field_validator("receptive_fields")
    @classmethod
    def _distinct(cls, fields: list[int]) -> list[int]:
        if len(set(fields)) != len(fields):
            raise ValueError(f"receptive fields must be distinct, got {fields}")
        return fields


class _Scale(nn.Module):
    """One receptive field: teacher, students and the statistics that standardise descriptors and scores."""

    def __init__(self, p: int, params: UninformedStudentsParams) -> None:
        super().__init__()
        self.teacher = PatchNet(p, params.descriptor_dim, params.width)
        self.students = nn.ModuleList(PatchNet(p, params.descriptor_dim, params.width) for _ in range(params.students))
        self.register_buffer("teacher_mean", torch.zeros(params.descriptor_dim))
        self.register_buffer("teacher_std", torch.ones(params.descriptor_dim))
        # mean, std of the regression error and of the predictive variance on validation pixels
        self.register_buffer("score_stats", torch.tensor([0.0, 1.0, 0.0, 1.0]))

    @property
    def teacher_stats(self) -> ChannelStats:
        return ChannelStats(self.teacher_mean, self.teacher_std)

    def error_and_variance(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W) regression error and predictive variance, unstandardised."""
        target = self.teacher_stats(self.teacher.dense(x))
        preds = torch.stack([s.dense(x) for s in self.students])  # (M, B, d, H, W)
        mean = preds.mean(dim=0)
        error = (mean - target).square().sum(dim=1)
        variance = (preds.square().sum(dim=2).mean(dim=0) - mean.square().sum(dim=1)).clamp(min=0.0)
        return error, variance

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        error, variance = self.error_and_variance(x)
        e_mean, e_std, v_mean, v_std = self.score_stats
        return (error - e_mean) / e_std + (variance - v_mean) / v_std


@register_scorer("uninformed_students")
class UninformedStudents(Scorer):
    Params = UninformedStudentsParams
    params: UninformedStudentsParams

    def __init__(self, params: UninformedStudentsParams, context: ScorerContext) -> None:
        super().__init__(params, context)
        check_input_size(f"scorer.params.receptive_fields {params.receptive_fields}", max(params.receptive_fields),
                         context.input_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)  # students differ from each other, but the same seed gives the same nets
            self.scales = nn.ModuleDict({str(p): _Scale(p, params) for p in params.receptive_fields})
        self.scales.to(context.device).eval()
        self._fitted = False
        self.history: dict[str, list[dict[str, float]]] = {}  # losses per epoch of each training phase

    def backbone_identity(self) -> dict[str, str]:
        return teacher_provenance(self.context.backbone)

    def fit(self, batches: FitBatches) -> None:
        train, val = split_validation(stack_batches(batches), self.params.validation_fraction)
        targets = BackboneTargets(self.context.backbone, self.context.device)
        key = fingerprint(type(self), {"params": self.params.model_dump(), "backbone": self.backbone_identity()}, train)
        phase = Phase(self.name, self.context.seed, self.context.checkpoint_dir, key)
        p = self.params
        cfg = PatchDistillation(p.teacher_epochs, p.patches_per_epoch, p.batch_size, p.target_size, p.learning_rate,
                                p.weight_decay, p.triplet_margin, p.positive_shift)
        for name, scale in self.scales.items():
            gen = torch.Generator().manual_seed(self.context.seed * 1000 + int(name))
            # Patches are drawn from the images padded as dense scoring pads them: trained on inner patches only,
            # the students had never seen the reflected content of border patches, and 95% of the maps' maxima
            # sat on the border (measured on magnetic_tile; image AUROC at chance).
            padded = scale.teacher.pad(train)
            self.history[f"teacher-{name}"] = distill_patch_teacher(scale.teacher, padded, targets, cfg, phase, gen)
            scale.eval()
            with torch.no_grad():
                sample = random_crops(padded, int(name), 4 * p.patches_per_epoch, gen)
                stats = ChannelStats.of(scale.teacher(c.to(self.context.device)) for c in chunks(sample, 256))
            scale.teacher_mean.copy_(stats.mean)
            scale.teacher_std.copy_(stats.std)
            self.history[f"students-{name}"] = train_students(scale, padded, p, phase)
            scale.eval()
            scale.score_stats.copy_(self._score_stats(scale, val))
        self._fitted = True

    @torch.no_grad()
    def _score_stats(self, scale: _Scale, val: torch.Tensor) -> torch.Tensor:
        parts = [scale.error_and_variance(c.to(self.context.device)) for c in chunks(val, 8)]
        error = torch.cat([e.flatten() for e, _ in parts])
        variance = torch.cat([v.flatten() for _, v in parts])
        return torch.stack([error.mean(), error.std().clamp(min=1e-8), variance.mean(), variance.std().clamp(min=1e-8)])

    @torch.inference_mode()
    def score(self, batch: torch.Tensor) -> Scores:
        if not self._fitted:
            raise NotFittedError("uninformed_students has no trained students: fit() or load it first")
        # Channels-last runs the dense (dilated) convolutions ~2x faster on the CPU (measured).
        x = batch.to(self.context.device).contiguous(memory_format=torch.channels_last)
        maps = torch.stack([scale.anomaly_map(x) for scale in self.scales.values()]).mean(dim=0)
        return Scores(image=maps.flatten(1).amax(dim=1), maps=maps)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if not self._fitted:
            raise NotFittedError("uninformed_students has no trained students: fit() it first")
        return {f"rf{k}": v for k, v in self.scales.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.scales.load_state_dict({k.removeprefix("rf"): v for k, v in tensors.items()})
        self.scales.eval()
        self._fitted = True


def train_students(scale: _Scale, images: torch.Tensor, p: UninformedStudentsParams, phase: Phase
                   ) -> list[dict[str, float]]:
    """All M students regress the standardised teacher on the same random patches; they differ by their init."""
    device = scale.teacher_mean.device
    size = scale.teacher.patch_size
    students = scale.students
    opt = torch.optim.Adam(students.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)

    steps = max(1, p.patches_per_epoch // p.batch_size)

    def epoch(_: int, step: Step) -> dict[str, float]:
        total = 0.0
        for _ in range(steps):
            crops = random_crops(images, size, p.batch_size).to(device)
            with torch.no_grad():
                target = scale.teacher_stats(scale.teacher(crops))
            loss = torch.stack([F.mse_loss(s(crops), target) for s in students]).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step()
            total += loss.item() / len(students)
        return {"regression": total / steps}

    students.train()
    return phase.run(f"students-{size}", p.student_epochs, p.student_epochs * steps, epoch, {"students": students},
                     {"adam": opt})
