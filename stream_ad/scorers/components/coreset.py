"""Greedy k-center coreset (PatchCore, Roth et al. 2022, Alg. 1) on randomly projected features.

The plain algorithm keeps every point's min-distance m(x) to the chosen centres and, after each pick, updates all N
of them with one matrix-vector product. This implementation selects the very same centres (bit for bit: see the
exactness note) while touching a small share of the points per step, with two exact shortcuts:

1. Lazy updates. m(x) only matters once it could be the largest. Only the points with m(x) >= L, for a level L a
   little below the current maximum M, are kept up to date ("active"); every other point has m(x) < L <= M, which
   later centres can only lower, so it cannot be the next pick. When M falls below L, L is lowered and the points
   whose stale m(x) reached the new level catch up on the centres they missed, then join. On PatchCore features M
   decreases slowly and m(x) spreads well below it, so after the first few hundred centres only 0.1-2 % of the
   points are active; catching up is batched over many centres, where matrix products are efficient.
2. Screening. A centre c can only lower m(x) if d(x, c)^2 < m(x). With y the coordinates along the top principal
   directions and rho_p(x) the norm of what the first p of them leave out,
       d(x, c)^2 >= sum_{i<=p} (y_i(x) - y_i(c))^2 + (rho_p(x) - rho_p(c))^2,
   a lower bound in p + 1 dimensions. Per step, a fused faiss range search applies it with p = D/8 to the active
   points (a(x) = sqrt(T - m(x)), for a ceiling T >= m, turns the per-point threshold into one radius:
   ||(u(x), a(x)) - (u(c), 0)||^2 < T), and its survivors are screened again with p = D/4; when catching up, one
   matrix product scores all (point, missed centre) pairs with p = D/4. Only the survivors are computed exactly.

Exactness: the bounds are widened by more than float rounding can bridge, so they never skip a point whose m(x) the
plain algorithm would change, even by one ulp; exact distances use the plain algorithm's own arithmetic (see
_ROW_BLOCK), and ties go to the lowest index, as torch.argmax does.

Memory stays O(N): the projected features, N x (D/4 + 2) screening coordinates (and a packed copy of the active
ones), a few vectors of length N; no N x N matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import faiss
import numpy as np
import torch
from tqdm import tqdm

# Principal directions per feature dimension in the first screen (a fused pass over all active points) and in the
# second (on the first's survivors only): more makes a bound tighter and its pass slower.
_SCREEN_FRACTION = 8
_REFINE_FRACTION = 4
# The active level L is this fraction of the largest m(x) when it is set: lower keeps more points active and
# re-levels less often. 0.9 keeps 0.1-2 % of PatchCore's points active after the first few hundred centres.
_LEVEL = 0.9
# Rows used to estimate the principal directions; any orthonormal directions keep the result exact.
_PCA_SAMPLE = 65536
# Rows processed at once when building the screens and when updating exactly: bounds the temporaries.
_CHUNK = 65536
# BLAS matrix-vector kernels compute rows in fixed-size blocks and leftover rows with another kernel whose rounding
# differs (MKL: blocks of 4). Exact updates use row counts that are a multiple of this, so every row's dot product
# rounds as it does in one product over all N rows.
_ROW_BLOCK = 16
# Pairs (point, missed centre) scored at once when catching up, and surviving pairs held before they are computed:
# bound the temporaries (the second also sets how many matrix-vector products a catch-up takes).
_PAIR_CHUNK = 1 << 21
_PAIR_BUDGET = 1 << 22


def random_projection(features: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Johnson-Lindenstrauss projection to `dim` dimensions (identity when already that small)."""
    if features.shape[1] <= dim:
        return features
    gen = torch.Generator().manual_seed(seed)
    matrix = torch.randn(features.shape[1], dim, generator=gen, dtype=features.dtype) / math.sqrt(dim)
    return features @ matrix.to(features.device)


