"""Per-kind sink settings: each kind's keys are checked as that kind's, the existing sinks' YAML is unchanged, and a
bad register address or PLC sink layout is refused at load with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ad.settings import (
    ConfigError,
    JsonlSinkSettings,
    ModbusSinkSettings,
    MqttSinkSettings,
    OpcuaSinkSettings,
    load_settings,
)
from stream_ad.sinks import modbus_map
from tests.conftest import REPO


def _load(tmp_path: Path, outputs: str, extra: str = ""):  # noqa: ANN202
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"pipeline:\n{extra}  sink:\n    outputs:\n{outputs}")
    return load_settings(cfg)


def test_existing_sink_yaml_still_loads(tmp_path: Path) -> None:
    s = _load(tmp_path, "      - {kind: jsonl, path: /tmp/v.jsonl, only_alarms: true}\n      - {kind: stdout}\n"
                        "      - {kind: images}\n")
    assert [type(o).__name__ for o in s.pipeline.sink.outputs] == ["JsonlSinkSettings", "StdoutSinkSettings",
                                                                   "ImagesSinkSettings"]
    assert s.pipeline.sink.outputs[0] == JsonlSinkSettings(path=Path("/tmp/v.jsonl"), only_alarms=True)


def test_plc_line_example_is_valid() -> None:
    s = load_settings(REPO / "pipelines" / "plc_line.yaml")
    kinds = {type(o) for o in s.pipeline.sink.outputs}
    assert {ModbusSinkSettings, OpcuaSinkSettings, MqttSinkSettings} <= kinds


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ("      - {kind: modbus, host: plc, base_adress: 10}\n", r"pipeline\.sink\.outputs\.0\.base_adress: unknown key"),
        ("      - {kind: modbus}\n", r"pipeline\.sink\.outputs\.0\.host: Field required"),
        (f"      - {{kind: modbus, host: plc, base_address: {65536 - modbus_map.BLOCK_SIZE + 1}}}\n",
         r"pipeline\.sink\.outputs\.0\.base_address: .*highest base_address is 65508"),
        ("      - {kind: modbus, host: plc, port: 70000}\n", r"pipeline\.sink\.outputs\.0\.port"),
        ("      - {kind: jsonl, host: plc}\n", r"pipeline\.sink\.outputs\.0\.host: unknown key"),
        ("      - {kind: opcua, endpoint: 'http://plc:4840'}\n", r"pipeline\.sink\.outputs\.0\.endpoint"),
        ("      - {kind: plc}\n", r"pipeline\.sink\.outputs\.0\.kind"),
        ("      - {kind: modbus, host: a}\n      - {kind: modbus, host: b}\n", "distinct names.*'modbus'"),
    ],
)
def test_bad_sink_settings_name_the_key(tmp_path: Path, outputs: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, outputs)


def test_camera_name_must_fit_the_modbus_block(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="longer than the 16 characters"):
        _load(tmp_path, "      - {kind: modbus, host: plc}\n", "  source:\n    camera: a_very_long_camera_name\n")
