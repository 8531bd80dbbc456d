"""The run's summary: frames in, verdicts, drops by reason, latency percentiles, batch size, restarts, for all cameras
together and a row per camera; as a table for the terminal and as JSON (`--summary`). Field names and table rows are
read by people, scripts and tests: keep them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_ad.pipeline.ledger import CameraFigures, Ledger
from stream_ad.pipeline.plan import RunIdentity


@dataclass(frozen=True)
class CameraRow:
    """One camera's row: in = scored + dropped + in flight (+ unaccounted), its threshold and latency."""

    camera: str
    frames_in: int
    scored: int
    alarms: int
    dropped: dict[str, int]  # by reason
    in_flight_at_end: int
    unaccounted: int
    latency_ms: dict[str, float]
    threshold: float | None

    @classmethod
    def of(cls, figures: CameraFigures, threshold: float | None) -> CameraRow:
        return cls(figures.camera, figures.frames_in, figures.scored, figures.alarms, figures.dropped,
                   figures.in_flight, figures.unaccounted, figures.latency_ms, threshold)

    def cells(self) -> list[str]:
        p99 = self.latency_ms.get("p99")
        return [self.camera, str(self.frames_in), str(self.scored), str(self.alarms), str(sum(self.dropped.values())),
                str(self.unaccounted), "-" if p99 is None else f"{p99:.1f}",
                "-" if self.threshold is None else f"{self.threshold:.4f}"]


@dataclass
class RunSummary:
    camera: str  # the cameras' names, comma-separated
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
    threshold: float | None  # the cameras' decision threshold (None: they differ: see `cameras`)
    metrics_url: str | None
    failure: str | None = None  # why the run stopped on its own (a stage's fatal error); None: it ended normally
    refused_notices: dict[str, int] = field(default_factory=dict)  # impossible notices (forged ids, source_done)
    cameras: list[CameraRow] = field(default_factory=list)  # a row per camera, in the pipeline's order
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
            ("decision threshold", "per camera" if self.threshold is None else f"{self.threshold:.4f}"),
            ("wall time", f"{self.wall_s:.1f} s"),
        ]
        if self.refused_notices:
            rows.append(("refused notices", ", ".join(f"{k} {v}" for k, v in sorted(self.refused_notices.items()))))
        if self.failure is not None:
            rows.append(("stopped by", self.failure))
        width = max(len(k) for k, _ in rows)
        many = len(self.cameras) > 1
        title = f"cameras {self.camera}" if many else f"camera {self.camera}"
        lines = [f"pipeline summary ({title}, run {self.run_id})", "-" * (width + 30)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        if many:
            lines += ["", *_columns([["camera", "in", "verdicts", "alarms", "dropped", "unaccounted", "p99 ms",
                                      "threshold"], *(row.cells() for row in self.cameras)])]
        return "\n".join(lines)


def _columns(cells: list[list[str]]) -> list[str]:
    """Rows of cells as aligned text: the first column left, the others right."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in cells]


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
    """The infer stages' mean batch size, from the stages' Prometheus multiprocess files (read before they go)."""
    try:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        reg = CollectorRegistry()
        MultiProcessCollector(reg, path=str(metrics_dir))
        total = count = 0.0
        for metric in reg.collect():
            if metric.name == "stream_ad_batch_size":
                for s in metric.samples:
                    if s.labels.get("stage", "").partition("-")[0] == "infer":  # each model's: infer-m1
                        if s.name.endswith("_sum"):
                            total += s.value
                        elif s.name.endswith("_count"):
                            count += s.value
        return total / count if count else None
    except Exception:  # noqa: BLE001 - a figure for the summary only
        return None


def summarise(ledger: Ledger, *, thresholds: dict[str, float], run: RunIdentity, wall_s: float,
              restarts: dict[str, int], batch_size_mean: float | None, metrics_url: str | None,
              failure: str | None = None) -> RunSummary:
    """`thresholds`: camera -> its decision threshold, every camera of the run (also those that gave no frame)."""
    read_span = (ledger.t_last_in or 0) - (ledger.t_first_in or 0)
    cameras = list(dict.fromkeys([*thresholds, *ledger.cameras]))
    shared = set(thresholds.values())
    return RunSummary(
        camera=", ".join(cameras),
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
        latency_ms=ledger.latency_ms(),
        batch_size_mean=batch_size_mean,
        threshold=shared.pop() if len(shared) == 1 else None,
        metrics_url=metrics_url,
        failure=failure,
        refused_notices={reason.value: n for reason, n in ledger.refused.items()},
        cameras=[CameraRow.of(ledger.camera_figures(cam), thresholds.get(cam)) for cam in cameras],
    )
