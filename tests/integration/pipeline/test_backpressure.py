"""A fast camera in front of a slow scorer: the camera keeps its rate, bounded queues drop the oldest frames, every
frame is accounted for, and a real Prometheus server scrapes it all from the pipeline's one /metrics endpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    free_port,
    read_jsonl,
    start_cli,
    wait_for,
    write_pipeline,
)

CAMERA_FPS = 40.0
DURATION_S = 10.0
DELAY_MS = 150.0  # the infer stage's added delay per batch: a scorer far slower than the camera


class Prometheus:
    def __init__(self, workdir: Path, target_port: int, config: str | None = None) -> None:
        """Scrapes 127.0.0.1:target_port each second, or runs `config` (a prometheus.yml's text) as given."""
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.fail("the prometheus server is not installed: run scripts/setup.sh as root (Debian package)")
        self.port = free_port()
        config_path = workdir / "prometheus.yml"
        config_path.write_text(config or (
            "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n"
            "scrape_configs:\n"
            f"  - job_name: stream_ad\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        ))
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [exe, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, 60, "Prometheus to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {(self.log.name and Path(self.log.name).read_text())[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float:
        result = self.query(expr)
        assert result, f"no series for {expr}"
        return float(result[0]["value"][1])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@dataclass
class Run:
    summary: dict[str, Any]
    verdicts: list[dict[str, Any]]
    log: str
    live: dict[str, Any]  # what Prometheus had scraped while the pipeline ran
    prom: Prometheus


@pytest.fixture(scope="module")
def slow_run(model_without_threshold: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    work = tmp_path_factory.mktemp("backpressure")
    metrics_port = free_port()
    prom = Prometheus(work, metrics_port)
    try:
        cfg = write_pipeline(
            work / "slow.yaml", model_without_threshold, work,
            duration_s=DURATION_S,
            metrics={"port": metrics_port},
            source={"fps": CAMERA_FPS, "loop": True, "preload": True},
            infer={"delay_ms": DELAY_MS, "max_batch": 2, "max_wait_ms": 5, "queue_size": 4},
            decide={"threshold": 20.0},  # the model has none: the setting is used
        )
        summary_path = work / "summary.json"
        log = work / "run.log"
        proc = start_cli("run", str(cfg), "--summary", str(summary_path), log=log)
        try:
            # Let Prometheus scrape the running pipeline for a few seconds, then ask it.
            wait_for(lambda: prom.query('stream_ad_frames_scored_total{camera="cam0"} > 0'), 240,
                     "Prometheus to scrape verdicts from the pipeline")
            time.sleep(3)
            live = {
                "up": prom.value('up{job="stream_ad"}'),
                "in": prom.value('stream_ad_frames_in_total{camera="cam0"}'),
                "camera_up": prom.value('stream_ad_camera_up{camera="cam0"}'),
                "stages": {r["metric"]["stage"] for r in prom.query("stream_ad_stage_processing_seconds_count")},
                "queue_depth": {r["metric"]["stage"] for r in prom.query("stream_ad_queue_depth")},
            }
            rc = proc.wait(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        assert rc == 0, text[-4000:]
        yield Run(json.loads(summary_path.read_text()), read_jsonl(work / "verdicts.jsonl"), text, live, prom)
    finally:
        prom.close()


def test_the_camera_keeps_its_rate_and_every_frame_is_accounted_for(slow_run: Run) -> None:
    s = slow_run.summary
    # The reader was never held back by the slow scorer.
    assert s["source_fps"] == pytest.approx(CAMERA_FPS, rel=0.1)
    assert s["frames_in"] >= 0.85 * CAMERA_FPS * DURATION_S
    # Frames were dropped where the queue was full, and counted: in = scored + dropped, nothing unaccounted.
    assert s["dropped"].get("queue_full", 0) > 0
    assert s["frames_in"] == s["scored"] + s["dropped_total"]
    assert s["unaccounted"] == 0 and s["in_flight_at_end"] == 0
    assert len(slow_run.verdicts) == s["scored"] > 0
    # Drop-oldest keeps latency bounded by the queues, not by how long the run lasts.
    assert s["latency_ms"]["p50"] >= DELAY_MS
    assert s["latency_ms"]["max"] < 20_000


def test_infer_batches_dynamically_under_load(slow_run: Run) -> None:
    assert slow_run.summary["batch_size_mean"] > 1.5  # max_batch 2, always frames waiting


def test_prometheus_scraped_the_pipeline(slow_run: Run) -> None:
    live = slow_run.live
    assert live["up"] == 1 and live["in"] > 0 and live["camera_up"] == 1
    assert {"preprocess", "infer", "decide", "sink"} <= live["stages"]
    assert {"preprocess", "infer", "decide", "sink"} <= live["queue_depth"]
    prom, s = slow_run.prom, slow_run.summary
    # After the run the last scrape still holds (max_over_time looks past the staleness marker).
    scraped_in = prom.value('max_over_time(stream_ad_frames_in_total{camera="cam0"}[5m])')
    assert 0.5 * s["frames_in"] <= scraped_in <= s["frames_in"]
    dropped = prom.value('sum(max_over_time(stream_ad_frames_dropped_total{reason="queue_full"}[5m]))')
    assert 0 < dropped <= s["dropped"]["queue_full"]
    p99 = prom.value(
        "histogram_quantile(0.99, sum by (le) (max_over_time(stream_ad_end_to_end_latency_seconds_bucket[5m])))"
    )
    assert DELAY_MS / 1000 <= p99 < 30
    batch = prom.value('max_over_time(stream_ad_batch_size_sum{stage="infer"}[5m]) / '
                       'max_over_time(stream_ad_batch_size_count{stage="infer"}[5m])')
    assert 1.0 < batch <= 2.0
    assert prom.value('max_over_time(stream_ad_queue_wait_seconds_count{stage="infer"}[5m])') > 0
    assert prom.value('max_over_time(stream_ad_anomaly_score_count{camera="cam0"}[5m])') > 0
    assert prom.value("max_over_time(stream_ad_decision_threshold[5m])") == 20.0
    assert prom.query('max_over_time(stream_ad_alarms_total{camera="cam0"}[5m])')
    assert prom.value('max_over_time(stream_ad_stage_restarts_total{stage="infer"}[5m])') == 0
