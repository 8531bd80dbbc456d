"""A stage's heartbeats: proof that its worker loop moves, not merely that its process exists.

The worker ticks at each turn of its loop (a batch taken, or none within the poll time; each try to send
downstream) and marks the waits that may last by right (a camera's next frame: a triggered camera may wait minutes
for a part; a camera that delivers nothing is the stale watchdog's). A thread sends a heartbeat every interval while
the worker ticked since the last one or is in such a wait. So no heartbeat comes from a stage whose worker is stuck
in its stage code (a process() that never returns), nor from a stopped (SIGSTOP) or frozen process: the supervisor
kills and restarts a ready stage silent for pipeline.supervisor.hung_after_s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

BEATS_PER_LIMIT = 5  # heartbeats per hung_after_s: one late heartbeat is no hang


class Liveness:
    def __init__(self, send: Callable[[], None], hung_after_s: float) -> None:
        self.interval_s = hung_after_s / BEATS_PER_LIMIT
        self._send = send
        self._ticks = 0  # written by the worker only
        self._waiting = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def tick(self) -> None:
        """The worker loop came round (or tried to send again): it is not stuck."""
        self._ticks += 1

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A wait that may last by right (the camera's next frame): the worker counts as alive meanwhile."""
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
            self._ticks += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _beat(self) -> None:
        seen = self._ticks
        while not self._stop.wait(self.interval_s):
            ticks = self._ticks
            if ticks != seen or self._waiting:
                seen = ticks
                self._send()
