"""The PLC sinks on a secured plant network, against the real servers on 127.0.0.1: mosquitto on mutual TLS with a
password file, asyncua with Basic256Sha256 SignAndEncrypt, a trust list and one user. The right credentials deliver;
a missing or wrong one is refused with a log line that says which setting to look at, and the verdicts wait in the
outbox (counted as retries, none lost). The password shows in no error, log line or output."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from stream_ad.settings import MqttSinkSettings, OpcuaSinkSettings
from stream_ad.sinks.plc import SinkConfigError
from tests.integration.plc.certs import opcua_app_cert
from tests.integration.plc.conftest import SECRET, SecurePlc
from tests.integration.plc.helpers import Subscriber, metric, sink, verdict, wait_until

WRONG = "not-the-password"


@pytest.fixture(autouse=True)
def _every_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the client libraries' debug lines too: none may carry the password


def assert_no_secret(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], *texts: str) -> None:
    out, err = capfd.readouterr()
    for where, text in (("log", caplog.text), ("stdout", out), ("stderr", err), *(("error", t) for t in texts)):
        assert SECRET not in text and WRONG not in text, f"a password in the {where}"


def mqtt_settings(plc: SecurePlc, name: str, tmp_path: Path, **kw: Any) -> MqttSinkSettings:
    certs = plc.certs
    return MqttSinkSettings(**{
        "url": f"mqtts://127.0.0.1:{plc.server.port}", "name": name, "node": "cell7", "timeout_s": 2.0,
        "username": plc.user, "password_file": plc.password_file,
        "tls": {"ca_file": certs["ca"].cert, "cert_file": certs["client"].cert, "key_file": certs["client"].key},
        "outbox": {"path": tmp_path / f"{name}.sqlite", "retry_initial_s": 0.1, "retry_max_s": 0.5,
                   "drain_timeout_s": 0.5}, **kw})


def test_mqtt_delivers_over_mutual_tls_with_a_password_file(
        mosquitto_tls: SecurePlc, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    certs = mosquitto_tls.certs
    sub = Subscriber(mosquitto_tls.server.port, "stream_ad/cell7/+/alarm",
                     tls={"ca_certs": certs["ca"].cert, "certfile": certs["client"].cert,
                          "keyfile": certs["client"].key}, user=(mosquitto_tls.user, SECRET))
    s = sink(mqtt_settings(mosquitto_tls, "mqtt_tls", tmp_path), tmp_path)
    s.open()
    assert s.connected
    s.write([verdict(i, alarm=True) for i in range(4)])
    wait_until(lambda: s.outbox.pending == 0, 15, "delivery over TLS")
    got = sub.take(4)
    s.close()
    sub.close()
    assert [m["frame_id"] for _, m, _ in got] == [0, 1, 2, 3]
    assert metric("stream_ad_outbox_delivered_total", "mqtt_tls") == 4
    assert_no_secret(caplog, capfd)


@pytest.mark.parametrize(
    ("case", "change", "logged"),
    [
        ("no_cert", {"tls": "ca_only"}, "refused client certificate (settings tls.cert_file, tls.key_file)"),
        ("stranger", {"tls": "stranger"}, "refused client certificate"),
        ("wrong_password", {"password_env": "STREAM_AD_TEST_MQTT_PASSWORD"}, "refused the credentials"),
    ],
)
def test_mqtt_refused_credentials_keep_the_verdicts(
        mosquitto_tls: SecurePlc, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        case: str, change: dict[str, str], logged: str) -> None:
    certs = mosquitto_tls.certs
    kw: dict[str, Any] = {}
    if change.get("tls") == "ca_only":
        kw["tls"] = {"ca_file": certs["ca"].cert}
    elif change.get("tls") == "stranger":
        kw["tls"] = {"ca_file": certs["ca"].cert, "cert_file": certs["stranger"].cert,
                     "key_file": certs["stranger"].key}
    else:
        monkeypatch.setenv(change["password_env"], WRONG)
        kw = {"password_file": None, "password_env": change["password_env"]}
    label = f"mqtt_{case}"
    s = sink(mqtt_settings(mosquitto_tls, label, tmp_path, **kw), tmp_path)
    s.open()
    s.write([verdict(i, alarm=True) for i in range(3)])
    wait_until(lambda: metric("stream_ad_outbox_retries_total", label) >= 1, 15, "a counted retry")
    assert not s.connected and s.outbox.pending == 3
    s.close()
    assert metric("stream_ad_outbox_delivered_total", label) == 0
    refusals = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and logged in r.getMessage()]
    assert refusals, caplog.text
    assert_no_secret(caplog, capfd)


def opcua_settings(plc: SecurePlc, name: str, tmp_path: Path, **kw: Any) -> OpcuaSinkSettings:
    certs = plc.certs
    return OpcuaSinkSettings(**{
        "endpoint": f"opc.tcp://127.0.0.1:{plc.server.port}/plc", "name": name, "only_alarms": False,
        "timeout_s": 2.0, "username": plc.user, "password_file": plc.password_file,
        "security": {"mode": "SignAndEncrypt", "cert_file": certs["client"].cert, "key_file": certs["client"].key,
                     "server_cert_file": certs["plc"].cert},
        "outbox": {"path": tmp_path / f"{name}.sqlite", "retry_initial_s": 0.1, "retry_max_s": 0.5,
                   "drain_timeout_s": 0.5}, **kw})


def test_opcua_writes_over_sign_and_encrypt_with_a_user_token(
        opcua_secure_plc: SecurePlc, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    s = sink(opcua_settings(opcua_secure_plc, "opcua_secure", tmp_path), tmp_path)
    s.open()
    assert s.connected
    written = [verdict(i, alarm=i % 2 == 0) for i in range(5)]
    s.write(written)
    wait_until(lambda: s.outbox.pending == 0, 30, "OPC UA delivery")
    s.close()
    got = opcua_secure_plc.server.received()
    assert [(r["Sequence"], r["FrameId"], r["Alarm"]) for r in got] == [(i + 1, i, i % 2 == 0) for i in range(5)]
    assert "Password=***" in caplog.text  # asyncua logged the ActivateSession request, the password masked
    assert_no_secret(caplog, capfd)


@pytest.mark.parametrize(
    ("case", "logged"),
    [
        ("wrong_password", "BadUserAccessDenied"),
        ("no_user", "BadIdentityTokenRejected"),
        ("anonymous", "SecurityPolicy#None"),
        ("untrusted_client", "BadCertificateUntrusted"),
        ("impostor_server", "is security.server_cert_file this server's certificate?"),
    ],
)
def test_opcua_refused_sessions_keep_the_verdicts(
        opcua_secure_plc: SecurePlc, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str], case: str, logged: str) -> None:
    certs, settings = opcua_secure_plc.certs, opcua_settings(opcua_secure_plc, f"opcua_{case}", tmp_path)
    security = settings.security
    assert security is not None
    wrong = tmp_path / "wrong.password"
    wrong.write_text(WRONG)
    change: dict[str, Any] = {
        "wrong_password": {"password_file": wrong},
        "no_user": {"username": None, "password_file": None},
        "anonymous": {"username": None, "password_file": None, "security": None},
        "untrusted_client": {"security": security.model_copy(
            update={"cert_file": certs["stranger"].cert, "key_file": certs["stranger"].key})},
        "impostor_server": {"security": security.model_copy(update={"server_cert_file": certs["impostor"].cert})},
    }[case]
    s = sink(settings.model_copy(update=change), tmp_path)
    s.open()
    s.write([verdict(i, alarm=True) for i in range(3)])
    wait_until(lambda: metric("stream_ad_outbox_retries_total", f"opcua_{case}") >= 1, 20, "a counted retry")
    assert not s.connected and s.outbox.pending == 3
    s.close()
    assert opcua_secure_plc.server.received() == []
    refusals = [r.getMessage() for r in caplog.records if r.name.startswith("stream_ad")
                and r.levelno >= logging.ERROR and logged in r.getMessage()]
    assert refusals, caplog.text
    assert_no_secret(caplog, capfd)


@pytest.mark.parametrize(
    ("kind", "key"),
    [("mqtt", "tls.ca_file"), ("mqtt", "tls.key_file"), ("mqtt", "password_file"), ("opcua", "security.cert_file"),
     ("opcua", "security.server_cert_file"), ("opcua", "password_file")],
)
def test_a_missing_security_file_stops_the_sink_naming_the_key_and_path(tmp_path: Path, kind: str, key: str) -> None:
    # No server needed: the files are read before any connection is tried.
    client, server = (opcua_app_cert(tmp_path, name, f"urn:test:{name}", name == "plc") for name in ("line4", "plc"))
    here = {"ca": server.cert, "cert": client.cert, "key": client.key, "server": server.cert}
    (tmp_path / "password").write_text(SECRET)
    missing = tmp_path / "gone" / "file.pem"
    credentials = {"username": "line4", "password_file": tmp_path / "password"}
    if kind == "mqtt":
        tls = {"ca_file": here["ca"], "cert_file": here["cert"], "key_file": here["key"]}
        fields = {"url": "mqtts://127.0.0.1:1", "tls": tls, **credentials}
    else:
        security = {"cert_file": here["cert"], "key_file": here["key"], "server_cert_file": here["server"]}
        fields = {"endpoint": "opc.tcp://127.0.0.1:1/plc", "security": security, **credentials}
    section, _, leaf = key.rpartition(".")
    (fields[section] if section else fields)[leaf] = missing
    cls = MqttSinkSettings if kind == "mqtt" else OpcuaSinkSettings
    s = sink(cls(**fields, outbox={"path": tmp_path / "o.sqlite"}), tmp_path)
    started = time.monotonic()
    with pytest.raises(SinkConfigError, match=rf"pipeline\.sink\.outputs\.0 .*setting {key}: cannot read {missing}"):
        s.open()
    assert time.monotonic() - started < 5
