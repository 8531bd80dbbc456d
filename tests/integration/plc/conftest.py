"""Real PLC-side servers on 127.0.0.1 for the sink tests, each a process that can be stopped and started again on
its port (an outage): a pymodbus server with a PLC program, an asyncua server, a mosquitto broker."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import free_port

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


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[ServerProcess]:
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)
    if exe is None:
        pytest.skip("Debian package mosquitto is not installed (scripts/setup.sh installs it)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    yield from _server([exe, "-c", str(conf)], port, tmp_path, "mosquitto", results=False)
