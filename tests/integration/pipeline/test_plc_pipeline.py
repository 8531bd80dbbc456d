"""End to end: `stream-ad run` on a folder camera with the demo's small model delivers every alarm, in order, to a
real Modbus TCP PLC on 127.0.0.1 (result block + handshake, with each result's capture time), next to the JSON lines
log of the same run (each verdict with the run's id and its capture time); and the
README's model upgrade (fit otherwise into a new folder, switch the symlink, restart) loses none of them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream_ad.artefact import read_manifest
from tests.integration.conftest import (
    DemoRun,
    cli,
    free_port,
    read_jsonl,
    start_cli,
    wait_for,
    write_pipeline,
)
from tests.integration.plc.conftest import HERE, ServerProcess
from tests.integration.plc.helpers import dedup_consecutive

BASE = 40  # the result block at holding registers 40..59


@pytest.fixture
def modbus_plc(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    results = tmp_path / "plc.jsonl"
    plc = ServerProcess([sys.executable, str(HERE / "modbus_plc.py"), str(port), str(results), "--base", str(BASE)],
                        port, tmp_path / "plc.log", results)
    plc.start()
    yield plc
    plc.stop()


def test_pipeline_delivers_every_alarm_to_a_modbus_plc(demo_run: DemoRun, modbus_plc: ServerProcess,
                                                       tmp_path: Path) -> None:
    cfg = write_pipeline(
        tmp_path / "plc.yaml", demo_run.model, tmp_path,
        metrics={"port": free_port()},
        source={"camera": "line1", "fps": 40},
        sink={"outputs": [{"kind": "jsonl"},
                          {"kind": "modbus", "host": "127.0.0.1", "port": modbus_plc.port, "base_address": BASE}]},
    )
    proc = cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_id = json.loads((tmp_path / "summary.json").read_text())["run_id"]
    verdicts = read_jsonl(tmp_path / "verdicts.jsonl")
    assert verdicts and all(v["run_id"] == run_id and v["t_capture"] < v["t_verdict"] for v in verdicts)
    alarms = [v for v in verdicts if v["verdict"] == "anomaly"]
    got = modbus_plc.received()
    assert alarms, "the demo category's test images hold defects: some must alarm"
    assert [r["seq"] for r in got] == list(range(1, len(alarms) + 1))
    assert [(r["frame_id"], r["camera"], r["verdict"]) for r in got] == [
        (a["frame_id"], "line1", "anomaly") for a in alarms]
    assert [r["score"] for r in got] == pytest.approx([a["score"] for a in alarms], rel=1e-5)
    # The PLC reads each result's capture time (Unix ms) and can reject one too late to act on.
    assert [r["t_capture_ms"] for r in got] == [round(a["t_capture"] * 1000) for a in alarms]
    assert [r["frame_id_u32"] for r in got] == [a["frame_id"] & 0xFFFFFFFF for a in alarms]
    outbox = tmp_path / "outbox" / "modbus.sqlite"
    assert outbox.is_file()


def _alarms(path: Path) -> list[dict[str, Any]]:
    return [v for v in read_jsonl(path) if v["verdict"] == "anomaly"]


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """As `systemctl restart` stops the unit: SIGTERM, then the drain."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=120)


