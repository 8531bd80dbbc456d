"""The durable outbox, through the Modbus sink and a real pymodbus PLC on 127.0.0.1: an outage under a stream of
verdicts loses nothing and keeps the order, write() never waits on the PLC, the bound drops ok verdicts first (counted),
and what was queued before a crash (kill -9) is delivered by the next process."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_ad.settings import ModbusSinkSettings
from tests.conftest import REPO, FaultFigures
from tests.integration.plc.conftest import ServerProcess
from tests.integration.plc.helpers import (
    dedup_consecutive,
    metric,
    sink,
    verdict,
    wait_until,
)

N = 300  # verdicts in the stream, one every 10 ms; every third an alarm
PERIOD_S = 0.01


def modbus(port: int, name: str, tmp_path: Path, **kw: object) -> ModbusSinkSettings:
    outbox = {"path": tmp_path / f"{name}.sqlite", "retry_initial_s": 0.05, "retry_max_s": 0.4,
              **kw.pop("outbox", {})}  # type: ignore[dict-item]
    return ModbusSinkSettings(**{"host": "127.0.0.1", "port": port, "name": name, "only_alarms": False,
                                 "timeout_s": 0.5, "outbox": outbox, **kw})


def test_outage_loses_nothing_keeps_order_and_never_blocks(modbus_plc: ServerProcess, tmp_path: Path,
                                                           fault_figures: Callable[[FaultFigures], None]) -> None:
    s = sink(modbus(modbus_plc.port, "outage", tmp_path), tmp_path)
    s.open()
    written, write_s, pending = [], [], []
    down_s = 0.0
    back_at = 0.0

    def outage() -> None:
        nonlocal down_s, back_at
        time.sleep(0.8)
        t0 = time.monotonic()
        modbus_plc.stop()
        time.sleep(1.5)
        modbus_plc.start()
        back_at = time.monotonic()
        down_s = back_at - t0

    plc_outage = threading.Thread(target=outage)
    plc_outage.start()
    for i in range(N):
        v = verdict(i, alarm=i % 3 == 0)
        t0 = time.perf_counter()
        s.write([v])
        write_s.append(time.perf_counter() - t0)
        written.append(v)
        pending.append(s.outbox.pending)
        time.sleep(PERIOD_S)
    plc_outage.join()
    wait_until(lambda: s.outbox.pending == 0, 60, "the outbox to drain after the PLC came back")
    drained_s = time.monotonic() - back_at
    s.close()

    got = modbus_plc.received()
    seqs, duplicates = dedup_consecutive([r["seq"] for r in got])
    print(f"outbox figures: sent {N} ({N // 3 + 1} alarms), PLC down {down_s:.1f} s, received {len(got)}, "
          f"duplicates {duplicates}, max pending {max(pending)}, retries {metric('stream_ad_outbox_retries_total', 'outage'):.0f}, "
          f"slowest write {max(write_s) * 1000:.1f} ms")
    fault_figures(FaultFigures(
        "Modbus PLC outage", f"{N} verdicts at 100/s, the PLC server stopped for {down_s:.1f} s",
        f"{max(pending)} pending at most in the durable outbox, {duplicates} resent twice, delivered in order",
        N - len(set(seqs)), drained_s))
    assert seqs == list(range(1, N + 1)), "lost, reordered or out-of-place verdicts"
    assert duplicates <= 1, "at-least-once allows only the result in flight at the failure to come twice"
    by_seq = {r["seq"]: r for r in got}
    for seq, v in enumerate(written, start=1):
        r = by_seq[seq]
        assert (r["frame_id"], r["verdict"], r["camera"]) == (v.frame_id, v.verdict, v.camera)
        assert r["score"] == pytest.approx(v.score, rel=1e-6)
    assert max(pending) > 20, "the outage should have left verdicts pending"
    # A write() that waited on the PLC would have waited out the outage, or the client's 0.5 s timeout at least.
    assert max(write_s) < min(0.5, down_s / 3), "write() waited on the PLC"
    assert metric("stream_ad_outbox_delivered_total", "outage") == N
    assert metric("stream_ad_outbox_retries_total", "outage") >= 1
    assert metric("stream_ad_outbox_pending", "outage") == 0
    assert metric("stream_ad_outbox_overflow_total", "outage") == 0


def test_full_outbox_drops_oldest_ok_first_counted_and_logged(modbus_plc: ServerProcess, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    modbus_plc.stop()
    s = sink(modbus(modbus_plc.port, "bounded", tmp_path, outbox={"max_pending": 10}), tmp_path)
    s.open()
    s.write([verdict(i, alarm=False) for i in range(12)] + [verdict(12 + i, alarm=True) for i in range(5)])
    assert s.outbox.pending == 10
    assert metric("stream_ad_outbox_overflow_total", "bounded") == 7
    assert "dropped the oldest 7 ok verdicts and 0 alarms" in caplog.text
    s.write([verdict(100 + i, alarm=True) for i in range(8)])  # the 5 ok left go, then the oldest 3 alarms
    assert "dropped the oldest 5 ok verdicts and 3 alarms" in caplog.text
    assert metric("stream_ad_outbox_overflow_total", "bounded") == 15
    assert metric("stream_ad_outbox_pending", "bounded") == 10
    modbus_plc.start()
    wait_until(lambda: s.outbox.pending == 0, 30, "delivery after the PLC came back")
    s.close()
    frames = [r["frame_id"] for r in modbus_plc.received()]
    # ok 0..6 went in the first overflow; ok 7..11 and then the oldest alarms 12..14 in the second.
    assert frames == [15, 16, *range(100, 108)]


CRASHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from stream_ad.settings import ModbusSinkSettings
    from tests.integration.plc.helpers import sink, verdict
    cfg = ModbusSinkSettings(host="127.0.0.1", port=int(sys.argv[1]), name="crash",
                             outbox={"path": sys.argv[2], "retry_initial_s": 0.05})
    s = sink(cfg, Path(sys.argv[2]).parent)
    s.open()
    for i in range(20):
        s.write([verdict(i, alarm=True)])
    print("queued", flush=True)
    time.sleep(60)
""")


