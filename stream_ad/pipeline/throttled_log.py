"""A log line for an event that can repeat without bound (a peer retrying a refused handshake many times a second, a
flood of forged notices): at most one line per interval, the next one says how many were left out."""

from __future__ import annotations

import logging
import threading
import time


class ThrottledLog:
    def __init__(self, logger: logging.Logger, every_s: float) -> None:
        self.logger = logger
        self.every_s = every_s
        self._next = 0.0  # monotonic time from which the next line may be written
        self._skipped = 0
        self._lock = threading.Lock()

    def warning(self, msg: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._skipped += 1
                return
            skipped, self._skipped, self._next = self._skipped, 0, now + self.every_s
        if skipped:
            msg += f" (and {skipped} more in the last {self.every_s:g} s)"
        self.logger.warning(msg, *args)
