"""Greedy k-center coreset: the fast selection against the plain algorithm, the k-center property, edge cases."""

from __future__ import annotations

import math

import pytest
import torch

from stream_ad.scorers.components import coreset
from stream_ad.scorers.components.coreset import greedy_coreset, random_projection


def plain_greedy(features: torch.Tensor, ratio: float, projection_dim: int, seed: int) -> torch.Tensor:
    """The oracle: PatchCore's greedy k-center, one full distance update per centre."""
    n = features.shape[0]
    k = max(1, min(n, math.ceil(ratio * n)))
    z = random_projection(features, projection_dim, seed).contiguous()
    sq_norms = (z * z).sum(dim=1)
    gen = torch.Generator().manual_seed(seed)
    current = int(torch.randint(n, (1,), generator=gen))
    min_dist = torch.full((n,), float("inf"), dtype=z.dtype)
    selected = torch.empty(k, dtype=torch.long)
    scratch = torch.empty(n, dtype=z.dtype)
    for i in range(k):
        selected[i] = current
        torch.mv(z, z[current], out=scratch)
        scratch.mul_(-2.0).add_(sq_norms).add_(sq_norms[current])
        torch.minimum(min_dist, scratch, out=min_dist)
        current = int(torch.argmax(min_dist))
    return selected


def gaussian_mixture(n: int, dim: int, clusters: int, seed: int) -> torch.Tensor:
    """Clusters of different spreads and sizes, far from the origin like CNN features."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=gen) * 4.0 + 10.0
    spreads = torch.rand(clusters, generator=gen) * 1.5 + 0.2
    weights = torch.rand(clusters, generator=gen) + 0.2
    labels = torch.multinomial(weights, n, replacement=True, generator=gen)
    return centres[labels] + torch.randn(n, dim, generator=gen) * spreads[labels, None]


def uniform(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def mixture() -> torch.Tensor:
    return gaussian_mixture(20_000, 32, clusters=40, seed=0)


def test_mixture_selection_equals_the_plain_algorithm(mixture: torch.Tensor) -> None:
    expected = plain_greedy(mixture, 0.05, 128, seed=3)
    assert torch.equal(greedy_coreset(mixture, 0.05, 128, seed=3, progress=False), expected)


def test_uniform_selection_equals_the_plain_algorithm() -> None:
    # 64 dimensions projected to 32: the random projection is part of what must match.
    features = uniform(20_000, 64, seed=1)
    expected = plain_greedy(features, 0.03, 32, seed=0)
    assert torch.equal(greedy_coreset(features, 0.03, 32, seed=0, progress=False), expected)


def test_screens_that_skip_real_updates_are_caught(mixture: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The equality tests have teeth: margins that shrink the bounds (losing exactness) change the selection."""
    monkeypatch.setattr(coreset, "_rounding_tolerance", lambda dim, dtype: -0.05)
    expected = plain_greedy(mixture, 0.02, 128, seed=3)
    assert not torch.equal(greedy_coreset(mixture, 0.02, 128, seed=3, progress=False), expected)


def test_k_center_covering_property(mixture: torch.Tensor) -> None:
    """Each pick is the farthest point: no point is farther from the first K-1 centres than the K-th was when
    picked, and those pick distances never increase."""
    selected = greedy_coreset(mixture, 0.01, 128, seed=5, progress=False)
    points = mixture.double()
    centres = points[selected]
    at_pick = torch.tensor([torch.cdist(centres[i : i + 1], centres[:i]).min() for i in range(1, len(selected))])
    slack = 1e-4 * float(at_pick.max())  # the selection itself runs in float32
    assert torch.all(at_pick[1:] <= at_pick[:-1] + slack)
    covering = torch.cat([torch.cdist(chunk, centres[:-1]).min(dim=1).values for chunk in points.split(4096)])
    assert float(covering.max()) <= float(at_pick[-1]) + slack
    assert len(set(selected.tolist())) == len(selected)


def test_one_centre_is_the_seeded_start(mixture: torch.Tensor) -> None:
    selected = greedy_coreset(mixture, 1e-9, 128, seed=7, progress=False)
    assert selected.tolist() == plain_greedy(mixture, 1e-9, 128, seed=7).tolist()
    assert len(selected) == 1


@pytest.mark.parametrize("n", [1, 37, 512])
def test_every_point_selected_when_k_is_n(n: int) -> None:
    features = gaussian_mixture(n, 8, clusters=4, seed=n)
    selected = greedy_coreset(features, 1.0, 128, seed=0, progress=False)
    assert sorted(selected.tolist()) == list(range(n))
    assert torch.equal(selected, plain_greedy(features, 1.0, 128, seed=0))
