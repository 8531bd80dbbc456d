"""`stream-ad config show`: the effective settings as YAML, each leaf line naming its origin."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stream_ad.commands.checked_settings import load_checked_settings
from stream_ad.commands.config_show import config_show, effective_settings


def test_the_output_is_the_effective_settings_with_origins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("backbone:\n  layers: [features.3, features.6]\npipeline:\n  source:\n    fps: 25\n")
    monkeypatch.setenv("STREAM_AD_SCORER__PARAMS__CORESET_RATIO", "0.05")
    settings = load_checked_settings(path)
    assert config_show(settings, path) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == effective_settings(settings)  # valid YAML of the effective values
    lines = out.splitlines()
    assert f"  layers: [features.3, features.6]  # {path}" in lines
    assert f"    fps: 25.0  # {path}" in lines
    assert "    coreset_ratio: 0.05  # STREAM_AD_SCORER__PARAMS__CORESET_RATIO" in lines
    assert "    num_neighbors: 9  # default" in lines  # the method's params complete with their defaults
    assert all(line.endswith(":") or " # " in line for line in lines)  # every leaf says where it came from


def test_no_password_reaches_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # The MQTT password is only named (password_env); a camera URL's own password is masked.
    path = tmp_path / "line.yaml"
    path.write_text("pipeline:\n  source: {kind: rtsp, url: 'rtsp://viewer:cam-Secret-1@10.0.0.5/stream'}\n"
                    "  sink:\n    outputs:\n      - {kind: mqtt, url: 'mqtts://broker', username: line4, "
                    "password_env: MQTT_PASSWORD, tls: {ca_file: /etc/stream-ad/mqtt-ca.pem}}\n")
    monkeypatch.setenv("MQTT_PASSWORD", "mqtt-Secret-2")
    assert config_show(load_checked_settings(path), path) == 0
    out = capsys.readouterr().out
    assert "cam-Secret-1" not in out and "mqtt-Secret-2" not in out
    assert "url: rtsp://viewer:***@10.0.0.5/stream  # " in out
    assert "password_env: MQTT_PASSWORD, " in out
