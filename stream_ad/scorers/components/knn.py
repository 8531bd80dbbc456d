"""Exact nearest neighbours in PatchCore's memory bank, behind one interface with two backends.

- faiss: IndexFlatL2 (on the GPU when the device is CUDA and faiss was built with GPU support).
- torch: the memory bank resident on the scorer's device; squared distances by one matmul per chunk of queries
  (||q||^2 - 2 q.m + ||m||^2) and top-k. No host round trip on a GPU.
- auto: faiss-gpu on CUDA where installed, else torch on CUDA; on the CPU torch for small searches and faiss for
  large ones: on the 2-core CPU measured, torch took half faiss-cpu's time for one 224 px frame's 784 queries,
  faiss half torch's per frame for batches of 8 frames (docs/pipeline.md, "Accelerated inference").

Both return squared L2 distances in float32 as computed by the expansion, which cancels near 0; PatchCore recomputes
the winning distance exactly, so only the neighbour indices matter (equal up to ties and float32 rounding).
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

import faiss
import numpy as np
import torch

log = logging.getLogger(__name__)

KnnBackend = Literal["auto", "faiss", "torch"]
# Elements of one (queries x memory) distance block: 64 Mi float32 = 256 MiB, whatever the bank's size.
BLOCK_ELEMENTS = 1 << 26
# From this many queries on, auto on the CPU hands a search to faiss (crossover measured between 784 and 6272).
CPU_FAISS_FROM_QUERIES = 2048


class KnnIndex(Protocol):
    backend: str

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) queries -> squared distances (N, k) and memory indices (N, k) int64, on the memory's device."""


class FaissKnn:
    backend = "faiss"

    def __init__(self, memory: torch.Tensor) -> None:
        self.device = memory.device
        index = faiss.IndexFlatL2(memory.shape[1])
        if memory.device.type == "cuda" and hasattr(faiss, "StandardGpuResources"):
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), memory.device.index or 0, index)
            self.backend = "faiss-gpu"
        index.add(memory.detach().float().cpu().contiguous().numpy())
        self.index = index

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        dist, idx = self.index.search(queries.detach().float().cpu().contiguous().numpy(), k)
        # faiss answers -1 where no distance is finite (features or bank overflowing float32): a NaN distance to
        # item 0 instead, so the score comes out NaN (counted as bad_score) rather than an index error.
        missing = idx < 0
        dist[missing], idx[missing] = np.nan, 0
        return torch.from_numpy(dist).to(self.device), torch.from_numpy(idx).to(self.device)


class TorchKnn:
    backend = "torch"

    def __init__(self, memory: torch.Tensor) -> None:
        self.memory = memory.float().contiguous()
        self.sq_norms = (self.memory * self.memory).sum(dim=1)  # (M,), reused by every search
        # -2 m folded in once. A plain matmul then an in-place add: addmm with a broadcast bias ran 2-3x slower
        # on the CPU (measured).
        self._scaled = self.memory * -2.0

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        queries = queries.to(self.memory.device, torch.float32)
        rows = max(1, BLOCK_ELEMENTS // self.memory.shape[0])
        dists, idxs = [], []
        for start in range(0, queries.shape[0], rows):
            q = queries[start : start + rows]
            # ||m||^2 - 2 q.m; ||q||^2 is constant per row, so it is added after the top-k.
            d = (q @ self._scaled.T).add_(self.sq_norms)
            if k == 1:
                best, idx = d.min(dim=1, keepdim=True)
            else:
                best, idx = d.topk(k, dim=1, largest=False)
            dists.append((best + (q * q).sum(dim=1, keepdim=True)).clamp_min_(0.0))
            idxs.append(idx)
        return torch.cat(dists), torch.cat(idxs)


class CpuKnn:
    """auto on the CPU: each search goes to the backend measured faster for its size (same results either way)."""

    backend = "torch+faiss"

    def __init__(self, memory: torch.Tensor) -> None:
        self.small, self.large = TorchKnn(memory), FaissKnn(memory)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.large if queries.shape[0] >= CPU_FAISS_FROM_QUERIES else self.small
        return index.search(queries, k)


def has_faiss_gpu() -> bool:
    return hasattr(faiss, "StandardGpuResources")


def choose_backend(wanted: KnnBackend, device: torch.device) -> tuple[str, str]:
    """The backend to use ("faiss", "torch" or "cpu-split") and why."""
    if wanted != "auto":
        return wanted, "asked for (scorer.params.knn)"
    if device.type == "cuda" and has_faiss_gpu():
        return "faiss", "auto: CUDA device and faiss with GPU support"
    if device.type == "cuda":
        return "torch", "auto: CUDA device, faiss without GPU support: torch matmul/top-k with the bank on the device"
    return "cpu-split", f"auto on the CPU: torch below {CPU_FAISS_FROM_QUERIES} queries per search, faiss from there"


def build_knn(memory: torch.Tensor, wanted: KnnBackend = "auto") -> KnnIndex:
    """An exact L2 index over `memory` (M, D), on `memory`'s device."""
    backend, why = choose_backend(wanted, memory.device)
    kinds = {"faiss": FaissKnn, "torch": TorchKnn, "cpu-split": CpuKnn}
    index: KnnIndex = kinds[backend](memory)
    log.info("PatchCore kNN: %s over %d x %d memory on %s (%s)", index.backend, *memory.shape, memory.device, why)
    return index


def grown_neighbours(memory: torch.Tensor, neighbours: torch.Tensor, index: KnnIndex) -> torch.Tensor:
    """Each item's k nearest items (itself, or a duplicate, first) in a grown bank, `memory` (M, D): its first rows
    the bank before, whose k nearest were `neighbours` (old, k), the rest added; `index` searches the grown bank.

    An old item's list changes only where an added item is nearer than its k-th, so only the added items are searched
    against the whole bank, and only the old items with an added one that near are ranked again: 8-17 ms for 5-40
    added items where a search of the whole bank against itself took 0.30 s (9,136 items, 2 cores). Those items rank
    their old and new candidates by distances recomputed directly, the old ones first among equals: equal to a search
    of the whole bank up to ties and float32 rounding, as the backends are."""
    old, k = neighbours.shape
    base, added = memory[:old], memory[old:]
    if added.shape[0] == 0:
        return neighbours
    kth = torch.linalg.vector_norm(base - memory[neighbours[:, -1]], dim=1).square()
    near, nearest = TorchKnn(added).search(base, min(k, added.shape[0]))
    # Squared distances by the expansion round off by about float32's epsilon times the norms: a margin keeps every
    # item an added one may enter (one ranked again needlessly only costs its recomputation).
    rounding = 1e-5 * (base.square().sum(dim=1) + added.square().sum(dim=1).max())
    again = torch.nonzero(near[:, 0] <= kth * 1.01 + rounding).view(-1)
    grown = neighbours.clone()
    rows = max(1, BLOCK_ELEMENTS // ((k + nearest.shape[1]) * memory.shape[1]))
    for chunk in again.split(rows):
        candidates = torch.cat([neighbours[chunk], nearest[chunk] + old], dim=1)
        dist = torch.linalg.vector_norm(base[chunk].unsqueeze(1) - memory[candidates], dim=2)
        grown[chunk] = candidates.gather(1, torch.sort(dist, dim=1, stable=True).indices[:, :k])
    return torch.cat([grown, index.search(added, k)[1]])
