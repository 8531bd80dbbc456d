"""Fail closed, on a really full disk (a small tmpfs holding the run's output: the JSON lines log and the PLC outbox):
verdicts no sink could take durably are dropped as sink_error, never counted as scored, with nothing unaccounted;
safe_state tells a real Modbus PLC "inspection not available" and the line resumes once there is room; stop ends
the run with exit 2 and a summary that says why."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FaultFigures
from tests.full_disk import fill, small_tmpfs
from tests.integration.conftest import (
    DemoRun,
    free_port,
    read_jsonl,
    start_cli,
    wait_for,
    write_pipeline,
)
from tests.integration.plc.conftest import HERE, ServerProcess


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "4m") as where:
        yield where


@pytest.fixture
def plc(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    results = tmp_path / "plc.jsonl"
    server = ServerProcess([sys.executable, str(HERE / "modbus_plc.py"), str(port), str(results)], port,
                           tmp_path / "plc.log", results)
    server.start()
    yield server
    server.stop()


def _start(demo_run: DemoRun, tmp_path: Path, disk: Path, on_error: str,
           outputs: list[dict[str, Any]]) -> tuple[subprocess.Popen[bytes], Path]:
    """`stream-ad run` writing its output on `disk` (the accelerated-model cache elsewhere: only sinks fill it)."""
    cfg = write_pipeline(tmp_path / "line.yaml", demo_run.model, disk, metrics={"enabled": False},
                         source={"camera": "line1", "fps": 20, "loop": True},
                         sink={"on_error": on_error, "outputs": outputs})
    settings = yaml.safe_load(cfg.read_text())
    settings["runtime"] = {"cache_dir": str(tmp_path / "cache")}
    cfg.write_text(yaml.safe_dump(settings))
    log = tmp_path / "run.log"
    return start_cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), log=log), log


def _first_verdicts(proc: subprocess.Popen[bytes], log: Path, verdicts: Path) -> None:
    def ready() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        return len(read_jsonl(verdicts)) >= 5

    wait_for(ready, 240, "the first verdicts")


def test_safe_state_tells_the_plc_and_the_ledger_counts_sink_errors(
    demo_run: DemoRun, plc: ServerProcess, tmp_path: Path, disk: Path, fault_figures: Callable[[FaultFigures], None]
) -> None:
    verdicts = disk / "verdicts.jsonl"
    proc, log = _start(demo_run, tmp_path, disk, "safe_state", [
        {"kind": "jsonl"},
        {"kind": "modbus", "host": "127.0.0.1", "port": plc.port, "only_alarms": False, "timeout_s": 1.0}])
    try:
        _first_verdicts(proc, log, verdicts)
        filler = fill(disk)
        full_at = time.monotonic()
        unavailable = wait_for(lambda: [r for r in plc.received() if r["verdict"] == "unavailable"], 60,
                               "the PLC to hear that inspection is not available")[0]
        filler.unlink()
        room_at = time.monotonic()
        lines = len(read_jsonl(verdicts))
        wait_for(lambda: len(read_jsonl(verdicts)) > lines, 60, "verdicts after the disk had room again")
        recover_s = time.monotonic() - room_at
        wait_for(lambda: len(read_jsonl(verdicts)) >= lines + 5, 60, "verdicts after the disk had room again")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    written = [v["frame_id"] for v in read_jsonl(verdicts)]
    fault_figures(FaultFigures(
        "disk full (safe_state)", f"output disk (4 MiB tmpfs) full for {room_at - full_at:.1f} s, 20 fps camera",
        f"{summary['frames_in']} in: {summary['scored']} scored, dropped {summary['dropped']}; PLC told "
        "'unavailable'", summary["unaccounted"], recover_s))
    assert summary["dropped"].get("sink_error", 0) > 0, summary
    assert summary["unaccounted"] == 0 and summary["in_flight_at_end"] == 0
    assert summary["frames_in"] == summary["scored"] + summary["dropped_total"]
    # Every verdict counted as scored is in the durable log (the log may hold more: a frame whose verdict one sink
    # took and another did not is dropped all the same).
    assert len(written) == len(set(written)) >= summary["scored"]
    # The real cause, whichever sink met the full disk first (the log's last page may still hold a few lines).
    assert ("database or disk is full" in text or "No space left on device" in text) and "cannot rollback" not in text
    assert "takes verdicts again" in text
    # The PLC: the status (sequence 0, verdict code 2, NaN score) and, after it, verdicts of later frames.
    assert unavailable["seq"] == 0 and unavailable["score"] != unavailable["score"]
    results = plc.received()
    after = results[results.index(unavailable) + 1:]
    assert any(r["verdict"] != "unavailable" and r["frame_id"] > unavailable["frame_id"] for r in after)


def test_stop_ends_the_run_with_exit_2_and_the_summary_says_why(
    demo_run: DemoRun, tmp_path: Path, disk: Path, fault_figures: Callable[[FaultFigures], None]
) -> None:
    proc, log = _start(demo_run, tmp_path, disk, "stop", [{"kind": "jsonl"}])
    try:
        _first_verdicts(proc, log, disk / "verdicts.jsonl")
        fill(disk)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the run did not stop by itself: {log.read_text()[-3000:]}") from None
        assert proc.returncode == 2, log.read_text()[-3000:]  # non-zero: systemd restarts it
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = json.loads((tmp_path / "summary.json").read_text())
    fault_figures(FaultFigures(
        "disk full (stop)", "output disk (4 MiB tmpfs) full, 20 fps camera",
        f"{summary['frames_in']} in: {summary['scored']} scored, dropped {summary['dropped']}; exit 2 for systemd",
        summary["unaccounted"]))
    assert "pipeline.sink.on_error: stop" in summary["failure"] and "No space left on device" in summary["failure"]
    assert summary["dropped"].get("sink_error", 0) >= 1 and summary["unaccounted"] == 0
    assert summary["scored"] <= len(read_jsonl(disk / "verdicts.jsonl"))
    assert "stopped by" in log.read_text()
