"""systemd's notify protocol (sd_notify(3)) for a Type=notify unit: READY=1 when every stage is up, WATCHDOG=1 from
the supervisor's main loop (a hung supervisor misses it and systemd restarts the unit), STOPPING=1 on the way out.

One datagram per message to $NOTIFY_SOCKET (a path, or an abstract name written with a leading @). Without
NOTIFY_SOCKET (not under systemd) every call does nothing; with it, a failed send is logged, never raised: the
pipeline keeps serving the line and systemd's own timeouts report the silence.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)

SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_ENV = ("WATCHDOG_USEC", "WATCHDOG_PID")


def _address(raw: str) -> str:
    return "\0" + raw[1:] if raw.startswith("@") else raw


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get(SOCKET_ENV) or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        # systemd's rule (sd_watchdog_enabled): ping when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is us.
        wanted = self.address is not None and pid in (None, str(os.getpid()))
        # Twice per watchdog period, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s = int(usec) / 2e6 if usec is not None and wanted else None
        self._last_ping = 0.0

    def notify(self, *fields: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(_address(self.address))
                sock.sendall("\n".join(fields).encode())
        except OSError as exc:
            log.warning("sd_notify to %s failed (%s): %s", self.address, ", ".join(fields), exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def watchdog(self, status: str) -> None:
        """Ping if half the watchdog period has passed since the last ping (cheap to call every loop)."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.notify("WATCHDOG=1", f"STATUS={status}")

    def reloading(self) -> None:
        self.notify("RELOADING=1", "STATUS=reloading the pipeline file")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping: draining frames in flight")


def child_environment(env: dict[str, str]) -> dict[str, str]:
    """The stage processes must not speak for the unit: only the supervisor notifies."""
    return {k: v for k, v in env.items() if k != SOCKET_ENV and k not in WATCHDOG_ENV}
