"""PatchCore and the VAE's reconstruction error, their maps summed on one scale (registered as `patchcore_vae`).

Why both: PatchCore's ImageNet features find what looks unlike any good patch, but on fine paper textures they
localise impurities coarsely; a VAE trained from scratch on the good images reproduces the texture and misses what
it has never seen, pixel by pixel, but on parts whose look varies (magnetic_tile) it errs everywhere (README,
"Reconstruction methods"). Summed, one may cover the other's blind spot; on the shared sets it did not beat the
better of the two (README, "PatchCore and the VAE together"), so tune tries it on a line's labelled defects.

How: both are fitted on all the good images; on their pixels each method's map then has a mean and a spread
(scales.MapScales), which put the two maps on one scale. The map is PatchCore's standardised map plus vae_weight
times the VAE's (reconstruction error at vae_size px, upsampled to the input); the image score is its maximum. The
VAE sees the input resampled to vae_size (its network is small and trains fast there).

Scales from the fitted images themselves, not from held-out ones: both methods score their own training images
lower than new ones, but holding images out costs both fits data. On PIPED (24 good images fitted a category)
scales on a held-out 15 % gave a worst image AUROC of 0.943 and mean PRO 0.840, scales on the fitted images 0.970 and
0.888 (README, "PatchCore and the VAE together").
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch
import torch.nn.functional as F
from pydantic import Field

from stream_ad.scorers.base import FitBatches, NotFittedError, Scorer, ScorerContext, Scores
from stream_ad.scorers.components.training import stack_batches
from stream_ad.scorers.ensemble.scales import MapScales, standardised
from stream_ad.scorers.patchcore.model import PatchCore, PatchCoreParams
from stream_ad.scorers.reconstruction.vae import DOWNSAMPLING
from stream_ad.scorers.reconstruction.vae_scorer import VAEParams, VAEScorer
from stream_ad.scorers.registry import register_scorer

log = logging.getLogger(__name__)


class PatchCoreVAEParams(PatchCoreParams):
    """PatchCore's params, and the VAE's share: its input size, its training epochs and its map's weight."""

    vae_size: int = Field(128, ge=DOWNSAMPLING, multiple_of=DOWNSAMPLING)
    vae_epochs: int = Field(60, ge=1)
    # The VAE's standardised map counts this much against PatchCore's (1: equal). Measured on PIPED's 11 categories
    # (README, "PatchCore and the VAE together"): 1 gave the best worst image AUROC, 3 the best PRO; 1.5 between.
    vae_weight: float = Field(1.5, ge=0.0)

    scoring = PatchCoreParams.scoring | {"vae_size", "vae_weight"}
    not_scoring = PatchCoreParams.not_scoring | {"vae_epochs"}


def resampled(batch: torch.Tensor, size: int) -> torch.Tensor:
    """Inputs (B, 3, S, S) at the VAE's size (antialiased, as the preprocessing resizes frames)."""
    return F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def upsampled(maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Maps (B, s, s) at `size`."""
    return F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def combined(patchcore: torch.Tensor, vae: torch.Tensor, scales: torch.Tensor,
             weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two methods' raw maps (B, H, W), both at the input's size -> image scores (B,) and the summed map."""
    scales = scales.to(patchcore.device)
    maps = standardised(patchcore.float(), scales[0]) + weight * standardised(vae, scales[1])
    return maps.flatten(1).amax(dim=1), maps


class _Graph(torch.nn.Module):
    """The scoring graph: normalised inputs -> (image scores, summed maps), both methods' graphs inside."""

    def __init__(self, patchcore: torch.nn.Module, vae: torch.nn.Module, scales: torch.Tensor, vae_size: int,
                 weight: float) -> None:
        super().__init__()
        self.patchcore, self.vae = patchcore, vae
        self.register_buffer("scales", scales.clone())
        self.vae_size, self.weight = vae_size, weight

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, patchcore = self.patchcore(x)
        _, vae = self.vae(resampled(x, self.vae_size))
        return combined(patchcore, upsampled(vae, patchcore.shape[-2:]), self.scales, self.weight)


@register_scorer("patchcore_vae")
class PatchCoreVAE(Scorer):
    Params = PatchCoreVAEParams
    params: PatchCoreVAEParams

    def __init__(self, params: PatchCoreVAEParams, context: ScorerContext) -> None:
        super().__init__(params, context)
        own = params.model_dump(include=set(PatchCoreParams.model_fields))
        self.patchcore = PatchCore(PatchCoreParams(**own), context)
        self.vae = VAEScorer(VAEParams(mode="reconstruction", epochs=params.vae_epochs),
                             replace(context, input_size=params.vae_size))
        self.scales: torch.Tensor | None = None  # (2, 2): PatchCore's and the VAE's map mean and spread

    def backbone_identity(self) -> dict[str, str]:
        return self.patchcore.backbone_identity()

    def fit(self, batches: FitBatches) -> None:
        # Decoded once, held as tensors: both fits and the scales each pass over the images.
        images = stack_batches(batches)
        held = list(images.split(self.context.accelerate.max_batch))
        self.patchcore.fit(held)
        self.vae.fit([resampled(b, self.params.vae_size) for b in held])
        scales = MapScales(2)
        for batch in held:
            scales.add(list(self._maps(batch)))
        self.scales = scales.scales()
        log.info("patchcore_vae: the maps' scales on %d good images: PatchCore mean %.3g spread %.3g, VAE mean %.3g "
                 "spread %.3g", len(images), *self.scales.flatten())

    def _maps(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each method's raw map (B, H, W) at the input's size: what the scales are measured on and score() sums."""
        patchcore = self.patchcore.score(batch).maps
        vae = self.vae.score(resampled(batch, self.params.vae_size)).maps
        return patchcore, upsampled(vae.to(patchcore.device), patchcore.shape[-2:])

    def _fitted_scales(self) -> torch.Tensor:
        if self.scales is None:
            raise NotFittedError("patchcore_vae is not fitted: fit() or load it first")
        return self.scales

    def score(self, batch: torch.Tensor) -> Scores:
        scales = self._fitted_scales()
        image, maps = combined(*self._maps(batch), scales, self.params.vae_weight)
        return Scores(image=image.to(batch.device), maps=maps.to(batch.device))

    def scoring_graph(self, quantised: bool = False) -> torch.nn.Module:
        """Both methods' scoring graphs and the sum of their maps as one module; PatchCore's search stays float32
        (no INT8 search constants): the sum's scale was fitted on float32 maps."""
        return _Graph(self.patchcore.scoring_graph(), self.vae.scoring_graph(), self._fitted_scales(),
                      self.params.vae_size, self.params.vae_weight)

    def images_per_call(self) -> int:
        return self.patchcore.images_per_call()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        scales = self._fitted_scales()
        parts = {"patchcore": self.patchcore.state_tensors(), "vae": self.vae.state_tensors()}
        return {"scales": scales.cpu()} | {f"{name}.{key}": value for name, tensors in parts.items()
                                               for key, value in tensors.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, part in (("patchcore", self.patchcore), ("vae", self.vae)):
            prefix = f"{name}."
            part.load_state_tensors({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        self.scales = tensors["scales"].float()
