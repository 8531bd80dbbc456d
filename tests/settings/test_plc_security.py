"""The PLC sinks' security settings: credentials never in the broker URL (refused without repeating it), a password
only from a file or an environment variable and only over an encrypted connection, certificate and key together."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ad.settings import ConfigError, Settings, load_settings
from stream_ad.settings.redact import hide_passwords

SECRET = "pw-Secret-9"


def _load(tmp_path: Path, output: str) -> Settings:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"pipeline:\n  sink:\n    outputs:\n      - {output}\n")
    return load_settings(cfg)


@pytest.mark.parametrize("url", [f"mqtt://line4:{SECRET}@broker:1883", f"mqtts://line4:{SECRET}@broker",
                                 f"tcp://line4:{SECRET}@broker", f"mqtt://line4:{SECRET}@broker:99999"])
def test_a_password_in_the_broker_url_is_refused_without_repeating_it(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.sink\.outputs\.0\.url: ") as err:
        _load(tmp_path, f"{{kind: mqtt, url: '{url}'}}")
    assert SECRET not in str(err.value)
    assert "line4:***@broker" in str(err.value)  # the echoed input, masked
    if url.startswith("mqtt"):
        assert "set `username` and `password_file` (or `password_env`)" in str(err.value)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("{kind: mqtt, url: 'mqtts://b', username: u, password_file: /p, password_env: P}", "not both"),
        ("{kind: mqtt, url: 'mqtts://b', username: u}", "username and a password .* go together"),
        ("{kind: mqtt, url: 'mqtts://b', password_env: P}", "username and a password .* go together"),
        ("{kind: mqtt, url: 'mqtts://b', username: u, password_env: 'P-1'}", r"outputs\.0\.password_env: String"),
        ("{kind: mqtt, url: 'mqtt://b', username: u, password_env: P}", "in clear over mqtt://; use mqtts://"),
        ("{kind: mqtt, url: 'mqtt://b', tls: {ca_file: /ca.pem}}", "`tls` is set but url starts with mqtt://"),
        ("{kind: mqtt, url: 'mqtts://b', tls: {cert_file: /c.pem}}", r"outputs\.0\.tls: .*cert_file and key_file"),
        ("{kind: mqtt, url: 'mqtts://b', password: x}", r"outputs\.0\.password: unknown key"),
        ("{kind: opcua, endpoint: 'opc.tcp://plc:4840', username: u, password_env: P}", "need security.mode Sign"),
        (("{kind: opcua, endpoint: 'opc.tcp://plc:4840', username: u, password_env: P, security: {mode: Sign, "
          "cert_file: /c, key_file: /k, server_cert_file: /s}}"), "need security.mode SignAndEncrypt"),
        ("{kind: opcua, endpoint: 'opc.tcp://plc:4840', security: {cert_file: /c, key_file: /k}}",
         r"outputs\.0\.security\.server_cert_file: Field required"),
        (("{kind: opcua, endpoint: 'opc.tcp://plc:4840', security: {policy: Basic128Rsa15, cert_file: /c, "
          "key_file: /k, server_cert_file: /s}}"), r"outputs\.0\.security\.policy: Input should be 'Basic256Sha256'"),
    ],
)
def test_bad_security_settings_name_the_key(tmp_path: Path, output: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, output)


def test_secure_settings_load(tmp_path: Path) -> None:
    s = _load(tmp_path, "{kind: opcua, endpoint: 'opc.tcp://plc:4840', username: line4, password_file: /etc/pw, "
                        "security: {cert_file: /etc/c.pem, key_file: /etc/k.pem, server_cert_file: /etc/s.der}}")
    opcua = s.pipeline.sink.outputs[0]
    assert opcua.security is not None and (opcua.security.policy, opcua.security.mode) == ("Basic256Sha256",
                                                                                          "SignAndEncrypt")
    assert opcua.password_file == Path("/etc/pw")


def test_hide_passwords_masks_every_url_password_in_nested_values() -> None:
    value = {"a": [f"rtsp://u:{SECRET}@cam/1", ("x", f"mqtt://:{SECRET}@b")], "b": "http://host:80/path", "c": 3}
    assert hide_passwords(value) == {"a": ["rtsp://u:***@cam/1", ("x", "mqtt://:***@b")],
                                     "b": "http://host:80/path", "c": 3}


def test_a_password_holding_an_at_sign_is_masked_whole() -> None:
    assert hide_passwords(f"rtsp://u:{SECRET}@x@cam:554/s") == "rtsp://u:***@cam:554/s"
    assert hide_passwords("rtsp://cam/clip@2x") == "rtsp://cam/clip@2x"  # an @ in the path is no password
