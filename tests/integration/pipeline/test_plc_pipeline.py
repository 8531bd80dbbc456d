"""End to end: `stream-ad run` on a folder camera with the demo's small model delivers every alarm, in order, to a
real Modbus TCP PLC on 127.0.0.1 (result block + handshake), next to the JSON lines log of the same run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import DemoRun, cli, free_port, read_jsonl, write_pipeline
from tests.integration.plc.conftest import HERE, ServerProcess

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
    proc = cli("run", str(cfg), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    alarms = [v for v in read_jsonl(tmp_path / "verdicts.jsonl") if v["verdict"] == "anomaly"]
    got = modbus_plc.received()
    assert alarms, "the demo category's test images hold defects: some must alarm"
    assert [r["seq"] for r in got] == list(range(1, len(alarms) + 1))
    assert [(r["frame_id"], r["camera"], r["verdict"]) for r in got] == [
        (a["frame_id"], "line1", "anomaly") for a in alarms]
    assert [r["score"] for r in got] == pytest.approx([a["score"] for a in alarms], rel=1e-5)
    outbox = tmp_path / "outbox" / "modbus.sqlite"
    assert outbox.is_file()