def test_outbox_survives_a_killed_process(modbus_plc: ServerProcess, tmp_path: Path) -> None:
    modbus_plc.stop()
    db = tmp_path / "crash.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(modbus_plc.port), str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "queued"
    finally:
        proc.kill()  # kill -9: no close(), no drain
        proc.wait(timeout=10)
    modbus_plc.start()
    cfg = ModbusSinkSettings(host="127.0.0.1", port=modbus_plc.port, name="crash2", outbox={"path": db})
    s = sink(cfg, tmp_path)
    s.open()
    wait_until(lambda: s.outbox.pending == 0, 30, "the queued alarms from before the crash")
    s.write([verdict(20, alarm=True)])
    wait_until(lambda: s.outbox.pending == 0, 30, "the new alarm")
    s.close()
    got = modbus_plc.received()
    assert [r["seq"] for r in got] == list(range(1, 22))
    assert [r["frame_id"] for r in got] == list(range(21))


def test_unacknowledged_result_is_resent_and_blocks_the_next(tmp_path: Path) -> None:
    from tests.integration.conftest import free_port

    port = free_port()
    plc = ServerProcess([sys.executable, str(Path(__file__).with_name("modbus_plc.py")), str(port),
                         str(tmp_path / "noack.jsonl"), "--no-ack"], port, tmp_path / "noack.log",
                        tmp_path / "noack.jsonl")
    plc.start()
    try:
        s = sink(modbus(port, "noack", tmp_path, timeout_s=0.2), tmp_path)
        s.open()
        s.write([verdict(1, alarm=True), verdict(2, alarm=True)])
        wait_until(lambda: metric("stream_ad_outbox_retries_total", "noack") >= 2, 20, "retries")
        s.outbox.cfg = s.outbox.cfg.model_copy(update={"drain_timeout_s": 0.0})
        s.close()
    finally:
        plc.stop()
    seqs = {r["seq"] for r in plc.received()}
    assert seqs == {1}, "seq 2 must wait until seq 1 is acknowledged"
    assert len(plc.received()) >= 2


def test_unreachable_plc_is_reported_with_setting_and_endpoint(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    from tests.integration.conftest import free_port

    port = free_port()
    s = sink(modbus(port, "down", tmp_path, outbox={"drain_timeout_s": 0.0}), tmp_path)
    with caplog.at_level(logging.ERROR):
        s.open()
        s.write([verdict(1, alarm=True)])
        wait_until(lambda: metric("stream_ad_outbox_retries_total", "down") >= 1, 10, "a retry")
        s.close()
    assert f"pipeline.sink.outputs.0 (sink down): cannot connect to modbus tcp 127.0.0.1:{port}" in caplog.text
    assert metric("stream_ad_outbox_pending", "down") == 1


def test_heartbeat_register_advances_while_connected(modbus_plc: ServerProcess, tmp_path: Path) -> None:
    from pymodbus.client import ModbusTcpClient

    from stream_ad.sinks import modbus_map

    s = sink(modbus(modbus_plc.port, "beat", tmp_path, heartbeat_s=0.1), tmp_path)
    s.open()
    client = ModbusTcpClient("127.0.0.1", port=modbus_plc.port)
    assert client.connect()
    try:
        def beat() -> int:
            return client.read_holding_registers(s.cfg.base_address + modbus_map.HEARTBEAT, count=1).registers[0]

        first = beat()
        wait_until(lambda: beat() >= first + 3, 10.0, "the heartbeat register to advance 3 times")
    finally:
        client.close()
        s.close()
