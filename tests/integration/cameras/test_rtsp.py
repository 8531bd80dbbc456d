"""An RTSP camera: GStreamer's RTSP server on 127.0.0.1 serves a video made from data-set images; the pipeline reads
it with PyAV, goes stale and reconnects with exponential backoff when the camera dies, and resumes when it is back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import CATEGORY, DemoRun, free_port, read_jsonl, start_cli, wait_for, write_pipeline
from tests.sources.test_files import make_video

SERVER = Path(__file__).with_name("rtsp_server.py")


class RtspCamera:
    def __init__(self, video: Path, port: int, log: Path) -> None:
        self.video, self.port, self.log = video, port, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        try:
            import gi  # noqa: F401
        except ImportError:
            pytest.fail("PyGObject is missing: run scripts/setup.sh (pip 'PyGObject<3.51' + GStreamer RTSP packages)")
        self.proc = subprocess.Popen([sys.executable, str(SERVER), str(self.video), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=open(self.log, "a"), text=True)  # noqa: SIM115
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready"):
            self.stop()
            pytest.fail(f"the RTSP server did not start: {line!r} {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a camera that dies, not one that says goodbye
            self.proc.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"


def _metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_rtsp_camera_stale_reconnect_resume(demo_run: DemoRun, tmp_path: Path) -> None:
    from stream_ad.data import read_image

    images = [read_image(p) for p in sorted((CATEGORY / "test").rglob("*.png"))]
    video = make_video(tmp_path / "line.mp4", images * 6, fps=10)  # 38 s of camera, served in a loop
    camera = RtspCamera(video, free_port(), tmp_path / "rtsp_server.log")
    camera.start()
    metrics_port = free_port()
    verdict_log = tmp_path / "verdicts.jsonl"
    cfg = write_pipeline(
        tmp_path / "rtsp.yaml", demo_run.model, tmp_path,
        metrics={"port": metrics_port},
        source={"kind": "rtsp", "url": camera.url, "camera": "line1", "stale_after_s": 1.0, "read_timeout_s": 1.0,
                "open_timeout_s": 2.0, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0},
    )
    log = tmp_path / "run.log"
    proc = start_cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), log=log)
    up = 'stream_ad_camera_up{camera="line1"}'
    stale = 'stream_ad_camera_stale{camera="line1"}'
    try:
        wait_for(lambda: len(read_jsonl(verdict_log)) >= 10, 240, "verdicts from the RTSP camera")
        assert _metric(metrics_port, up) == 1 and _metric(metrics_port, stale) == 0

        camera.stop()
        died = time.time()
        wait_for(lambda: _metric(metrics_port, stale) == 1, 20, "the camera to be reported stale")
        assert _metric(metrics_port, up) == 0
        time.sleep(3)  # a few reconnect attempts against a closed port

        camera.start()
        back = time.time()
        wait_for(lambda: sum(v["t_capture"] > back for v in read_jsonl(verdict_log)) >= 10, 120,
                 "verdicts after the camera came back")
        assert _metric(metrics_port, up) == 1 and _metric(metrics_port, stale) == 0
        assert _metric(metrics_port, 'stream_ad_camera_reconnects_total{camera="line1"}') >= 1
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        camera.stop()
    text = log.read_text()
    assert rc == 0, text[-4000:]
    assert "camera line1 is stale" in text and "delivers frames again" in text
    # Exponential backoff: the waits between attempts double up to reconnect_max_s.
    waits = [float(w) for w in re.findall(r"(?:retrying|reconnecting) in ([0-9.]+) s", text)]
    assert waits[:3] == [0.2, 0.4, 0.8] and max(waits) == 1.0, waits
    verdicts = read_jsonl(verdict_log)
    gap = [v for v in verdicts if died + 0.5 < v["t_capture"] < back]
    assert not gap  # nothing was invented while the camera was away
    assert all(v["camera"] == "line1" and "url" in v for v in verdicts)
    scores = np.array([v["score"] for v in verdicts])
    assert np.isfinite(scores).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["unaccounted"] == 0 and summary["frames_in"] == summary["scored"] + summary["dropped_total"]
