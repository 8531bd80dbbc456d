"""pipeline.console: off and local by default, its keys checked like every other section's."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ad.settings import ConfigError, load_settings
from tests.settings.test_load import write


def test_the_console_is_off_and_local_by_default() -> None:
    cfg = load_settings().pipeline.console
    assert not cfg.enabled and cfg.host == "127.0.0.1" and cfg.operators_file is None


def test_an_unknown_console_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "pipeline:\n  console:\n    enabled: true\n    drift: {windw: 50}\n")
    with pytest.raises(ConfigError, match=r"pipeline\.console\.drift\.windw"):
        load_settings(path)


def test_console_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_AD_PIPELINE__CONSOLE__PORT", "9000")
    monkeypatch.setenv("STREAM_AD_PIPELINE__CONSOLE__DRIFT__SIGNIFICANCE", "0.01")
    cfg = load_settings().pipeline.console
    assert cfg.port == 9000 and cfg.drift.significance == 0.01


@pytest.mark.parametrize("key", ["tap_endpoint", "control_endpoint"])
def test_a_tcp_console_endpoint_is_refused_naming_the_key(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, f"pipeline:\n  console:\n    {key}: tcp://127.0.0.1:7100\n")
    with pytest.raises(ConfigError, match=rf"pipeline\.console\.{key}"):
        load_settings(path)
