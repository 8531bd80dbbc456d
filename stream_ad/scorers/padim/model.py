"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly Detection and Localization",
ICPR 2020).

The backbone's taps stacked at the finest tap's grid, a random (seeded) subset of d channels -> per grid position a
multivariate Gaussian of the good images' features -> the Mahalanobis distance of each position's feature to its own
position's Gaussian. Map: the distances upsampled to the input and Gaussian-smoothed (sigma 4); image score: the map's
maximum.

It assumes aligned parts: grid position (i, j) must show the same place of the part in every frame (a board in a
fixture, a part on a jig). A part that moves or rotates between frames spreads each Gaussian over several places and
scores worse than PatchCore, which matches a patch against patches from anywhere. In tile mode each tile is scored as
an image, so a position's Gaussian pools that position of every tile.

Covariance regularisation: + eps I (the paper's 0.01 I), not Ledoit-Wolf. The paper's choice, one pass of
first- and second-moment sums suffices (Ledoit-Wolf's shrinkage needs fourth moments about the mean, which raw
streaming sums give only through badly cancelling differences), and with fewer good images than d (a PIPED category
has 24) eps I keeps every inverse finite: directions the good images never varied in then weigh 1/eps, so a feature
leaving the good images' span scores high, which is what a detector on aligned parts wants.

With runtime.accelerate openvino the whole scoring path runs as one OpenVINO graph (graph.ScoringGraph).
"""

from __future__ import annotations

import hashlib
import logging

import torch
from pydantic import Field
from tqdm import tqdm

from stream_ad.backbones import Backbone, load_backbone
from stream_ad.runtime.accelerate import Features, OpenVino, accelerate_backbone, openvino_graph
from stream_ad.scorers.base import FitBatches, NotFittedError, Scorer, ScorerContext, ScorerParams, Scores
from stream_ad.scorers.components.moments import StreamingMoments
from stream_ad.scorers.padim.graph import ScoringGraph, as_rows, embedding, scores
from stream_ad.scorers.registry import register_scorer

log = logging.getLogger(__name__)


class PadimParams(ScorerParams):
    # Channels kept of the stacked taps, chosen at random (the paper's d; 100 of its ResNet-18's 448). The default
    # taps of mobilenet_v2 have 128; all are kept when there are no more than d. Cost grows with d^2 per position.
    d: int = Field(100, ge=1)
    # Added to each covariance's diagonal before it is inverted (the paper's 0.01; see the module docstring).
    covariance_eps: float = Field(0.01, gt=0.0)
    blur_sigma: float = Field(4.0, ge=0.0)
    # Seeds the channel subset (the artefact stores the channels chosen).
    seed: int = 0

    scoring = frozenset({"blur_sigma"})
    # The channels, means and inverse covariances they shape are the artefact's state: a loaded model scores with
    # those, whatever a pipeline file says.
    not_scoring = frozenset({"d", "covariance_eps", "seed"})


def choose_channels(total: int, d: int, seed: int) -> torch.Tensor:
    """d of `total` channel numbers, sorted, drawn without replacement from a generator seeded by `seed` (all when
    total <= d)."""
    if total <= d:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:d].sort().values


@register_scorer("padim")
class Padim(Scorer):
    Params = PadimParams
    params: PadimParams
    nonnegative_scores = True  # distances

    def __init__(self, params: PadimParams, context: ScorerContext) -> None:
        super().__init__(params, context)
        self.backbone: Backbone = load_backbone(context.backbone, context.device)
        self.features: Features = accelerate_backbone(
            self.backbone, context.device, context.input_size, context.accelerate
        )
        # Fitted state: channels (d,) int64; mean (h, w, d) and inv_covariance (h, w, d, d) float32, on the device.
        self.channels: torch.Tensor | None = None
        self.mean: torch.Tensor | None = None
        self.inv_covariance: torch.Tensor | None = None
        self._graph: OpenVino | None = None  # runtime.accelerate openvino: the whole scoring path in one graph

    def backbone_identity(self) -> dict[str, str]:
        return self.backbone.identity()

    @torch.inference_mode()
    def _taps(self, batch: torch.Tensor) -> list[torch.Tensor]:
        return [t.to(self.context.device) for t in self.features(batch.to(self.context.device))]

    @torch.inference_mode()
    def fit(self, batches: FitBatches) -> None:
        moments = StreamingMoments()
        channels: torch.Tensor | None = None
        grid: tuple[int, int] = (0, 0)
        for batch in tqdm(batches, desc="features", unit="batch", mininterval=1.0):
            # Tile mode makes a batch of frames many more inputs: the backbone takes a served batch at a time.
            for inputs in batch.split(self.context.accelerate.max_batch):
                taps = self._taps(inputs)
                if channels is None:
                    channels = choose_channels(sum(t.shape[1] for t in taps), self.params.d, self.params.seed)
                    channels = channels.to(self.context.device)
                emb = embedding(taps, channels)
                grid = (emb.shape[-2], emb.shape[-1])
                moments.add(as_rows(emb).cpu())
        if channels is None or moments.count < 2:
            raise ValueError(f"PaDiM needs at least 2 good images to fit a covariance; got {moments.count}")
        d = len(channels)
        # Inverted in float64 (a small eps makes it ill-conditioned), stored as float32: within 1e-4 of the largest
        # entry of numpy's inverse (tests/scorers/padim).
        eye = torch.eye(d, dtype=torch.float64)
        inverse = torch.linalg.inv(moments.covariance() + self.params.covariance_eps * eye)
        self._set_state(channels.cpu(), moments.mean().float().view(*grid, d), inverse.float().view(*grid, d, d))

    def _set_state(self, channels: torch.Tensor, mean: torch.Tensor, inv_covariance: torch.Tensor) -> None:
        device = self.context.device
        self.channels, self.mean, self.inv_covariance = channels.to(device), mean.to(device), inv_covariance.to(device)
        if self.features.path == "openvino":
            self._graph = self._openvino_graph()

    def _flat_state(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """channels (d,), mean (P, d), inv_covariance (P, d, d), as the scoring functions take them."""
        if self.channels is None or self.mean is None or self.inv_covariance is None:
            raise NotFittedError("PaDiM has no Gaussians: fit() or load it first")
        d = self.channels.shape[0]
        return self.channels, self.mean.reshape(-1, d), self.inv_covariance.reshape(-1, d, d)

    def scoring_graph(self, quantised: bool = False) -> ScoringGraph:
        """Backbone, channel subset, Mahalanobis distances and map as one module (graph.ScoringGraph): what
        runtime.accelerate openvino compiles, and what `stream-ad export` writes (quantised or not)."""
        return ScoringGraph(self.backbone, *self._flat_state(), self.params.blur_sigma)

    def graph_constants(self) -> dict[str, str]:
        """ScoringGraph's buffers, as the OpenVINO converter names them. The means are not among them: the converter
        turns the subtraction into an addition of the negated means, an unnamed constant (h * w, d). A refit reaches a
        compiled graph by exporting again, never by editing constants in the IR."""
        return {
            "self.channels": "the channels kept of the stacked taps (d,) int64",
            "self.inv_covariance": "each grid position's inverse regularised covariance (h * w, d, d) float32, "
                                   "row-major over the grid",
        }

    def _openvino_graph(self) -> OpenVino:
        channels, mean, inverse = self._flat_state()
        state = hashlib.sha256()
        for t in (channels, mean, inverse):
            state.update(t.cpu().numpy().tobytes())
        graph = {"scorer": "padim", "state_sha256": state.hexdigest(), "blur_sigma": self.params.blur_sigma}
        compiled = openvino_graph(self.scoring_graph(), self.backbone, self.context.input_size,
                                  self.context.accelerate, graph)
        log.info("PaDiM scores through one OpenVINO graph (backbone, %d Gaussians of %d channels, map)",
                 mean.shape[0], channels.shape[0])
        return compiled

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.channels is None or self.mean is None or self.inv_covariance is None:
            raise NotFittedError("PaDiM has no Gaussians: fit() it first")
        return {"channels": self.channels.cpu(), "mean": self.mean.cpu(), "inv_covariance": self.inv_covariance.cpu()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self._set_state(tensors["channels"].long(), tensors["mean"].float(), tensors["inv_covariance"].float())

    def parallel_calls(self) -> int:
        return 1 if self._graph is None else self._graph.requests.streams

    @torch.inference_mode()
    def score(self, batch: torch.Tensor) -> Scores:
        channels, mean, inverse = self._flat_state()
        if self._graph is not None:
            image, maps = self._graph(batch)
            return Scores(image=image, maps=maps)
        image, maps = scores(self._taps(batch), channels, mean, inverse, (batch.shape[-2], batch.shape[-1]),
                             self.params.blur_sigma)
        return Scores(image=image.to(batch.device), maps=maps.to(batch.device))
