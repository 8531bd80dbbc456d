"""systemd integration for real: `stream-ad run` under a notify socket sends READY=1 once its stages are up, then
WATCHDOG=1 from the supervisor's loop, STOPPING=1 on SIGTERM; the template unit passes `systemd-analyze verify`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_ad.pipeline.sdnotify import SystemdNotifier
from tests.conftest import REPO
from tests.integration.conftest import DemoRun, write_pipeline

UNIT = REPO / "systemd" / "stream-ad@.service"
INSTALLED_EXE = "/opt/stream-ad/.venv/bin/stream-ad"


def _receive_until(sock: socket.socket, wanted: str, timeout: float, log: list[str]) -> None:
    """Collect datagrams into log until one holds the line `wanted` (fails after timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            break
        log.append(data)
        if wanted in data.splitlines():
            return
    raise AssertionError(f"no {wanted} within {timeout:.0f} s; received {log}")


def test_run_notifies_ready_watchdog_and_stopping(demo_run: DemoRun, tmp_path: Path) -> None:
    name = f"@stream-ad-test-{os.getpid()}"  # an abstract socket, as systemd may hand out
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    cfg = write_pipeline(tmp_path / "line.yaml", demo_run.model, tmp_path, metrics={"enabled": False},
                         source={"fps": 5, "loop": True})
    env = {**os.environ, "NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000"}  # ping every 0.5 s
    proc = subprocess.Popen([sys.executable, "-m", "stream_ad.cli", "run", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log: list[str] = []
    try:
        _receive_until(sock, "READY=1", 240, log)
        assert not any("WATCHDOG=1" in m for m in log)  # the watchdog starts with the main loop, after READY
        _receive_until(sock, "WATCHDOG=1", 5, log)
        _receive_until(sock, "WATCHDOG=1", 5, log)  # and keeps coming
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _receive_until(sock, "STOPPING=1", 10, log)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    assert proc.returncode == 0, err.decode()[-3000:]
    ready = next(m for m in log if "READY=1" in m.splitlines())
    assert "STATUS=running: 5 stages up, camera cam0" in ready


def test_notifier_sends_to_a_socket_path_and_respects_watchdog_pid(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        SystemdNotifier({"NOTIFY_SOCKET": str(path)}).ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
        mine = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000",
                                "WATCHDOG_PID": str(os.getpid())})
        assert mine.watchdog_interval_s == 2.0
        mine.watchdog("ok")
        assert sock.recv(4096) == b"WATCHDOG=1\nSTATUS=ok"
        # A watchdog meant for another process, or no socket at all: no pings.
        assert SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000",
                                "WATCHDOG_PID": "1"}).watchdog_interval_s is None
        assert SystemdNotifier({"WATCHDOG_USEC": "4000000"}).watchdog_interval_s is None


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; scripts/setup.sh installs it as root)")
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_EXE} run /etc/stream-ad/%i.yaml" in text
    # verify checks that ExecStart's program exists: point an instance at this checkout's real one.
    exe = Path(sys.executable).parent / "stream-ad"
    assert exe.is_file()
    unit = tmp_path / "stream-ad@line1.service"
    unit.write_text(text.replace(INSTALLED_EXE, str(exe)))
    out = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and not out.stderr.strip(), out.stdout + out.stderr
    for line in ("Type=notify", "ExecReload=", "WatchdogSec=", "Restart=on-failure", "User=stream-ad",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/stream-ad", "PrivateTmp=yes",
                 "ProtectHome=yes"):
        assert any(row.startswith(line) for row in text.splitlines()), line
