"""Greedy k-center coreset (PatchCore, Roth et al. 2022, Alg. 1) on randomly projected features.

Memory stays O(N): each step needs only the distance of every point to the newest centre, as one matrix-vector
product against the projected features, and a running minimum. No N x N matrix is ever formed.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm


def random_projection(features: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Johnson-Lindenstrauss projection to `dim` dimensions (identity when already that small)."""
    if features.shape[1] <= dim:
        return features
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], dim, generator=gen, dtype=features.dtype) / math.sqrt(dim)
    return features @ matrix.to(features.device)


def greedy_coreset(
    features: torch.Tensor, ratio: float, projection_dim: int, seed: int, progress: bool = True
) -> torch.Tensor:
    """Indices (K,) into `features` (N, D) of a k-center coreset with K = ceil(ratio * N)."""
    n = features.shape[0]
    k = max(1, min(n, math.ceil(ratio * n)))
    z = random_projection(features, projection_dim, seed).contiguous()
    sq_norms = (z * z).sum(dim=1)
    gen = torch.Generator().manual_seed(seed)
    current = int(torch.randint(n, (1,), generator=gen))
    min_dist = torch.full((n,), float("inf"), dtype=z.dtype, device=z.device)
    selected = torch.empty(k, dtype=torch.long)
    scratch = torch.empty(n, dtype=z.dtype, device=z.device)
    for i in tqdm(range(k), desc="coreset", unit="centre", disable=not progress, mininterval=1.0):
        selected[i] = current
        # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2, written in place to keep each step a single pass over z.
        torch.mv(z, z[current], out=scratch)
        scratch.mul_(-2.0).add_(sq_norms).add_(sq_norms[current])
        torch.minimum(min_dist, scratch, out=min_dist)
        current = int(torch.argmax(min_dist))
    return selected
