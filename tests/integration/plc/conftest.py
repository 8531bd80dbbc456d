"""Real PLC-side servers on 127.0.0.1 for the sink tests, each a process that can be stopped and started again on
its port (an outage): a pymodbus server with a PLC program, an asyncua server, a mosquitto broker; and the secured
variants (mosquitto on mutual TLS with a password file, asyncua with Basic256Sha256 SignAndEncrypt and one user)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import free_port
from tests.integration.plc.certs import CertFiles, opcua_app_cert, tls_set

SECRET = "s3cret-Pw-7f2b"  # the one password of the secure servers; the tests look for it in every output

HERE = Path(__file__).parent


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ServerProcess:
    def __init__(self, argv: list[str], port: int, log: Path, results: Path | None = None) -> None:
        self.argv, self.port, self.log, self.results = argv, port, log, results
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))  # noqa: SIM115 - the child holds it
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.argv[:2]} did not listen on {self.port}: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a PLC that drops off the network, not one that says goodbye
            self.proc.wait(timeout=10)

    def received(self) -> list[dict[str, Any]]:
        assert self.results is not None
        if not self.results.is_file():
            return []
        return [json.loads(line) for line in self.results.read_text().splitlines() if line.strip()]


def _server(argv: list[str], port: int, tmp_path: Path, name: str, results: bool = True) -> Iterator[ServerProcess]:
    server = ServerProcess(argv, port, tmp_path / f"{name}.log", tmp_path / f"{name}.jsonl" if results else None)
    if results:
        server.argv = [*argv[:3], str(server.results), *argv[3:]]
    server.start()
    yield server
    server.stop()


@pytest.fixture
def modbus_plc(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    yield from _server([sys.executable, str(HERE / "modbus_plc.py"), str(port)], port, tmp_path, "modbus_plc")


@pytest.fixture
def opcua_plc(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    yield from _server([sys.executable, str(HERE / "opcua_plc.py"), str(port)], port, tmp_path, "opcua_plc")


def _mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)
    if exe is None:
        pytest.skip("Debian package mosquitto is not installed (scripts/setup.sh installs it)")
    return exe


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[ServerProcess]:
    exe, port = _mosquitto_exe(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    yield from _server([exe, "-c", str(conf)], port, tmp_path, "mosquitto", results=False)


@dataclass(frozen=True)
class SecurePlc:
    """A server that wants certificates and a user, and the files a client needs to get in."""

    server: ServerProcess
    user: str
    password_file: Path
    certs: dict[str, CertFiles]


@pytest.fixture
def mosquitto_tls(tmp_path: Path) -> Iterator[SecurePlc]:
    """mosquitto on mutual TLS only: a client certificate of the test CA and the one user's password."""
    exe, port = _mosquitto_exe(), free_port()
    passwd_exe = shutil.which("mosquitto_passwd")
    if passwd_exe is None:
        pytest.skip("mosquitto_passwd (Debian package mosquitto) is not installed")
    certs = tls_set(tmp_path)
    password_file = tmp_path / "line4.password"
    password_file.write_text(f"{SECRET}\n")
    subprocess.run([passwd_exe, "-c", "-b", str(tmp_path / "passwd"), "line4", SECRET], check=True,
                   capture_output=True)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"  # as root mosquitto would drop to `mosquitto`
                    f"listener {port} 127.0.0.1\ncafile {certs['ca'].cert}\ncertfile {certs['server'].cert}\n"
                    f"keyfile {certs['server'].key}\nrequire_certificate true\nallow_anonymous false\n"
                    f"password_file {tmp_path / 'passwd'}\npersistence false\n")
    for server in _server([exe, "-c", str(conf)], port, tmp_path, "mosquitto", results=False):
        yield SecurePlc(server, "line4", password_file, certs)


@pytest.fixture
def opcua_secure_plc(tmp_path: Path) -> Iterator[SecurePlc]:
    """The OPC UA PLC with Basic256Sha256 SignAndEncrypt only, trusting the "client" certificate only, and one
    user; "stranger" is a client certificate it does not trust, "impostor" a server certificate it does not hold."""
    certs = {name: opcua_app_cert(tmp_path, name, f"urn:stream-ad:test:{name}", server=name in ("plc", "impostor"))
             for name in ("plc", "client", "stranger", "impostor")}
    password_file = tmp_path / "line4.password"
    password_file.write_text(f"{SECRET}\n")
    port = free_port()
    argv = [sys.executable, str(HERE / "opcua_plc.py"), str(port), "--cert", str(certs["plc"].cert), "--key",
            str(certs["plc"].key), "--trust", str(certs["client"].cert), "--user", "line4", "--password-file",
            str(password_file)]
    for server in _server(argv, port, tmp_path, "opcua_plc"):
        yield SecurePlc(server, "line4", password_file, certs)
