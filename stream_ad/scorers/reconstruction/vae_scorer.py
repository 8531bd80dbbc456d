"""VAE + iterative energy-based projection (Dehaene et al., ICLR 2020), registered as `vae`.

A convolutional VAE learns the good parts' appearance. At test time (mode "energy") each image x_0 is moved towards
what the VAE can reproduce by focused gradient steps on E(x) = ||x - f(x)||^2 + lambda ||x - x_0||_1 (projection.py);
the map is |x_0 - x_T|, averaged over channels and Gaussian-smoothed, and the image score is its maximum. Mode
"reconstruction" is the plain baseline, map |x_0 - f(x_0)|, so the projection's gain can be measured.

Departures from the paper: f(x) decodes the posterior mean (no sampling), so E is deterministic; each image stops
early when its energy stops falling (tolerance) or rises, instead of always running a fixed step count; the image
score is the smoothed map's maximum (the paper evaluates localisation only). Pixels are the backbone-normalised
inputs (range about [-1, 1]), so alpha and lambda are on that scale.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from stream_ad.scorers.base import FitBatches, NotExportable, ScorerContext, ScorerParams, Scores
from stream_ad.scorers.components.training import Step
from stream_ad.scorers.reconstruction.common import (
    TrainedScorer,
    build_seeded,
    minibatches,
    require_divisible,
    scores_from_maps,
    training_images,
)
from stream_ad.scorers.reconstruction.projection import project
from stream_ad.scorers.reconstruction.vae import DOWNSAMPLING, ConvVAE, vae_loss
from stream_ad.scorers.registry import register_scorer


class VAEParams(ScorerParams):
    latent_dim: int = Field(128, ge=2, le=4096)
    base_channels: int = Field(16, ge=4, le=256)  # channels of the first encoder stage, doubling per stage
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(1e-3, gt=0.0)
    beta: float = Field(1.0, ge=0.0)  # KL weight
    # energy: the iterative projection; reconstruction: the plain |x - f(x)| baseline.
    mode: Literal["energy", "reconstruction"] = "energy"
    steps: int = Field(20, ge=1, le=10_000)  # most projection steps per image
    alpha: float = Field(0.05, gt=0.0)  # step size
    lambda_l1: float = Field(0.1, ge=0.0)  # lambda: weight of ||x - x_0||_1, which keeps x_T near the input
    tolerance: float = Field(1e-3, ge=0.0)  # an image stops when a step lowers its energy by less (relative)
    blur_sigma: float = Field(2.0, ge=0.0)

    scoring = frozenset({"latent_dim", "base_channels", "mode", "steps", "alpha", "lambda_l1", "tolerance",
                         "blur_sigma"})
    not_scoring = frozenset({"epochs", "batch_size", "lr", "beta"})


@register_scorer("vae")
class VAEScorer(TrainedScorer):
    Params = VAEParams
    params: VAEParams
    TRAINING_FIELDS = frozenset({"latent_dim", "base_channels", "epochs", "batch_size", "lr", "beta"})

    def __init__(self, params: VAEParams, context: ScorerContext) -> None:
        require_divisible(context.input_size, DOWNSAMPLING, "the VAE halves the image 4 times")
        self.net = build_seeded(
            context.seed, lambda: ConvVAE(context.input_size, params.base_channels, params.latent_dim)
        )
        super().__init__(params, context, {"vae": self.net})

    def fit(self, batches: FitBatches) -> None:
        images = training_images(batches, self.context.input_size)
        p = self.params
        optimizer = torch.optim.Adam(self.net.parameters(), lr=p.lr)

        def run_epoch(epoch: int, step: Step) -> dict[str, float]:
            self.net.train()
            sums = torch.zeros(3)
            count = 0
            for x in minibatches(images, p.batch_size, self.context.device):
                loss, rec, kl = vae_loss(x, self.net, p.beta)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step()
                sums += torch.stack([loss, rec, kl]).detach().cpu() * len(x)
                count += len(x)
            loss, rec, kl = (sums / count).tolist()
            return {"loss": loss, "rec": rec, "kl": kl}

        self.train_networks(images, "vae", p.epochs, p.batch_size, run_epoch, {"vae": optimizer})

    def scoring_graph(self, quantised: bool = False) -> torch.nn.Module:
        if self.params.mode == "energy":
            raise NotExportable(
                f"vae with mode 'energy' moves each image by {self.params.steps} gradient steps at test time (the "
                "projection): no single forward graph computes that; export a model fitted with mode "
                "'reconstruction', or serve this one with `stream-ad run` on the model artefact")
        return super().scoring_graph(quantised)

    def score(self, batch: torch.Tensor) -> Scores:
        self.require_fitted()
        x0 = batch.to(self.context.device)
        p = self.params
        if p.mode == "energy":
            target = project(x0, self.net.reconstruct, p.steps, p.alpha, p.lambda_l1, p.tolerance).x
        else:
            with torch.no_grad():
                target = self.net.reconstruct(x0)
        maps = (x0 - target).abs().mean(dim=1, keepdim=True)
        out = scores_from_maps(maps, p.blur_sigma)
        return Scores(image=out.image.to(batch.device), maps=out.maps.to(batch.device))
