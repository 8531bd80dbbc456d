"""What the reconstruction scorers share: input-size checks, the training-image tensor, minibatches, maps -> scores,
seeded network construction, the training call and their fitted networks as named tensors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import ClassVar, TypeVar

import torch
from torch import nn

from stream_ad.scorers.base import FitBatches, NotFittedError, Scorer, ScorerContext, ScorerParams, Scores
from stream_ad.scorers.components.blur import gaussian_blur
from stream_ad.scorers.components.training import EpochFn, fingerprint, stack_batches, train_phase

log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)


def require_divisible(size: int, factor: int, why: str) -> None:
    """Fail with a message naming the settings involved when `size` is not a multiple of `factor`."""
    if size % factor:
        raise ValueError(
            f"preprocess.image_size (or tile_size) {size} is not divisible by {factor}: {why}; "
            f"pick a size that is a multiple of {factor}"
        )


def training_images(batches: FitBatches, input_size: int) -> torch.Tensor:
    """The good images as one (N, 3, S, S) CPU tensor; its size is logged because it bounds the fit's memory."""
    images = stack_batches(batches)
    if tuple(images.shape[1:]) != (3, input_size, input_size):
        raise ValueError(
            f"training images have shape {tuple(images.shape[1:])}, expected (3, {input_size}, {input_size})"
        )
    log.info("%d training images held in memory (%.0f MB)", len(images), images.numel() * 4 / 1e6)
    return images


def minibatches(images: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """One shuffled epoch of minibatches, drawn from torch's global RNG (which train_phase seeds and checkpoints)."""
    order = torch.randperm(len(images))
    for start in range(0, len(images), batch_size):
        yield images[order[start : start + batch_size]].to(device)


def minibatch_count(images: torch.Tensor, batch_size: int) -> int:
    """How many minibatches one epoch of `minibatches` yields."""
    return -(-len(images) // batch_size)


def scores_from_maps(maps: torch.Tensor, sigma: float) -> Scores:
    """(B, 1, S, S) raw anomaly maps -> Gaussian-smoothed maps and image scores (each map's maximum).

    The maximum of the smoothed map responds to a small defect that a whole-image mean would dilute; smoothing first
    keeps one noisy pixel from deciding it.
    """
    smooth = gaussian_blur(maps, sigma)[:, 0]
    return Scores(image=smooth.flatten(1).amax(dim=1), maps=smooth)


def build_seeded(seed: int, build: Callable[[], M]) -> M:
    """A network initialised from `seed` without disturbing the caller's RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


class TrainedScorer(Scorer):
    """Base of scorers whose whole fitted state is networks trained from scratch on the good images."""

    nonnegative_scores = True  # reconstruction and alignment errors

    # Params that change what training produces: with the seed and the images, the key of resumable checkpoints.
    # Test-time settings stay out of it, so changing only them reuses a finished training run.
    TRAINING_FIELDS: ClassVar[frozenset[str]]

    def __init__(self, params: ScorerParams, context: ScorerContext, modules: Mapping[str, nn.Module]) -> None:
        super().__init__(params, context)
        self.modules = {name: module.to(context.device) for name, module in modules.items()}
        self.fitted = False

    def train_networks(
        self, images: torch.Tensor, phase: str, epochs: int, batch_size: int, run_epoch: EpochFn,
        optimizers: Mapping[str, torch.optim.Optimizer],
    ) -> list[dict[str, float]]:
        """The shared training loop over all of this scorer's networks, one step per minibatch of `batch_size` (what
        run_epoch iterates); leaves them in eval mode."""
        training = self.params.model_dump(mode="json", include=set(self.TRAINING_FIELDS))
        key = fingerprint(type(self), {"params": training, "seed": self.context.seed}, images)
        history = train_phase(
            method=self.name, phase=phase, epochs=epochs,
            steps=epochs * minibatch_count(images, batch_size), run_epoch=run_epoch, modules=self.modules,
            optimizers=optimizers, seed=self.context.seed, checkpoint_dir=self.context.checkpoint_dir, key=key,
        )
        self._set_eval()
        return history

    def require_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"{self.name} is not trained: fit() or load it first")

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self.require_fitted()
        return {
            f"{name}.{key}": value.detach().cpu()
            for name, module in self.modules.items()
            for key, value in module.state_dict().items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, module in self.modules.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        self._set_eval()

    def _set_eval(self) -> None:
        for module in self.modules.values():
            module.eval()
        self.fitted = True
