"""Prometheus metrics of the pipeline, served on one /metrics endpoint by the supervisor.

Stage processes write their metrics through prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by
the supervisor for each child): per-stage processing time, queue wait, batch size, queue depth, sink errors. The
supervisor keeps the pipeline-wide accounting itself (it is the one place that sees every frame's fate): frames in,
scored, dropped by reason, end-to-end latency, score distribution, alarms, camera up/stale, stage restarts and
hangs. Its /metrics handler merges its own registry with the children's files, so a restarted stage's counts are kept.

All histograms are in seconds (batch size and score excepted).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PREFIX = "stream_ad"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from 0.5 ms (a ZeroMQ hop) to 30 s (a stalled pipeline).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                   1.5, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128)
# Anomaly scores, as multiples of the decision threshold (buckets scale with it).
SCORE_BUCKET_FACTORS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0)


# Counted by the stages (their inputs) and the supervisor (its notice socket); /metrics shows one family.
REJECTED_PEERS = (f"{PREFIX}_rejected_peers_total",
                  "Handshakes refused or failed on a tcp socket (CURVE)", ["stage", "reason"])


class StageMetrics:
    """One stage process's metrics (multiprocess mode). Import only in a process whose environment names the
    multiprocess folder: prometheus_client picks its storage when first imported."""

    def __init__(self, stage: str) -> None:
        if not os.environ.get(MULTIPROC_ENV):
            raise RuntimeError(f"stage metrics need {MULTIPROC_ENV}; the supervisor sets it for each stage")
        from prometheus_client import Counter, Gauge, Histogram

        self.stage = stage
        self.processing = Histogram(
            f"{PREFIX}_stage_processing_seconds", "Time a stage function spent on one batch", ["stage"],
            buckets=LATENCY_BUCKETS,
        ).labels(stage)
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds", "Time a frame waited in front of a stage (transport + queue)", ["stage"],
            buckets=LATENCY_BUCKETS,
        ).labels(stage)
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Frames per batch a stage processed (dynamic batching)", ["stage"],
            buckets=BATCH_BUCKETS,
        ).labels(stage)
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Frames waiting in a stage's bounded input queue", ["stage"],
            multiprocess_mode="livesum",
        ).labels(stage)
        self.queue_capacity = Gauge(
            f"{PREFIX}_queue_capacity", "Bound of a stage's input queue", ["stage"], multiprocess_mode="livemax"
        ).labels(stage)
        self._sink_errors = Counter(f"{PREFIX}_sink_errors_total", "Verdicts a sink failed to write", ["sink"])
        self.rejected_peers = Counter(*REJECTED_PEERS)

    def sink_error(self, sink: str, verdicts: int) -> None:
        self._sink_errors.labels(sink).inc(verdicts)


class SupervisorMetrics:
    """The supervisor's own metrics, in a registry of their own (never in the multiprocess files)."""

    def __init__(self, thresholds: Mapping[str, float] | None = None) -> None:
        """thresholds: camera -> its model's decision threshold (the score buckets scale with each)."""
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames_in = Counter(f"{PREFIX}_frames_in_total", "Frames read from the camera", ["camera"], registry=r)
        self.frames_scored = Counter(
            f"{PREFIX}_frames_scored_total", "Frames that reached a verdict", ["camera"], registry=r
        )
        self.frames_dropped = Counter(
            f"{PREFIX}_frames_dropped_total", "Frames dropped, by stage and reason", ["camera", "stage", "reason"],
            registry=r,
        )
        self.in_flight = Gauge(f"{PREFIX}_frames_in_flight", "Frames read but not yet scored or dropped", registry=r)
        self.latency = Histogram(
            f"{PREFIX}_end_to_end_latency_seconds", "Capture timestamp to verdict", ["camera"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        scales = {t for t in (thresholds or {}).values() if t > 0}
        buckets: Sequence[float] = (
            tuple(round(t * f, 6) for t in scales for f in SCORE_BUCKET_FACTORS) if scales
            else (0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 20, 50)
        )
        self.score = Histogram(
            f"{PREFIX}_anomaly_score", "Anomaly scores of scored frames", ["camera"], buckets=sorted(set(buckets)),
            registry=r,
        )
        self.alarms = Counter(f"{PREFIX}_alarms_total", "Frames judged anomalous", ["camera"], registry=r)
        self.threshold = Gauge(f"{PREFIX}_decision_threshold", "Score above which a frame is an anomaly", ["camera"],
                               registry=r)
        for camera, threshold in (thresholds or {}).items():
            self.threshold.labels(camera).set(threshold)
        self.camera_up = Gauge(f"{PREFIX}_camera_up", "1 while the camera delivers frames", ["camera"], registry=r)
        self.camera_stale = Gauge(
            f"{PREFIX}_camera_stale", "1 while no frame arrived for source.stale_after_s", ["camera"], registry=r
        )
        self.camera_reconnects = Counter(
            f"{PREFIX}_camera_reconnects_total", "Times the source reconnected to its camera", ["camera"], registry=r
        )
        self.restarts = Counter(
            f"{PREFIX}_stage_restarts_total", "Stage processes restarted after dying", ["stage"], registry=r
        )
        self.calibration_mismatch = Gauge(
            f"{PREFIX}_calibration_mismatch",
            "1 when the first frames' scores differ from those the threshold was calibrated on "
            "(pipeline.calibration_check)", ["camera"], registry=r,
        )
        self.stage_up = Gauge(f"{PREFIX}_stage_up", "1 while a stage process runs and is ready", ["stage"], registry=r)
        self.rejected_peers = Counter(*REJECTED_PEERS, registry=r)
        self.rejected_notices = Counter(
            f"{PREFIX}_rejected_notices_total", "Notices refused as impossible: a frame id outside the run's window, "
            "a source_done not from the source's process", ["reason"], registry=r,
        )
        self.reloads = Counter(
            f"{PREFIX}_reloads_total", "Reloads of the pipeline file (SIGHUP), by result: applied or refused",
            ["result"], registry=r,
        )
        for result in ("applied", "refused"):
            self.reloads.labels(result)
        self.hangs = Counter(
            f"{PREFIX}_stage_hangs_total", "Stage processes killed as hung: no heartbeat for "
            "pipeline.supervisor.hung_after_s", ["stage"], registry=r
        )


class _MergedRegistry:
    """What /metrics shows: the supervisor's registry and the stages' multiprocess files."""

    def __init__(self, own: Any, multiproc_dir: Path) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.own = own
        self.stages = CollectorRegistry()
        MultiProcessCollector(self.stages, path=str(multiproc_dir))

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        # A family both sides count (refused peers) is shown once: the text format allows one per name.
        families: dict[str, Any] = {}
        for family in (*self.own.collect(), *self.stages.collect()):
            if family.name in families:
                families[family.name].samples.extend(family.samples)
            else:
                families[family.name] = family
        yield from families.values()


class MetricsServer:
    """/metrics over HTTP on a background thread (port 0 picks a free one: see .port)."""

    def __init__(self, own_registry: Any, multiproc_dir: Path, host: str, port: int) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        merged = _MergedRegistry(own_registry, multiproc_dir)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics here")
                    return
                try:
                    body = generate_latest(merged)  # type: ignore[arg-type]
                except Exception as exc:  # noqa: BLE001 - a half-written file of a dying stage: answer 500, not crash
                    self.send_error(500, f"collecting metrics failed: {exc}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: Prometheus scrapes often
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def mark_stage_dead(multiproc_dir: Path, pid: int) -> None:
    """Forget a dead stage's live gauges (its counters and histograms stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(multiproc_dir))