def test_model_upgrade_as_the_readme_does_it_loses_no_alarm(demo_run: DemoRun, modbus_plc: ServerProcess,
                                                            tmp_path: Path) -> None:
    """README, "Running on a line PC": while the line runs on model A (behind a symlink) and the PLC is away, fit
    model B with another coreset ratio and calibrate it for another false-alarm target into a new folder, switch the
    symlink, restart. The pipeline file still says A's coreset ratio (a training-only setting): B runs anyway, its
    verdicts carry its own threshold, and the alarms the outbox held across the switch reach the PLC in order."""
    models = tmp_path / "models"
    shutil.copytree(demo_run.model, models / "line1-a")  # the demo fitted and calibrated it as fit + calibrate do
    link = models / "line1"
    link.symlink_to("line1-a")
    cfg = write_pipeline(
        tmp_path / "line1.yaml", link, tmp_path,  # it names scorer.params.coreset_ratio 0.05, A's
        metrics={"port": 0},
        source={"camera": "line1", "fps": 8, "loop": True},
        sink={"outputs": [{"kind": "jsonl"},
                          {"kind": "modbus", "host": "127.0.0.1", "port": modbus_plc.port, "base_address": BASE,
                           "timeout_s": 0.5, "outbox": {"retry_initial_s": 0.05, "retry_max_s": 0.5,
                                                        "drain_timeout_s": 10.0}}]},
    )
    verdicts = tmp_path / "verdicts.jsonl"
    run_a = start_cli("run", str(cfg), log=tmp_path / "run_a.log")
    try:
        wait_for(modbus_plc.received, 300, "model A's first alarm at the PLC")
        modbus_plc.stop()  # from here on alarms wait in the outbox
        queued_from = len(_alarms(verdicts))
        wait_for(lambda: len(_alarms(verdicts)) >= queued_from + 2, 120, "alarms queued while the PLC is away")
        fit = cli("-c", str(cfg), "fit", "--out", str(models / "line1-b"),
                  env={"STREAM_AD_SCORER__PARAMS__CORESET_RATIO": "0.1"})
        assert fit.returncode == 0, fit.stdout + fit.stderr[-3000:]
        calibrate = cli("-c", str(cfg), "calibrate", "--model", str(models / "line1-b"), "--target-fpr", "0.5",
                        env={"STREAM_AD_CALIBRATION__DEFECTS": "false"})
        assert calibrate.returncode == 0, calibrate.stdout + calibrate.stderr[-3000:]
        (models / "line1.new").symlink_to("line1-b")
        os.replace(models / "line1.new", link)  # the README's `ln -sfn` + `mv -T`: an atomic rename
        assert _stop(run_a) == 0, (tmp_path / "run_a.log").read_text()[-3000:]
    finally:
        if run_a.poll() is None:
            run_a.kill()
    at_switch = _alarms(verdicts)
    assert len(modbus_plc.received()) < len(at_switch), "the outbox should hold alarms across the switch"

    modbus_plc.start()
    run_b = start_cli("run", str(cfg), log=tmp_path / "run_b.log")
    try:
        wait_for(lambda: len(_alarms(verdicts)) > len(at_switch) and len(modbus_plc.received()) > len(at_switch),
                 300, "A's queued alarms and B's first alarm at the PLC")
        assert _stop(run_b) == 0, (tmp_path / "run_b.log").read_text()[-3000:]
    finally:
        if run_b.poll() is None:
            run_b.kill()

    threshold_a, threshold_b = (read_manifest(models / name).threshold_value for name in ("line1-a", "line1-b"))
    assert threshold_a is not None and threshold_b is not None and round(threshold_a, 6) != round(threshold_b, 6)
    log_b = (tmp_path / "run_b.log").read_text()
    assert f"-> {(models / 'line1-b').resolve()}: patchcore (coreset_ratio=0.1" in log_b, log_b[-3000:]
    all_verdicts = read_jsonl(verdicts)
    thresholds = [v["threshold"] for v in all_verdicts]
    switch = thresholds.index(round(threshold_b, 6))
    assert 0 < switch and thresholds == [round(threshold_a, 6)] * switch + [round(threshold_b, 6)] * (
        len(thresholds) - switch), "every verdict before the restart is A's, every one after it B's"
    alarms = _alarms(verdicts)
    got, duplicates = dedup_consecutive([r["seq"] for r in modbus_plc.received()])
    assert duplicates <= 1, "at-least-once allows only the result in flight at the outage to come twice"
    by_seq = {r["seq"]: r for r in modbus_plc.received()}
    assert got == list(range(1, len(alarms) + 1)), "an alarm was lost or reordered across the switch"
    assert [(by_seq[s]["frame_id"], by_seq[s]["camera"]) for s in got] == [(a["frame_id"], "line1") for a in alarms]
    assert [by_seq[s]["score"] for s in got] == pytest.approx([a["score"] for a in alarms], rel=1e-5)
