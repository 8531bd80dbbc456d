"""Many cameras in one pipeline, with real processes: four cameras (three folders and the RTSP test server) at
different rates, two models (each loaded once, its cameras batched together), kill -9 of one camera's source, a
reload that adds a camera and removes another while the others run on, a reload of an invalid file refused, a reload
after the artefact behind a camera's model link changed (that model's stages only), and the ledger exact for each
camera."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import yaml

from tests.integration.cameras.test_rtsp import RtspCamera
from tests.integration.conftest import (
    CATEGORY,
    DemoRun,
    free_port,
    metric_sum,
    read_jsonl,
    running,
    scrape,
    stage_pids,
    wait_for,
    write_pipeline,
)
from tests.sources.test_files import make_video


def _folder(name: str, fps: float, model: Path) -> dict[str, Any]:
    return {"camera": name, "kind": "folder", "path": str(CATEGORY / "test"), "fps": fps, "loop": True,
            "model": str(model)}


def _by_camera(verdicts: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in verdicts:
        out[v["camera"]] = out.get(v["camera"], 0) + 1
    return out


def test_four_cameras_two_models_kill_one_source_and_reload(demo_run: DemoRun, tmp_path: Path) -> None:
    from stream_ad.data import read_image

    model_a = demo_run.model
    # Another artefact (another folder, another identity): served by stages of its own. Camera c and d name it
    # through a symlink, as a line switches models: pointed at a newer artefact, a reload restarts its cameras only.
    model_b, model_b2, link = tmp_path / "model-b", tmp_path / "model-b2", tmp_path / "model-b-current"
    shutil.copytree(model_a, model_b)
    shutil.copytree(model_a, model_b2)
    link.symlink_to(model_b)
    images = [read_image(p) for p in sorted((CATEGORY / "test").rglob("*.png"))[:12]]
    rtsp = RtspCamera(make_video(tmp_path / "line.mp4", images * 4, fps=10), free_port(), tmp_path / "rtsp.log")
    rtsp.start()
    cameras = [
        _folder("a", 8.0, model_a),
        _folder("b", 2.0, model_a),
        {"camera": "c", "kind": "rtsp", "url": rtsp.url, "model": str(link), "open_timeout_s": 5.0},
        _folder("d", 4.0, link),
    ]
    metrics_port = free_port()
    cfg = write_pipeline(tmp_path / "cameras.yaml", model_a, tmp_path, metrics={"port": metrics_port},
                         cameras=cameras, supervisor={"restart_backoff_s": 0.2})
    verdict_log = tmp_path / "verdicts.jsonl"
    summary_file = tmp_path / "summary.json"
    log = tmp_path / "run.log"

    def counts() -> dict[str, int]:
        return _by_camera(read_jsonl(verdict_log))

    try:
        with running(cfg, summary_file, log) as proc:
            wait_for(lambda: all(counts().get(c, 0) >= 5 for c in "abcd"), 300, "verdicts from all four cameras")
            pids = stage_pids(proc.pid)
            assert set(pids) == {"source-a", "source-b", "source-c", "source-d", "preprocess-m0", "infer-m0",
                                 "decide-m0", "preprocess-m1", "infer-m1", "decide-m1", "sink"}
            metrics = scrape(metrics_port)
            for camera in "abcd":
                assert metric_sum(metrics, "stream_ad_frames_in_total", f'camera="{camera}"') > 0
                assert metric_sum(metrics, "stream_ad_camera_up", f'camera="{camera}"') == 1
            # Each model's frames are batched across its cameras in its one infer stage.
            assert metric_sum(metrics, "stream_ad_batch_size_count", 'stage="infer-m0"') > 0
            assert metric_sum(metrics, "stream_ad_batch_size_count", 'stage="infer-m1"') > 0

            # kill -9 of camera b's source: the others go on, b is restarted and resumes.
            os.kill(pids["source-b"], signal.SIGKILL)
            killed = time.time()
            wait_for(lambda: {c for c in "acd" if sum(v["camera"] == c and v["t_capture"] > killed
                                                      for v in read_jsonl(verdict_log)) >= 5} == set("acd"),
                     60, "verdicts of the other cameras while b's source is dead")
            wait_for(lambda: sum(v["camera"] == "b" and v["t_capture"] > killed + 1 for v in read_jsonl(verdict_log))
                     >= 2, 90, "camera b back after its restart")
            before = stage_pids(proc.pid)
            assert before["source-b"] != pids["source-b"]

            # An invalid file is refused with the error; the line runs on.
            settings = yaml.safe_load(cfg.read_text())
            cfg.write_text(yaml.safe_dump({**settings, "pipeline": {**settings["pipeline"], "infer": {"max_bach": 4}}}))
            os.kill(proc.pid, signal.SIGHUP)
            wait_for(lambda: "reload refused" in log.read_text(), 30, "the invalid reload refused")
            assert "max_bach" in log.read_text()

            # Reload: d removed, e added (on model a); a, b, c and both models' stages run on untouched.
            settings["pipeline"]["cameras"] = [*cameras[:3], _folder("e", 5.0, model_a)]
            cfg.write_text(yaml.safe_dump(settings))
            reloaded = time.time()
            os.kill(proc.pid, signal.SIGHUP)
            wait_for(lambda: counts().get("e", 0) >= 5, 90, "verdicts from camera e")
            wait_for(lambda: "source-d" not in stage_pids(proc.pid), 30, "camera d's source stopped")
            after = stage_pids(proc.pid)
            for label in ("source-a", "source-b", "source-c", "preprocess-m0", "infer-m0", "decide-m0", "preprocess-m1",
                          "infer-m1", "decide-m1", "sink"):
                assert after[label] == before[label], f"{label} was restarted by the reload"
            d_after = [v for v in read_jsonl(verdict_log) if v["camera"] == "d" and v["t_capture"] > reloaded + 5]
            assert not d_after
            assert metric_sum(scrape(metrics_port), "stream_ad_reloads_total", 'result="applied"') == 1
            assert metric_sum(scrape(metrics_port), "stream_ad_reloads_total", 'result="refused"') == 1

            # The artefact behind camera c's link changes: c moves to new model stages (m2), m1's stop, m0's and
            # the other cameras run on.
            link.unlink()
            link.symlink_to(model_b2)
            switched = time.time()
            os.kill(proc.pid, signal.SIGHUP)
            wait_for(lambda: "infer-m1" not in stage_pids(proc.pid) and "infer-m2" in stage_pids(proc.pid), 120,
                     "camera c's new model up and the old one stopped")
            wait_for(lambda: sum(v["camera"] == "c" and v["t_capture"] > switched for v in read_jsonl(verdict_log))
                     >= 5, 60, "verdicts of camera c from its new model")
            final = stage_pids(proc.pid)
            for label in ("source-a", "source-b", "source-e", "infer-m0", "sink"):
                assert final[label] == after[label], f"{label} was restarted by the model switch"
            assert final["source-c"] != after["source-c"]
            os.kill(proc.pid, signal.SIGTERM)
            rc = proc.wait(timeout=90)
    finally:
        rtsp.stop()
    text = log.read_text()
    assert rc == 0, text[-4000:]
    assert "reload applied: cameras added: e; removed: d" in text
    assert "reload applied: restarted: c; models started: m2; models stopped: m1" in text
    summary = json.loads(summary_file.read_text())
    rows = {row["camera"]: row for row in summary["cameras"]}
    assert set(rows) == set("abcde") and summary["unaccounted"] == 0
    written = counts()
    for camera, row in rows.items():
        # The ledger exact for each camera: every frame read ends scored or dropped with a reason.
        assert row["frames_in"] == row["scored"] + sum(row["dropped"].values()) + row["in_flight_at_end"], row
        assert row["unaccounted"] == 0 and row["in_flight_at_end"] == 0, row
        assert written.get(camera, 0) == row["scored"], (camera, written, row)
    # The cameras that stayed through the reload lost no frame to it (a fast camera may only overflow its queue).
    for camera in "ace":
        assert set(rows[camera]["dropped"]) <= {"queue_full"}, rows[camera]
    assert summary["restarts"]["source-b"] >= 1
