"""The run's summary: frames in, verdicts, drops by reason, latency percentiles, batch size, restarts; as a table for
the terminal and as JSON (`--summary`). Field names and table rows are read by people, scripts and tests: keep them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.plan import RunIdentity


@dataclass
class RunSummary:
    camera: str
    run_id: str
    first_frame_id: int  # the run's frames have ids from here on, without gaps
    wall_s: float
    frames_in: int
    scored: int
    alarms: int
    dropped: dict[str, int]
    rejected_messages: dict[str, int]  # messages that were not camera frames (injected, unreadable)
    in_flight_at_end: int
    unaccounted: int
    restarts: dict[str, int]
    source_fps: float
    verdict_fps: float
    latency_ms: dict[str, float]
    batch_size_mean: float | None
    threshold: float
    metrics_url: str | None
    failure: str | None = None  # why the run stopped on its own (a stage's fatal error); None: it ended normally
    refused_notices: dict[str, int] = field(default_factory=dict)  # impossible notices (forged ids, source_done)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "dropped_total": self.dropped_total}

    def table(self) -> str:
        lat = self.latency_ms
        rows = [
            ("frames in (camera)", f"{self.frames_in}  ({self.source_fps:.1f} fps read)"),
            ("verdicts", f"{self.scored}  ({self.verdict_fps:.1f} /s)"),
            ("alarms", f"{self.alarms}"),
            ("dropped", f"{self.dropped_total}" + (
                "  (" + ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) + ")" if self.dropped else "")),
            ("unaccounted", f"{self.unaccounted}"),
            ("rejected messages (not camera frames)", ", ".join(f"{k} {v}" for k, v in self.rejected_messages.items())
             or "0"),
            ("latency p50 / p90 / p99 / max",
             " / ".join(f"{lat.get(k, float('nan')):.1f}" for k in ("p50", "p90", "p99", "max")) + " ms"
             if lat else "-"),
            ("infer batch size (mean)", f"{self.batch_size_mean:.2f}" if self.batch_size_mean else "-"),
            ("stage restarts", ", ".join(f"{k} {v}" for k, v in self.restarts.items() if v) or "0"),
            ("decision threshold", f"{self.threshold:.4f}"),
            ("wall time", f"{self.wall_s:.1f} s"),
        ]
        if self.refused_notices:
            rows.append(("refused notices", ", ".join(f"{k} {v}" for k, v in sorted(self.refused_notices.items()))))
        if self.failure is not None:
            rows.append(("stopped by", self.failure))
        width = max(len(k) for k, _ in rows)
        lines = [f"pipeline summary (camera {self.camera}, run {self.run_id})", "-" * (width + 30)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        return "\n".join(lines)


def percentiles(latencies: np.ndarray) -> dict[str, float]:
    """Latencies in seconds -> p50 / p90 / p99 / max / mean in milliseconds ({} without any)."""
    if latencies.size == 0:
        return {}
    ms = latencies * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
    }


def infer_batch_mean(metrics_dir: Path) -> float | None:
    """The infer stage's mean batch size, from the stages' Prometheus multiprocess files (read before they go)."""
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        reg = CollectorRegistry()
        MultiProcessCollector(reg, path=str(metrics_dir))
        total = count = 0.0
        for metric in reg.collect():
            if metric.name == "stream_ad_batch_size":
                for s in metric.samples:
                    if s.labels.get("stage") == "infer":
                        if s.name.endswith("_sum"):
                            total += s.value
                        elif s.name.endswith("_count"):
                            count += s.value
        return total / count if count else None
    except Exception:  # noqa: BLE001 - a figure for the summary only
        return None


def summarise(ledger: Ledger, *, camera: str, run: RunIdentity, wall_s: float, restarts: dict[str, int],
              threshold: float, batch_size_mean: float | None, metrics_url: str | None,
              failure: str | None = None) -> RunSummary:
    read_span = (ledger.t_last_in or 0) - (ledger.t_first_in or 0)
    return RunSummary(
        camera=camera,
        run_id=run.run_id,
        first_frame_id=run.first_frame_id,
        wall_s=wall_s,
        frames_in=ledger.frames_in,
        scored=ledger.scored_from_camera,
        alarms=ledger.alarms,
        dropped=ledger.drops_by_reason(),
        rejected_messages=ledger.foreign_by_reason(),
        in_flight_at_end=ledger.in_flight,
        unaccounted=ledger.unaccounted,
        restarts=restarts,
        source_fps=(ledger.frames_in - 1) / read_span if read_span > 0 else 0.0,
        verdict_fps=ledger.scored / wall_s if wall_s > 0 else 0.0,
        latency_ms=ledger.latency.summary_ms(),
        batch_size_mean=batch_size_mean,
        threshold=threshold,
        metrics_url=metrics_url,
        failure=failure,
        refused_notices={reason.value: n for reason, n in ledger.refused.items()},
    )
