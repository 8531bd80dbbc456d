"""The MQTT sink against a real mosquitto broker and the OPC UA sink against a real asyncua server, both on
127.0.0.1: delivery, an outage, the last will, and errors that name the setting."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_ad.settings import (
    ConfigError,
    MqttSinkSettings,
    OpcuaSinkSettings,
    load_settings,
)
from stream_ad.sinks.plc import SinkConfigError
from tests.conftest import REPO, FaultFigures
from tests.integration.plc.conftest import ServerProcess
from tests.integration.plc.helpers import (
    RUN_ID,
    Subscriber,
    dedup_consecutive,
    metric,
    sink,
    verdict,
    wait_until,
)


def mqtt_settings(port: int, name: str, tmp_path: Path, **kw: Any) -> MqttSinkSettings:
    return MqttSinkSettings(**{"url": f"mqtt://127.0.0.1:{port}", "name": name, "node": "cell7", "timeout_s": 1.0,
                               "outbox": {"path": tmp_path / f"{name}.sqlite", "retry_initial_s": 0.05,
                                          "retry_max_s": 0.4}, **kw})


def test_mqtt_alarms_survive_a_broker_outage_in_order(mosquitto: ServerProcess, tmp_path: Path,
                                                      fault_figures: Callable[[FaultFigures], None]) -> None:
    # Retries 1 s apart: the test's subscriber is back on the restarted broker before the sink's next attempt.
    settings = mqtt_settings(mosquitto.port, "mqtt", tmp_path)
    settings.outbox = settings.outbox.model_copy(update={"retry_initial_s": 1.0, "retry_max_s": 1.0})
    s = sink(settings, tmp_path)  # only_alarms (the PLC sinks' default)
    s.open()
    sub = Subscriber(mosquitto.port, "stream_ad/cell7/#")
    status = sub.take(1)
    assert status and status[0][0] == "stream_ad/cell7/status" and status[0][1]["state"] == "online"
    s.write([verdict(i, alarm=i % 2 == 0) for i in range(10)])  # 5 alarms, 5 ok (not sent)
    first = sub.take(5)
    sub.close()
    mosquitto.stop()
    s.write([verdict(10 + i, alarm=True) for i in range(5)])
    time.sleep(1.0)
    assert s.outbox.pending == 5
    mosquitto.start()
    back_at = time.monotonic()
    sub = Subscriber(mosquitto.port, "stream_ad/cell7/+/alarm")
    wait_until(lambda: s.outbox.pending == 0, 30, "delivery after the broker came back")
    recover_s = time.monotonic() - back_at
    second = sub.take(5)
    s.close()
    sub.close()
    assert [t for t, _, _ in first] == ["stream_ad/cell7/line1/alarm"] * 5
    seqs, dups = dedup_consecutive([m["seq"] for _, m, _ in first + second])
    fault_figures(FaultFigures("MQTT broker outage", "10 alarms: 5 before, 5 while mosquitto was stopped (1 s)",
                               f"5 held in the durable outbox, {dups} resent twice, delivered in order",
                               10 - len(set(seqs)), recover_s))
    assert seqs == list(range(1, 11)) and dups == 0
    assert [m["frame_id"] for _, m, _ in first + second] == [0, 2, 4, 6, 8, 10, 11, 12, 13, 14]
    assert all(m["run_id"] == RUN_ID and m["t_capture"] < m["t_verdict"] for _, m, _ in first + second)
    assert metric("stream_ad_outbox_retries_total", "mqtt") >= 1
    assert metric("stream_ad_outbox_delivered_total", "mqtt") == 10


WILL = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from stream_ad.settings import MqttSinkSettings
    from tests.integration.plc.helpers import sink
    s = sink(MqttSinkSettings(url=sys.argv[1], node="cell9", outbox={"path": sys.argv[2]}), Path(sys.argv[2]).parent)
    s.open()
    print("open", flush=True)
    time.sleep(60)
""")


def test_mqtt_last_will_marks_a_dead_node_offline(mosquitto: ServerProcess, tmp_path: Path) -> None:
    sub = Subscriber(mosquitto.port, "stream_ad/cell9/status")
    proc = subprocess.Popen([sys.executable, "-c", WILL, f"mqtt://127.0.0.1:{mosquitto.port}",
                             str(tmp_path / "will.sqlite")], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        online = sub.take(1)
        proc.kill()  # dies without a DISCONNECT: the broker publishes the will
        proc.wait(timeout=10)
        offline = sub.take(1)
    finally:
        proc.kill()
        sub.close()
    assert [m[1]["state"] for m in online + offline] == ["online", "offline"]
    assert offline[0][2] is False or offline[0][0] == "stream_ad/cell9/status"


@pytest.mark.parametrize(
    ("url", "message"),
    [("tcp://127.0.0.1:1883", "starts with mqtt:// or mqtts://"), ("mqtt://127.0.0.1:99999", "port"),
     ("mqtt://:1883", "no host"), ("mqtt://broker/topic", "no path")],
)
def test_malformed_broker_url_is_refused_at_load_naming_the_key(tmp_path: Path, url: str, message: str) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"pipeline:\n  sink:\n    outputs:\n      - {{kind: mqtt, url: '{url}'}}\n")
    with pytest.raises(ConfigError, match=rf"pipeline\.sink\.outputs\.0\.url: .*{message}"):
        load_settings(cfg)


def opcua_settings(port: int, name: str, tmp_path: Path, **kw: Any) -> OpcuaSinkSettings:
    return OpcuaSinkSettings(**{"endpoint": f"opc.tcp://127.0.0.1:{port}/plc", "name": name, "only_alarms": False,
                                "outbox": {"path": tmp_path / f"{name}.sqlite", "drain_timeout_s": 5.0}, **kw})


def test_opcua_writes_each_result_object_in_order(opcua_plc: ServerProcess, tmp_path: Path) -> None:
    s = sink(opcua_settings(opcua_plc.port, "opcua", tmp_path), tmp_path)
    s.open()
    written = [verdict(i, alarm=i % 3 == 0) for i in range(12)]
    s.write(written)
    wait_until(lambda: s.outbox.pending == 0, 30, "OPC UA delivery")
    s.close()
    got = opcua_plc.received()
    assert [r["Sequence"] for r in got] == list(range(1, 13))
    for r, v in zip(got, written, strict=True):
        assert (r["FrameId"], r["Camera"], r["Verdict"], r["Alarm"]) == (v.frame_id, v.camera, v.verdict, v.alarm)
        assert r["Score"] == pytest.approx(v.score) and r["Timestamp"] == pytest.approx(v.t_verdict, abs=1e-3)
        # The PLC can tell a late result (capture time) and which run judged it.
        assert r["CaptureTime"] == pytest.approx(v.t_capture, abs=1e-3) and r["RunId"] == RUN_ID


def test_opcua_wrong_namespace_or_object_names_the_setting(opcua_plc: ServerProcess, tmp_path: Path) -> None:
    for kw, message in (({"namespace": "urn:other"}, "no namespace 'urn:other' (setting namespace)"),
                        ({"object": "Vision"}, "no node Objects/2:Vision/2:FrameId")):
        s = sink(opcua_settings(opcua_plc.port, "opcua_bad", tmp_path, **kw), tmp_path)
        with pytest.raises(SinkConfigError, match=rf"pipeline\.sink\.outputs\.0 .*{re.escape(message)}"):
            s.open()