def _principal_coordinates(z: torch.Tensor, p1: int, p2: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The screens' coordinates as float32, built in float64 so that the bounds hold to ~1e-12.

    With y the coordinates along the principal directions (largest variance first): first (N, p1 + 1) =
    (y_1..y_p1, rho_p1); second (N, p2 - p1 + 1) = (y_p1+1..y_p2, rho_p2).
    """
    gen = torch.Generator().manual_seed(seed)
    sample = z[torch.randperm(z.shape[0], generator=gen)[:_PCA_SAMPLE]].double()
    mean = sample.mean(dim=0)
    centred = sample - mean
    # Eigenvectors of the scatter matrix, largest first (its scale does not matter, so one sample is fine too).
    directions = torch.linalg.eigh(centred.T @ centred).eigenvectors.flip(1)[:, :p2]
    first = torch.empty(z.shape[0], p1 + 1, dtype=torch.float32)
    second = torch.empty(z.shape[0], p2 - p1 + 1, dtype=torch.float32)
    for start in range(0, z.shape[0], _CHUNK):
        stop = start + _CHUNK
        centred = z[start:stop].double() - mean
        y = centred @ directions
        # ||residual||^2 = ||x - mean||^2 - ||y||^2 exactly, as the directions are orthonormal.
        residual = (centred.square().sum(dim=1, keepdim=True) - y.square().cumsum(dim=1)).clamp_(min=0.0).sqrt_()
        first[start:stop, :p1] = y[:, :p1]
        first[start:stop, p1] = residual[:, p1 - 1]
        second[start:stop, :-1] = y[:, p1:]
        second[start:stop, -1] = residual[:, -1]
    return first, second


def _rounding_tolerance(dim: int, dtype: torch.dtype) -> float:
    """Bound on |computed - exact| squared distance of length-`dim` vectors, relative to the squared norms involved.

    Covers dot products and sums of length `dim` (gamma_dim each), the few additions around them and the rounding
    of the inputs, doubled for slack.
    """
    return 2.0 * (3 * dim + 8) * torch.finfo(dtype).eps


@dataclass
class _Points:
    """Some of the points, with their first-screen coordinates and a(x) packed for faiss."""

    ids: torch.Tensor  # (S,) increasing indices into the features
    screen: np.ndarray  # (S, p1 + 2) float32: u(x), then a(x) = sqrt(T - m(x))


class _KCenter:
    """The state of the greedy selection: m(x) for all points, the screens and the exactness margins."""

    def __init__(self, z: torch.Tensor, seed: int) -> None:
        self.z = z
        self.sq_norms = (z * z).sum(dim=1)
        d = z.shape[1]
        p1 = max(1, d // _SCREEN_FRACTION)
        p2 = max(p1, d // _REFINE_FRACTION)
        self.first, self.second = _principal_coordinates(z, p1, p2, seed)
        self.rho = self.first[:, -1]  # rho_p1, swapped by the second screen for (y_p1+1..y_p2, rho_p2)
        # Every screened distance stays below (||u(x)||^2 + ||u(c)||^2 + T) times a small constant.
        self.u_sq = self.first.square().sum(dim=1) + self.second.square().sum(dim=1)
        self.bound_sq = self.u_sq - self.rho.square()  # ||(y_1..y_p2, rho_p2)||^2
        self.max_u_sq, self.max_sq = float(self.u_sq.max()), float(self.sq_norms.max())
        self.tol_u = _rounding_tolerance(p2 + 3, torch.float32)
        self.tol_z = _rounding_tolerance(d, z.dtype)
        self.min_dist = torch.full((z.shape[0],), float("inf"), dtype=z.dtype)
        self.ceiling = float("inf")  # T: at least every m(x) that a screen reads
        self.rows = torch.empty(_CHUNK, d, dtype=z.dtype)

    def pack(self, ids: torch.Tensor) -> _Points:
        """`ids` with their first-screen coordinates and a(x) from the current m(x) and T, contiguous for faiss."""
        screen = torch.empty(len(ids), self.first.shape[1] + 1, dtype=torch.float32)
        screen[:, :-1] = self.first[ids]
        screen[:, -1] = (self.ceiling - self.min_dist[ids]).float().sqrt_()
        return _Points(ids, screen.numpy())

    def margins(self, centres: int | torch.Tensor) -> torch.Tensor:
        """Widening of the screens for `centres`: their own rounding plus that of the exact distances they stand in
        for, bounded through the largest norms so that one value serves all points."""
        return self.tol_u * (self.max_u_sq + self.u_sq[centres] + abs(self.ceiling)) + self.tol_z * (
            self.max_sq + self.sq_norms[centres]
        ).float()

    def screen(self, points: _Points, centre: int) -> torch.Tensor:
        """Rows of `points` whose m(x) the centre might lower; for every other row it provably does not."""
        radius = self.ceiling + float(self.margins(centre))
        query = np.zeros((1, points.screen.shape[1]), dtype=np.float32)
        query[0, :-1] = self.first[centre].numpy()
        result = faiss.RangeSearchResult(1)
        faiss.range_search_L2sqr(
            faiss.swig_ptr(query), faiss.swig_ptr(points.screen), query.shape[1], 1, len(points.ids), radius, result
        )
        count = int(faiss.rev_swig_ptr(result.lims, 2)[1])
        if count == 0:
            return torch.empty(0, dtype=torch.long)
        rows = torch.from_numpy(faiss.rev_swig_ptr(result.labels, count).copy())
        first = torch.from_numpy(faiss.rev_swig_ptr(result.distances, count).copy())
        ids = points.ids[rows]
        # Second screen: swap the (rho_p1 difference)^2 term for the p2-direction terms.
        second = self.second.numpy()
        finer = np.empty(count, dtype=np.float32)
        faiss.fvec_L2sqr_by_idx(
            faiss.swig_ptr(finer), faiss.swig_ptr(second[centre]), faiss.swig_ptr(second),
            faiss.swig_ptr(ids.numpy()), second.shape[1], 1, count,
        )
        bound = first - (self.rho[ids] - self.rho[centre]).square_() + torch.from_numpy(finer)
        return rows[bound < radius]

    def catch_up(self, ids: torch.Tensor, since: torch.Tensor, centres: torch.Tensor) -> None:
        """Apply centres[since[x]:] to each point x of `ids`.

        Many points meet many centres here, so the p2-direction bound is scored for all pairs with one matrix
        product per chunk: pair (x, c) survives if ||u(x)||^2 - m(x) - 2 u(x).u(c) + ||u(c)||^2 < margin.
        """
        pair_points: list[torch.Tensor] = []
        pair_centres: list[torch.Tensor] = []
        for start in torch.unique(since).tolist():
            group, missed = ids[since == start], centres[start:]
            if len(missed) == 0:
                continue
            missed_u = self.bound_coordinates(missed)
            limit = self.margins(missed) - self.bound_sq[missed]
            for chunk in group.split(max(1, _PAIR_CHUNK // len(missed))):
                offset = (self.bound_sq[chunk] - self.min_dist[chunk].float())[:, None]
                scores = torch.addmm(offset, self.bound_coordinates(chunk), missed_u.T, alpha=-2.0)
                # numpy's nonzero is several times faster than torch's on these large, sparse masks.
                hits = torch.from_numpy(np.flatnonzero((scores < limit).numpy()))
                pair_points.append(chunk[hits // len(missed)])
                pair_centres.append(missed[hits % len(missed)])
                if sum(len(p) for p in pair_points) >= _PAIR_BUDGET:
                    self.exact_pairs(torch.cat(pair_points), torch.cat(pair_centres))
                    pair_points, pair_centres = [], []
        if pair_points:
            self.exact_pairs(torch.cat(pair_points), torch.cat(pair_centres))

    def exact_pairs(self, points: torch.Tensor, centres: torch.Tensor) -> None:
        """exact() for pairs (point, centre), one matrix-vector product per centre."""
        centres, order = centres.sort(stable=True)
        unique, counts = torch.unique_consecutive(centres, return_counts=True)
        # m(x) is a minimum, so the order in which centres reach a point does not matter.
        for centre, batch in zip(unique.tolist(), points[order].split(counts.tolist())):
            self.exact(batch, centre)

    def bound_coordinates(self, ids: torch.Tensor) -> torch.Tensor:
        """(y_1..y_p2, rho_p2) of `ids`: the second screen's bound as plain coordinates."""
        return torch.cat([self.first[ids, :-1], self.second[ids]], dim=1)

    def exact(self, ids: torch.Tensor, centre: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Update m(x) at `ids` exactly as the plain algorithm would; return which of `ids` decreased and to what."""
        count = len(ids)
        # Repeating an id is harmless (same value, same minimum) and keeps the row count a whole block.
        padded = torch.cat([ids, ids[-1:].expand(-count % _ROW_BLOCK)])
        dist = torch.empty(len(padded), dtype=self.z.dtype)
        for start in range(0, len(padded), _CHUNK):
            chunk = padded[start : start + _CHUNK]
            rows = torch.index_select(self.z, 0, chunk, out=self.rows[: len(chunk)])
            # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2, in the plain algorithm's order of operations.
            torch.mv(rows, self.z[centre], out=dist[start : start + len(chunk)])
        dist = dist[:count].mul_(-2.0).add_(self.sq_norms[ids]).add_(self.sq_norms[centre])
        changed = torch.nonzero(dist < self.min_dist[ids]).flatten()
        dist = dist[changed]
        self.min_dist[ids[changed]] = dist
        return changed, dist


def greedy_coreset(
    features: torch.Tensor, ratio: float, projection_dim: int, seed: int, progress: bool = True,
    total: int | None = None,
) -> torch.Tensor:
    """Indices (K,) into `features` (N, D) of a k-center coreset with K = ceil(ratio * total), at most N. Runs on the
    CPU. `total` (default N): how many rows `features` were sampled from, so that a coreset chosen among a subsample
    is as large as one chosen among all of them."""
    n = features.shape[0]
    k = max(1, min(n, math.ceil(ratio * (n if total is None else total))))
    state = _KCenter(random_projection(features, projection_dim, seed).cpu().contiguous(), seed)
    gen = torch.Generator().manual_seed(seed)
    current = int(torch.randint(n, (1,), generator=gen))

    # faiss's calls here are small (well under a millisecond each): OpenMP threads only add synchronisation, which
    # costs milliseconds per call when the cores are busy. The setting is per calling thread and restored below.
    faiss_threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return _select(state, k, current, progress)
    finally:
        faiss.omp_set_num_threads(faiss_threads)


def _select(state: _KCenter, k: int, current: int, progress: bool) -> torch.Tensor:
    """The greedy loop: `k` centres starting from `current`."""
    n = len(state.min_dist)
    m = state.min_dist
    selected = torch.empty(k, dtype=torch.long)
    # Centres a point has caught up on: all of selected[:caught_up[x]]. Active points are always fully caught up.
    caught_up = torch.ones(n, dtype=torch.long)
    active = torch.zeros(n, dtype=torch.bool)
    level = 0.0
    points = _Points(torch.empty(0, dtype=torch.long), np.empty((0, 0), dtype=np.float32))
    for i in tqdm(range(k), desc="coreset", unit="centre", disable=not progress, mininterval=1.0):
        selected[i] = current
        if i == 0:
            state.exact(torch.arange(n), current)  # every m(x) is still infinite
            top = float(m.max())
        else:
            rows = state.screen(points, current)
            changed, dist = state.exact(points.ids[rows], current)
            # a(x) follows m(x), so later screens stay as tight as when the points were packed.
            points.screen[rows[changed].numpy(), -1] = (state.ceiling - dist).float().sqrt_().numpy()
            values = m[points.ids]
            top = float(values.max())
        if i == 0 or top < level:
            # Re-level: T = the old level bounds every m(x) now (active ones are below it, stale ones were).
            state.ceiling = level if i > 0 else top
            level = _LEVEL * top if top > 0 else float("-inf")
            joining = torch.nonzero(~active & (m >= level)).flatten()
            state.catch_up(joining, caught_up[joining], selected[: i + 1])
            candidates = torch.cat([points.ids, joining])
            members = candidates[m[candidates] >= level].sort().values
            active[candidates] = False
            active[members] = True
            caught_up[candidates] = i + 1
            points = state.pack(members)
            values = m[points.ids]
        # All points with the largest m(x) are active, and members are sorted: the first maximum is torch.argmax's.
        current = int(points.ids[torch.argmax(values)])
    return selected
