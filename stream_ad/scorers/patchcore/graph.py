"""PatchCore's scoring math as pure torch functions, and the whole scoring path as one module for graph compilers.

The functions are shared by the two ways PatchCore scores:
- step by step (model.PatchCore.score): backbone path of runtime.accelerate, then a KnnIndex (faiss or torch);
- as one graph (scores_from_taps after the backbone): neighbourhood pooling, nearest distances by one matmul, a min
  per group of the bank and a direct recomputation, reweighting, map upsampling and blur, run by OpenVINO as one
  graph with the backbone (ScoringHead joined to the backbone's IR in the process, ScoringGraph whole for `stream-ad
  export`). A CPU line PC then makes one call per batch with no torch work between calls: measured on 2 cores,
  torch's OpenMP threads spinning after small torch ops took the cores from OpenVINO's next call (backbone 6.5 ms
  alone, 10.5 ms with the kNN in torch between calls).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stream_ad.scorers.components.maps import anomaly_maps, stack_taps


def patch_embedding(taps: list[torch.Tensor], patch_size: int, embedding_dim: int | None) -> torch.Tensor:
    """Locally aware patch features (B, D, h, w) at the first tap's resolution (paper, Sec. 3.1)."""
    p = patch_size
    pooled = [F.avg_pool2d(t, kernel_size=p, stride=1, padding=p // 2, count_include_pad=False) if p > 1 else t
              for t in taps]
    emb = stack_taps(pooled, taps[0].shape[-2:])
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
    """Image scores (B,) and maps (B, H, W) from each patch's nearest memory item (the step-by-step path).

    queries (B*h*w, D); nn_idx (B*h*w,) their nearest memory rows; neighbours (M, b): each memory item's b nearest
    items (itself first); grid (B, h, w).
    """
    b, h, w = grid
    # The kNN distance ||q||^2 + ||m||^2 - 2 q.m cancels badly near 0 in float32 (errors ~0.04 measured);
    # the distance to the found neighbour, recomputed directly, is exact.
    dist = torch.linalg.vector_norm(queries - memory.index_select(0, nn_idx), dim=1).view(b, h * w)
    s_star, best, m_test = worst_patch(queries, dist)
    m_star = nn_idx.view(b, h * w).gather(1, best.view(b, 1)).view(b)
    return reweighted(s_star, m_test, m_star, memory, neighbours), anomaly_maps(dist, grid, out_size, blur_sigma)


def worst_patch(queries: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image of dist (B, h*w): the largest patch distance s*, its patch number and its feature m_test (B, 1, D).
    Gathers only, no advanced indexing, so graph exporters keep B dynamic."""
    b, d = dist.shape[0], queries.shape[1]
    s_star, best = dist.max(dim=1)
    m_test = queries.view(b, -1, d).gather(1, best.view(b, 1, 1).expand(b, 1, d))
    return s_star, best, m_test


def reweighted(s_star: torch.Tensor, m_test: torch.Tensor, m_star: torch.Tensor, memory: torch.Tensor,
               neighbours: torch.Tensor) -> torch.Tensor:
    """Eq. 7: s = (1 - softmax over N_b(m*) of ||m_test - m||, at m*) * s*, with m* the memory item nearest m_test."""
    b, d = m_test.shape[0], m_test.shape[2]
    support = memory.index_select(0, neighbours.index_select(0, m_star).view(-1)).view(b, -1, d)  # m* first
    weight = 1.0 - torch.softmax(torch.linalg.vector_norm(support - m_test, dim=2), dim=1)[:, 0]
    return weight * s_star


# Groups the bank is searched in (ScoringGraph): each group's nearest item by the matmul expansion is a candidate,
# and the nearest candidate by a direct recomputation wins. A float32 graph searches one group: its expansion's
# argmin is the step-by-step path's nearest item (the kNN index's), and each further group's candidate costs its
# gather and recomputation (8 groups: 0.56 ms more a call in layers, 2 cores, AVX2, bank of 4,477). A graph whose
# search matmul is quantised (an INT8 export) searches 8: a patch's winner is the exact nearest item for all but
# 0.36 % of patches, against 0.79 % with 4 groups and 2.6 % with one (the quantisation emulated in float64 on 70
# magnetic_tile images).
FLOAT32_SEARCH_GROUPS = 1
QUANTISED_SEARCH_GROUPS = 8


BANK_NAMES = ("memory", "scaled", "sq_norms", "group_starts", "neighbours")  # bank_tensors', in order
BANK_TENSORS = len(BANK_NAMES)


def bank_tensors(memory: torch.Tensor, neighbours: torch.Tensor, groups: int) -> tuple[torch.Tensor, ...]:
    """What ScoringHead searches, from the bank (M, D) and each item's neighbours (M, b): the bank padded to `groups`
    groups of the search, -2 x it (folded in once), its rows' squared norms, each group's first row, the neighbours."""
    items = memory.shape[0]
    per_group = -(-items // groups)
    # The bank's last item repeated to fill the last group: a repeat is as near as the item itself, so a group
    # that holds repeats alone still offers a real item's distance.
    padded = memory.float().index_select(0, torch.arange(per_group * groups).clamp_max(items - 1)).contiguous()
    starts = torch.arange(groups) * per_group
    return padded, padded * -2.0, (padded**2).sum(dim=1), starts, neighbours.contiguous()


def scores_from_taps(taps: list[torch.Tensor], bank: tuple[torch.Tensor, ...], patch_size: int,
                     embedding_dim: int | None, blur_sigma: float, out_size: tuple[int, int]
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone taps and the bank (bank_tensors) -> (image scores (B,), maps (B, *out_size)): PatchCore's scoring after
    the backbone, as ScoringHead and ScoringGraph compute it.

    Every patch's distance to the bank comes from one matmul against the bank (the expansion ||m||^2 - 2 q.m), each of
    the bank's groups (bank_tensors; as many as group_starts has rows) giving its nearest item by that as a candidate,
    and the candidates' distances recomputed directly, the nearest winning. In float32 (one group) the candidate is
    the item the step-by-step path's kNN index finds (scores_from_neighbours), its distance recomputed as there: the
    expansion alone cancels in float32 where a patch lies on a bank item, which moved maps by up to 6.9e-4 of their
    scale (PIPED's PA_FLR01_TL), past the 1e-4 an export is checked to. In an INT8 export the matmul is quantised
    (runtime.quantise) and only picks candidates: a distance is always one to a real bank item, recomputed in
    float32, so the quantised search can only raise a patch's distance, never lower it. The argmin (a TopK) costs
    1.2 ms in a graph compiled for one image a call (PatchCore.images_per_call; 5.3 ms compiled for any batch),
    against 7-8 ms for the float32 matmul (2 cores, AVX2, bank of 4,477). Eq. 7's nearest item is found for each
    image's worst patch by an exact search of that one row."""
    memory, scaled, sq_norms, group_starts, neighbours = bank
    emb = patch_embedding(taps, patch_size, embedding_dim)
    b, d, h, w = emb.shape
    n = b * h * w
    queries = as_queries(emb)
    groups = group_starts.shape[0]  # a size of the graph's input, not a constant: the head serves any bank
    expansion = (queries @ scaled.T + sq_norms).view(n, groups, -1)
    candidates = expansion.min(dim=2).indices + group_starts  # (patches, groups)
    rows = memory.index_select(0, candidates.view(-1)).view(n, groups, d)
    # queries.view, not unsqueeze, and the worst patch against the bank's transpose below: as written, OpenVINO
    # runs them without layout reorders (0.45 ms an image less, one core).
    dist = torch.linalg.vector_norm(rows - queries.view(n, 1, d), dim=2).min(dim=1).values.view(b, h * w)
    _, _, m_test = worst_patch(queries, dist)
    items = memory[: neighbours.shape[0]]  # without the repeats: m* indexes each item's neighbours
    s_star, m_star = torch.linalg.vector_norm(m_test.transpose(1, 2) - items.T, dim=1).min(dim=1)  # exact
    return (reweighted(s_star, m_test, m_star, items, neighbours),
            anomaly_maps(dist, (b, h, w), out_size, blur_sigma))


class ScoringHead(nn.Module):
    """(taps..., *bank_tensors) -> (image scores (B,), maps (B, S, S)): scores_from_taps with the bank as inputs, so
    one conversion serves every bank: runtime.accelerate.openvino_head converts it once and puts each bank in as
    constants when it compiles (0.2 s, against 2.3 s to convert the whole graph again; 224 px, 2 cores), which lets a
    teaching swap banks while the line runs."""

    def __init__(self, patch_size: int, embedding_dim: int | None, blur_sigma: float, input_size: int) -> None:
        super().__init__()
        self.patch_size, self.embedding_dim, self.blur_sigma = patch_size, embedding_dim, blur_sigma
        self.input_size = input_size

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        taps, bank = list(inputs[:-BANK_TENSORS]), inputs[-BANK_TENSORS:]
        return scores_from_taps(taps, bank, self.patch_size, self.embedding_dim, self.blur_sigma,
                                (self.input_size, self.input_size))


class ScoringGraph(nn.Module):
    """Input batch (B, 3, S, S) -> (image scores (B,), maps (B, S, S)): PatchCore's whole scoring path, the backbone
    and scores_from_taps over the bank held as buffers, one module for `stream-ad export` (the networks' ops the
    only ones in a submodule, as runtime.quantise tells them apart)."""

    def __init__(self, backbone: nn.Module, memory: torch.Tensor, neighbours: torch.Tensor, patch_size: int,
                 embedding_dim: int | None, blur_sigma: float, groups: int) -> None:
        super().__init__()
        self.backbone = backbone
        for name, tensor in zip(BANK_NAMES, bank_tensors(memory, neighbours, groups), strict=True):
            self.register_buffer(name, tensor)
        self.patch_size, self.embedding_dim, self.blur_sigma = patch_size, embedding_dim, blur_sigma

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bank = tuple(getattr(self, name) for name in BANK_NAMES)
        return scores_from_taps(self.backbone(x), bank, self.patch_size, self.embedding_dim, self.blur_sigma,
                                (x.shape[-2], x.shape[-1]))
