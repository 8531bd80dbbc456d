"""PatchCore's scoring math as pure torch functions, and the whole scoring path as one module for graph compilers.

The functions are shared by the two ways PatchCore scores:
- step by step (model.PatchCore.score): backbone path of runtime.accelerate, then a KnnIndex (faiss or torch);
- as one graph (ScoringGraph): backbone, neighbourhood pooling, nearest memory item by one matmul and an argmin,
  reweighting, map upsampling and blur, converted whole by OpenVINO. A CPU line PC then makes one call per batch with
  no torch work between calls: measured on 2 cores, torch's OpenMP threads spinning after small torch ops took the
  cores from OpenVINO's next call (backbone 6.5 ms alone, 10.5 ms with the kNN in torch between calls).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stream_ad.scorers.smoothing import gaussian_blur


def patch_embedding(taps: list[torch.Tensor], patch_size: int, embedding_dim: int | None) -> torch.Tensor:
    """Locally aware patch features (B, D, h, w) at the first tap's resolution (paper, Sec. 3.1)."""
    p = patch_size
    size = taps[0].shape[-2:]
    feats = []
    for t in taps:
        t = F.avg_pool2d(t, kernel_size=p, stride=1, padding=p // 2, count_include_pad=False) if p > 1 else t
        if t.shape[-2:] != size:
            t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
        feats.append(t)
    emb = torch.cat(feats, dim=1)
    if embedding_dim is not None and embedding_dim < emb.shape[1]:
        b, d, h, w = emb.shape
        flat = emb.permute(0, 2, 3, 1).reshape(-1, 1, d)
        emb = F.adaptive_avg_pool1d(flat, embedding_dim).reshape(b, h, w, -1).permute(0, 3, 1, 2)
    return emb


def as_queries(emb: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) patch features -> (B * h * w, D) contiguous float32 rows, row-major over the patch grid."""
    return emb.permute(0, 2, 3, 1).reshape(-1, emb.shape[1]).float().contiguous()


def scores_from_neighbours(
    queries: torch.Tensor,
    nn_idx: torch.Tensor,
    memory: torch.Tensor,
    neighbours: torch.Tensor,
    grid: tuple[int, int, int],
    out_size: tuple[int, int],
    blur_sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image scores (B,) and maps (B, H, W) from each patch's nearest memory item.

    queries (B*h*w, D); nn_idx (B*h*w,) their nearest memory rows; neighbours (M, b): each memory item's b nearest
    items (itself first); grid (B, h, w). Gathers only, no advanced indexing, so graph exporters keep B dynamic.
    """
    b, h, w = grid
    d = queries.shape[1]
    # The kNN distance ||q||^2 + ||m||^2 - 2 q.m cancels badly near 0 in float32 (errors ~0.04 measured);
    # the distance to the found neighbour, recomputed directly, is exact.
    dist = torch.linalg.vector_norm(queries - memory.index_select(0, nn_idx), dim=1).view(b, h * w)

    # Reweighting (Eq. 7): s = (1 - softmax over N_b(m*) of ||m_test* - m||, at m*) * s*.
    s_star, best = dist.max(dim=1)
    m_test = queries.view(b, h * w, d).gather(1, best.view(b, 1, 1).expand(b, 1, d))  # (B, 1, D)
    m_star = nn_idx.view(b, h * w).gather(1, best.view(b, 1)).view(b)
    support = memory.index_select(0, neighbours.index_select(0, m_star).view(-1)).view(b, -1, d)  # m* first
    weight = 1.0 - torch.softmax(torch.linalg.vector_norm(support - m_test, dim=2), dim=1)[:, 0]

    maps = F.interpolate(dist.view(b, 1, h, w), size=out_size, mode="bilinear", align_corners=False)
    return weight * s_star, gaussian_blur(maps, blur_sigma)[:, 0]


class ScoringGraph(nn.Module):
    """Input batch (B, 3, S, S) -> (image scores (B,), maps (B, S, S)): PatchCore's whole scoring path, exact kNN
    against the bank by one matmul (the torch kNN's expansion) and an argmin."""

    def __init__(self, backbone: nn.Module, memory: torch.Tensor, neighbours: torch.Tensor, patch_size: int,
                 embedding_dim: int | None, blur_sigma: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("memory", memory.float().contiguous())
        self.register_buffer("neighbours", neighbours.contiguous())
        self.register_buffer("scaled", memory.float() * -2.0)  # -2 m folded in once
        self.register_buffer("sq_norms", (memory.float() ** 2).sum(dim=1))
        self.register_buffer("item_numbers", torch.arange(memory.shape[0]))
        self.patch_size, self.embedding_dim, self.blur_sigma = patch_size, embedding_dim, blur_sigma

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = patch_embedding(self.backbone(x), self.patch_size, self.embedding_dim)
        b, _, h, w = emb.shape
        queries = as_queries(emb)
        dist = queries @ self.scaled.T + self.sq_norms  # ||q||^2 is the same for every item: left out
        # argmin as two reductions: OpenVINO runs argmin as a TopK, measured 9 ms of a 25 ms graph on one core.
        # The lowest item number reaching the minimum is what argmin returns.
        hit = dist == dist.amin(dim=1, keepdim=True)
        nn_idx = torch.where(hit, self.item_numbers, self.item_numbers.shape[0]).amin(dim=1)
        return scores_from_neighbours(queries, nn_idx, self.memory, self.neighbours, (b, h, w),
                                      (x.shape[-2], x.shape[-1]), self.blur_sigma)
