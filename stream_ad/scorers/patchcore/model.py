"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Locally aware patch features from two mid-level backbone taps -> greedy coreset memory bank -> exact kNN (faiss or
torch, stream_ad.scorers.patchcore.knn) with the bank resident on the scorer's device.
Image score: the largest patch distance, reweighted by how isolated its nearest memory item is (paper, Eq. 7).
Map: patch distances, upsampled to the input and Gaussian-smoothed (sigma 4).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from tqdm import tqdm

from stream_ad.backbones import Backbone, load_backbone
from stream_ad.backbones.accelerate import Features, accelerate_backbone
from stream_ad.scorers.base import (
    FitBatches,
    NotFittedError,
    Scorer,
    ScorerContext,
    ScorerParams,
    Scores,
    register_scorer,
)
from stream_ad.scorers.patchcore.coreset import greedy_coreset
from stream_ad.scorers.patchcore.knn import KnnIndex, build_knn
from stream_ad.scorers.smoothing import gaussian_blur


class PatchCoreParams(ScorerParams):
    coreset_ratio: float = Field(0.01, gt=0.0, le=1.0)
    # Dimension of the random projection the coreset search runs in (the memory bank keeps full features).
    projection_dim: int = Field(128, ge=8)
    # Neighbourhood aggregation: average pooling over p x p patches of each tap.
    patch_size: int = Field(3, ge=1)
    # Adaptive average pooling of the concatenated features to this many channels; None keeps them all.
    embedding_dim: int | None = Field(None, ge=8)
    # b in the paper's reweighting: nearest memory items of the best match used to judge its isolation.
    num_neighbors: int = Field(9, ge=1)
    blur_sigma: float = Field(4.0, ge=0.0)
    seed: int = 0
    # Nearest-neighbour backend; all give the same neighbours (ties aside). auto: see knn.choose_backend.
    knn: Literal["auto", "faiss", "torch"] = "auto"


@register_scorer("patchcore")
class PatchCore(Scorer):
    Params = PatchCoreParams
    params: PatchCoreParams

    def __init__(self, params: PatchCoreParams, context: ScorerContext) -> None:
        super().__init__(params, context)
        self.backbone: Backbone = load_backbone(context.backbone, context.device)
        self.features: Features = accelerate_backbone(
            self.backbone, context.device, context.input_size, context.accelerate
        )
        self.memory: torch.Tensor | None = None  # (M, D) float32 on the scorer's device
        self._index: KnnIndex | None = None
        self._neighbours: torch.Tensor | None = None  # (M, b) nearest memory items of each memory item

    def backbone_identity(self) -> dict[str, str]:
        return self.backbone.identity()

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Locally aware patch features (B, D, h, w) at the first tap's resolution."""
        p = self.params.patch_size
        taps = [t.to(batch.device) for t in self.features(batch)]
        size = taps[0].shape[-2:]
        feats = []
        for t in taps:
            t = F.avg_pool2d(t, kernel_size=p, stride=1, padding=p // 2, count_include_pad=False) if p > 1 else t
            if t.shape[-2:] != size:
                t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
            feats.append(t)
        emb = torch.cat(feats, dim=1)
        if self.params.embedding_dim is not None and self.params.embedding_dim < emb.shape[1]:
            b, d, h, w = emb.shape
            flat = emb.permute(0, 2, 3, 1).reshape(-1, 1, d)
            emb = F.adaptive_avg_pool1d(flat, self.params.embedding_dim).reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return emb

    def fit(self, batches: FitBatches) -> None:
        chunks = []
        for batch in tqdm(batches, desc="features", unit="batch", mininterval=1.0):
            emb = self.embed(batch.to(self.context.device))
            chunks.append(emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).float().cpu())
        features = torch.cat(chunks)
        del chunks
        idx = greedy_coreset(features, self.params.coreset_ratio, self.params.projection_dim, self.params.seed)
        self._set_memory(features[idx].contiguous())

    def _set_memory(self, memory: torch.Tensor) -> None:
        self.memory = memory.to(self.context.device)
        self._index = build_knn(self.memory, self.params.knn)
        b = min(self.params.num_neighbors, memory.shape[0])
        self._neighbours = self._index.search(self.memory, b)[1]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.memory is None:
            raise NotFittedError("PatchCore has no memory bank: fit() it first")
        return {"memory_bank": self.memory.cpu()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self._set_memory(tensors["memory_bank"].float().contiguous())

    @torch.inference_mode()
    def score(self, batch: torch.Tensor) -> Scores:
        if self._index is None or self.memory is None or self._neighbours is None:
            raise NotFittedError("PatchCore has no memory bank: fit() or load it first")
        emb = self.embed(batch.to(self.context.device))
        b, d, h, w = emb.shape
        queries = emb.permute(0, 2, 3, 1).reshape(-1, d).float().to(self.memory.device).contiguous()
        nn_idx = self._index.search(queries, 1)[1].view(-1)
        # The index returns ||q||^2 + ||m||^2 - 2 q.m, which cancels badly near 0 in float32 (errors ~0.04 measured);
        # recomputing the distance to the found neighbour directly costs one pass and is exact.
        dist = torch.linalg.vector_norm(queries - self.memory[nn_idx], dim=1).view(b, h * w)
        nn_idx = nn_idx.view(b, h * w)

        # Reweighting (Eq. 7): s = (1 - softmax over N_b(m*) of ||m_test* - m||, at m*) * s*.
        best = dist.argmax(dim=1)
        rows = torch.arange(b, device=dist.device)
        s_star = dist[rows, best]
        m_test = queries.view(b, h * w, d)[rows, best]  # (B, D)
        support = self.memory[self._neighbours[nn_idx[rows, best]]]  # (B, b, D); m* is its own nearest
        support_dist = torch.linalg.vector_norm(support - m_test[:, None, :], dim=2)
        weight = 1.0 - torch.softmax(support_dist, dim=1)[:, 0]
        image = weight * s_star

        maps = dist.view(b, 1, h, w).to(batch.device)
        maps = F.interpolate(maps, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        maps = gaussian_blur(maps, self.params.blur_sigma)[:, 0]
        return Scores(image=image.to(batch.device), maps=maps)
