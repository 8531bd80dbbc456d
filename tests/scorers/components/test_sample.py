"""RowSample: a bounded, uniform random sample of rows streamed in chunks."""

from __future__ import annotations

import pytest
import torch

from stream_ad.scorers.components.sample import RowSample


def sampled(rows: torch.Tensor, capacity: int | None, chunk: int, seed: int = 0) -> RowSample:
    sample = RowSample(capacity, seed)
    for part in rows.split(chunk):
        sample.add(part)
    return sample


def test_without_capacity_every_row_is_kept_in_order() -> None:
    rows = torch.randn(50, 4)
    sample = sampled(rows, None, chunk=7)
    assert torch.equal(sample.rows(), rows) and sample.seen == 50


def test_a_capacity_above_the_rows_keeps_them_all() -> None:
    rows = torch.randn(50, 4)
    assert torch.equal(sampled(rows, 64, chunk=7).rows(), rows)


def test_the_sample_is_distinct_rows_of_the_input() -> None:
    rows = torch.arange(1000, dtype=torch.float32)[:, None].expand(1000, 3).contiguous()
    sample = sampled(rows, 100, chunk=64)
    assert sample.seen == 1000
    ids = sample.rows()[:, 0].long()
    assert len(ids) == 100 and len(torch.unique(ids)) == 100
    assert torch.equal(sample.rows(), rows[ids])


def test_every_row_is_equally_likely_wherever_it_arrives() -> None:
    """Over many seeds each of 200 rows is kept about capacity / 200 of the time: early rows (which filled the
    sample) and late ones (which had to displace others) alike."""
    n, capacity, seeds = 200, 20, 2000
    rows = torch.arange(n, dtype=torch.float32)[:, None]
    counts = torch.zeros(n)
    for seed in range(seeds):
        counts[sampled(rows, capacity, chunk=13, seed=seed).rows()[:, 0].long()] += 1
    share = counts / seeds
    assert share.mean() == pytest.approx(capacity / n)
    # Binomial(2000, 0.1): standard deviation 0.0067 per row, 0.0012 for a mean over 30 rows.
    assert share.min() > 0.06 and share.max() < 0.14
    assert share[:30].mean() == pytest.approx(0.1, abs=0.006)
    assert share[-30:].mean() == pytest.approx(0.1, abs=0.006)


def test_empty_is_an_error() -> None:
    with pytest.raises(ValueError, match="no rows"):
        RowSample(10, 0).rows()
