"""Per-position mean and covariance of features in one streaming pass: running sums and outer-product sums, so memory
is fixed by the grid and the feature size, never by the number of images."""

from __future__ import annotations

import torch


class StreamingMoments:
    """Accumulates (N, P, d) feature rows (N samples at each of P positions) into per-position sums in float64.

    float64: the covariance is recovered as (sum x x^T - n m m^T) / (n - 1), a difference of two large sums that
    cancels catastrophically in float32 once n reaches the thousands of tiles a tile-mode fit sees.
    """

    def __init__(self) -> None:
        self.count = 0
        self._sum: torch.Tensor | None = None  # (P, d)
        self._outer: torch.Tensor | None = None  # (P, d, d)

    def add(self, rows: torch.Tensor) -> None:
        x = rows.detach().to(torch.float64)
        s, outer = x.sum(dim=0), torch.einsum("npi,npj->pij", x, x)
        if self._sum is None or self._outer is None:
            self._sum, self._outer = s, outer
        else:
            self._sum += s
            self._outer += outer
        self.count += x.shape[0]

    def mean(self) -> torch.Tensor:
        """(P, d) float64."""
        if self._sum is None:
            raise ValueError("no samples were added")
        return self._sum / self.count

    def covariance(self) -> torch.Tensor:
        """(P, d, d) float64, unbiased (divided by n - 1, as numpy.cov)."""
        if self._outer is None or self.count < 2:
            raise ValueError(f"a covariance needs at least 2 samples per position; got {self.count}")
        m = self.mean()
        cov = (self._outer - self.count * m.unsqueeze(2) * m.unsqueeze(1)) / (self.count - 1)
        return (cov + cov.transpose(1, 2)) / 2  # exactly symmetric despite rounding
