"""The summary's latency percentiles in fixed memory: accurate to the stated relative error, max exact, and no growth
over ten million verdicts."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from stream_ad.pipeline.latency_sketch import LOWEST_S, RELATIVE_ACCURACY, LatencySketch
from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.plan import RunIdentity
from stream_ad.pipeline.summary import summarise


def _within(got: float, want: float) -> bool:
    return abs(got - want) <= RELATIVE_ACCURACY * want + LOWEST_S


def test_quantiles_are_within_the_stated_accuracy_and_max_is_exact() -> None:
    rng = np.random.default_rng(7)
    # Latencies as a line sees them: mostly tens of ms, a long tail, a few sub-microsecond and day-long outliers.
    samples = np.concatenate([rng.lognormal(np.log(0.03), 0.8, 50_000), [0.0, 5e-7, 2e5]])
    sketch = LatencySketch()
    for s in samples.tolist():
        sketch.add(s)
    for q in (0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0):
        want = float(np.percentile(samples, q * 100, method="lower"))
        assert _within(sketch.quantile(q), want), (q, sketch.quantile(q), want)
    assert sketch.max == samples.max() == sketch.quantile(1.0) and sketch.count == samples.size
    assert sketch.summary_ms()["mean"] == pytest.approx(samples.mean() * 1000.0, rel=1e-9)
    assert LatencySketch().summary_ms() == {}


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def _feed_ten_million(samples: list[float]) -> tuple[int, dict[str, float], list[int]]:
    """In a process of its own: a test worker's other threads (left by earlier tests) move its RSS by megabytes."""
    ledger = Ledger()
    now = 1000.0
    for fid in range(3):  # the ledger's own path: verdicts of 10, 20 and 30 ms
        ledger.on_in("cam0", fid, now)
        ledger.on_done("cam0", fid, now, now + 0.01 * (fid + 1), 1.0, "ok")
    rss = []
    for _ in range(10):  # 10 million samples into the latency record the ledger keeps for the summary
        for s in samples:
            ledger.latency["cam0"].add(s)
        rss.append(_rss_bytes())
    lat = summarise(ledger, thresholds={"cam0": 1.0}, run=RunIdentity("r", 0), wall_s=1.0, restarts={},
                    batch_size_mean=None, metrics_url=None).latency_ms
    return ledger.latency["cam0"].count, lat, rss


def test_ledger_latency_memory_stays_flat_over_ten_million_verdicts() -> None:
    samples = np.random.default_rng(3).lognormal(np.log(0.05), 0.5, 1_000_000).tolist()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        count, lat, rss = pool.submit(_feed_ten_million, samples).result(timeout=300)
    assert count == 10_000_003
    # A list of every sample would grow by 72 MB over the last nine million; the sketch grows by nothing.
    assert rss[-1] - rss[0] < 8 * 2**20, [r // 2**20 for r in rss]
    assert _within(lat["p50"] / 1000, float(np.percentile(samples, 50, method="lower")))
    assert _within(lat["p99"] / 1000, float(np.percentile(samples, 99, method="lower")))
    assert lat["max"] == max(samples) * 1000.0
