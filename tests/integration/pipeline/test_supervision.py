"""Supervision with real processes: bad messages injected into a stage are counted and skipped, a stage killed with
SIGKILL is restarted and the pipeline resumes, a stage stopped with SIGSTOP is caught by its missing heartbeats,
killed and restarted, SIGTERM drains in-flight frames and exits cleanly within a bound."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stream_ad.pipeline.curve import make_keys
from tests.conftest import FaultFigures
from tests.integration.conftest import (
    CATEGORY,
    DemoRun,
    cli,
    free_port,
    free_port_range,
    metric_sum,
    pipeline_push,
    read_jsonl,
    running,
    scrape,
    stage_pids,
    wait_for,
    write_pipeline,
)

STOP_BOUND_S = 30.0  # drain_timeout_s 10 + stop_timeout_s 5, with room for a loaded 2-core machine
HUNG_AFTER_S = 3.0
CATCH_MARGIN_S = 3.0  # the supervisor's loop, a loaded 2-core machine


def _bad_messages() -> list[tuple[str, list[bytes]]]:
    """(frame, parts) of messages a broken or hostile sender could put on the wire."""
    def header(fid: int, shape: list[int], dtype: str = "uint8") -> bytes:
        return json.dumps({"v": 1, "id": fid, "cam": "inject", "ts": time.time(), "sent": time.time(),
                           "arrays": [["image", dtype, shape]]}).encode()

    img = np.zeros((32, 32, 3), np.uint8).tobytes()
    return [
        ("inject/9001", [header(9001, [32, 32, 3])]),  # truncated: the pixel buffer is missing
        ("inject/9002", [header(9002, [32, 32, 3]), img[:-100]]),  # corrupt payload: too few bytes
        ("inject/9003", [header(9003, [32, 32, 2]), np.zeros((32, 32, 2), np.uint8).tobytes()]),  # wrong shape
        ("inject/9004", [header(9004, [32, 32, 3], "float32"), np.zeros((32, 32, 3), np.float32).tobytes()]),
        ("<unknown>", [b"\x00\x01 definitely not a header", img]),
    ]


def test_bad_frames_kill_9_restart_and_sigterm_drain(demo_run: DemoRun, tmp_path: Path,
                                                    fault_figures: Callable[[FaultFigures], None]) -> None:
    base = free_port_range(6)
    metrics_port = free_port()
    verdict_log = tmp_path / "verdicts.jsonl"
    # The camera: the test images, and first of all a file that does not decode.
    folder = tmp_path / "camera"
    for p in sorted((CATEGORY / "test").rglob("*.png")):
        (folder / p.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / p.parent.name / p.name).symlink_to(p)
    (folder / "000_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 cut off")
    keys = tmp_path / "keys"
    make_keys(keys)
    cfg = write_pipeline(
        tmp_path / "line.yaml", demo_run.model, tmp_path,
        transport="tcp", tcp_base_port=base, keys_dir=str(keys),
        metrics={"port": metrics_port},
        source={"path": str(folder), "fps": 8, "loop": True, "preload": True},
        supervisor={"restart_backoff_s": 0.2},
    )
    log = tmp_path / "run.log"
    with running(cfg, tmp_path / "summary.json", log) as proc:
        wait_for(lambda: len(read_jsonl(verdict_log)) >= 5, 240, "the first verdicts")
        pids = stage_pids(proc.pid)
        assert set(pids) == {"source", "preprocess", "infer", "decide", "sink"}

        # 1. Bad messages straight into the preprocess stage's input (tcp://127.0.0.1:base+1), from a peer with the
        # pipeline's keys (a broken stage): past the handshake, the stage's own checks count and skip them.
        push = pipeline_push(keys, f"tcp://127.0.0.1:{base + 1}")
        for _, parts in _bad_messages():
            push.send_multipart(parts)
        push.close()
        wait_for(lambda: metric_sum(scrape(metrics_port), "stream_ad_frames_dropped_total", 'reason="bad_frame"') >= 5,
                 60, "the bad frames to be counted")
        assert stage_pids(proc.pid)["preprocess"] == pids["preprocess"]  # the stage did not crash

        # 2. kill -9 the infer stage: restarted, counted, and verdicts resume.
        os.kill(pids["infer"], signal.SIGKILL)
        killed_t = time.time()
        killed_at = max(v["frame_id"] for v in read_jsonl(verdict_log))
        new_pid = wait_for(lambda: stage_pids(proc.pid).get("infer") not in (None, pids["infer"])
                           and stage_pids(proc.pid)["infer"], 60, "the infer stage to be restarted")
        assert new_pid != pids["infer"]
        wait_for(lambda: max(v["frame_id"] for v in read_jsonl(verdict_log)) > killed_at + 5, 240,
                 "verdicts after the restart")
        recover_s = min(v["t_verdict"] for v in read_jsonl(verdict_log) if v["t_verdict"] > killed_t) - killed_t
        metrics = scrape(metrics_port)
        assert metric_sum(metrics, "stream_ad_stage_restarts_total", 'stage="infer"') == 1
        assert metric_sum(metrics, "stream_ad_stage_up", 'stage="infer"') == 1

        # 3. SIGTERM: in-flight frames drain, every stage exits, within the bound.
        os.kill(proc.pid, signal.SIGTERM)
        start = time.monotonic()
        rc = proc.wait(timeout=STOP_BOUND_S + 30)
        took = time.monotonic() - start
    text = log.read_text()
    assert rc == 0, text[-4000:]
    assert took < STOP_BOUND_S, f"stopping took {took:.1f} s"
    assert not any(stage_pids(proc.pid).values())  # no orphaned stage

    # Each bad message was logged by name and skipped.
    for frame, _ in _bad_messages():
        assert f"skipped bad frame {frame}" in text or f"skipped frame {frame}" in text, frame
    assert "died (signal 9)" in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    fault_figures(FaultFigures(
        "stage killed (kill -9 of infer), bad messages", "SIGKILL of the infer stage; 5 malformed messages into "
        "preprocess; SIGTERM of the run", f"{summary['frames_in']} in: {summary['scored']} scored, dropped "
        f"{summary['dropped']}, messages rejected {summary['rejected_messages']}; 1 restart",
        summary["unaccounted"], recover_s))
    first = summary["first_frame_id"]
    assert f"source: frame cam0/{first} dropped (decode_error): cannot decode image" in text
    assert "000_corrupt.png" in text
    assert summary["restarts"]["infer"] == 1
    assert summary["rejected_messages"] == {"bad_frame": 5}
    # Every camera frame is accounted for, across the restart and the shutdown.
    assert summary["unaccounted"] == 0 and summary["in_flight_at_end"] == 0
    assert summary["frames_in"] == summary["scored"] + summary["dropped_total"]
    assert summary["dropped"].get("shutdown", 0) == 0  # drained, not cut off
    verdicts = read_jsonl(verdict_log)
    ids = [v["frame_id"] for v in verdicts]
    assert len(ids) == len(set(ids)) == summary["scored"]
    # Frames lost inside the killed stage are counted as stage_restart, never silently gone.
    lost = set(range(first, first + summary["frames_in"])) - set(ids)
    assert len(lost) == summary["dropped_total"]
    assert summary["dropped"]["decode_error"] >= 1
    assert set(summary["dropped"]) <= {"decode_error", "stage_restart", "queue_full"}


def test_a_stopped_stage_is_caught_by_its_heartbeats_killed_and_restarted(
    demo_run: DemoRun, tmp_path: Path, fault_figures: Callable[[FaultFigures], None]
) -> None:
    """SIGSTOP of the infer stage: its process lives, but no heartbeat comes. Within hung_after_s (and a margin) the
    supervisor logs it once, marks it down, kills and restarts it; the frames it held count as stage_hung, the run
    goes on, and every frame is accounted for."""
    metrics_port = free_port()
    verdict_log = tmp_path / "verdicts.jsonl"
    cfg = write_pipeline(
        tmp_path / "line.yaml", demo_run.model, tmp_path,
        metrics={"port": metrics_port},
        source={"path": str(CATEGORY / "test"), "fps": 8, "loop": True, "preload": True},
        supervisor={"restart_backoff_s": 0.2, "hung_after_s": HUNG_AFTER_S},
    )
    log = tmp_path / "run.log"
    with running(cfg, tmp_path / "summary.json", log) as proc:
        wait_for(lambda: len(read_jsonl(verdict_log)) >= 5, 240, "the first verdicts")
        pids = stage_pids(proc.pid)
        os.kill(pids["infer"], signal.SIGSTOP)
        stopped_at = time.time()
        wait_for(lambda: "hung: no heartbeat" in log.read_text(), HUNG_AFTER_S + 60, "the hang to be caught",
                 interval=0.05)
        caught_at = time.time()
        assert metric_sum(scrape(metrics_port), "stream_ad_stage_up", 'stage="infer"') == 0  # the new one still loads
        wait_for(lambda: "stage infer is back" in log.read_text(), 120, "the infer stage to be back", interval=0.05)
        back_at = time.time()
        assert stage_pids(proc.pid)["infer"] != pids["infer"]
        after = wait_for(lambda: [v["t_verdict"] for v in read_jsonl(verdict_log) if v["t_verdict"] > caught_at],
                         120, "verdicts after the restart", interval=0.05)
        print(f"\nSIGSTOP of infer (hung_after_s {HUNG_AFTER_S:g}): hang logged after {caught_at - stopped_at:.2f} s, "
              f"stage back after {back_at - stopped_at:.2f} s, first verdict after {min(after) - stopped_at:.2f} s")
        assert caught_at - stopped_at < HUNG_AFTER_S + CATCH_MARGIN_S
        metrics = scrape(metrics_port)
        assert metric_sum(metrics, "stream_ad_stage_hangs_total", 'stage="infer"') == 1
        assert metric_sum(metrics, "stream_ad_stage_restarts_total", 'stage="infer"') == 1
        assert metric_sum(metrics, "stream_ad_stage_up", 'stage="infer"') == 1
        assert metric_sum(metrics, "stream_ad_stage_hangs_total") == 1  # no other stage counted as hung
        wait_for(lambda: len([v for v in read_jsonl(verdict_log) if v["t_verdict"] > caught_at]) >= 10, 120,
                 "the run to go on")
        os.kill(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=STOP_BOUND_S + 30)
    text = log.read_text()
    assert rc == 0, text[-4000:]
    hung = [line for line in text.splitlines() if "hung:" in line]
    assert len(hung) == 1 and f"stage infer (pid {pids['infer']}) hung: no heartbeat for" in hung[0], hung
    assert "killed; restarting in" in hung[0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    fault_figures(FaultFigures(
        "hung stage (SIGSTOP of infer)", f"SIGSTOP; hung_after_s {HUNG_AFTER_S:g}, caught after "
        f"{caught_at - stopped_at:.1f} s", f"{summary['frames_in']} in: {summary['scored']} scored, dropped "
        f"{summary['dropped']}; killed and restarted once", summary["unaccounted"], min(after) - stopped_at))
    assert summary["restarts"]["infer"] == 1 and summary["unaccounted"] == 0 and summary["in_flight_at_end"] == 0
    assert summary["frames_in"] == summary["scored"] + summary["dropped_total"]
    # What the stopped stage held is stage_hung; what could not wait meanwhile was dropped with its own reason.
    assert summary["dropped"].get("stage_hung", 0) >= 1, summary["dropped"]
    assert set(summary["dropped"]) <= {"stage_hung", "queue_full"}, summary["dropped"]
    ids = [v["frame_id"] for v in read_jsonl(verdict_log)]
    assert len(ids) == len(set(ids)) == summary["scored"]


def test_a_stage_that_cannot_start_stops_the_run_with_its_reason(demo_run: DemoRun, tmp_path: Path) -> None:
    broken = "tests.pipeline.stage_plugins:make_nothing"  # no such class: the stage process fails at start
    cfg = write_pipeline(
        tmp_path / "bad.yaml", demo_run.model, tmp_path, metrics={"enabled": False},
        stages=["source", "preprocess", "infer", broken, "decide", "sink"],
    )
    out = cli("run", str(cfg), timeout=300)
    assert out.returncode == 2
    assert "stage make_nothing failed to start" in out.stderr and "make_nothing" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_missing_camera_folder_is_reported_before_anything_starts(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream_ad.cli import main

    cfg = write_pipeline(tmp_path / "bad.yaml", demo_run.model, tmp_path, metrics={"enabled": False},
                         source={"path": str(tmp_path / "no_such_folder")})
    assert main(["run", str(cfg)]) == 2  # in-process: it fails before any stage process exists
    err = capsys.readouterr().err
    assert "image folder not found" in err and "no_such_folder" in err


def test_a_taken_metrics_port_is_named_and_nothing_is_left_behind(
    demo_run: DemoRun, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import socket
    import tempfile

    from stream_ad.cli import main

    # Where the run would make its folder: short, as /tmp is, since its ipc socket paths must fit in 107 bytes (a
    # folder under an xdist worker's tmp_path does not).
    scratch = Path(tempfile.mkdtemp(prefix="sa-"))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            cfg = write_pipeline(tmp_path / "p.yaml", demo_run.model, tmp_path, metrics={"port": port})
            assert main(["run", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert f"cannot serve /metrics on 127.0.0.1:{port}" in err and "pipeline.metrics.port" in err
        assert not list(scratch.glob("stream-ad-*"))  # its run folder was removed
    finally:
        shutil.rmtree(scratch)
