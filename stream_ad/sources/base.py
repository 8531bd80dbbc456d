"""What every source shares: the Camera interface the source stage reads, and pacing at a camera's frame rate."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

from stream_ad.frames import CameraEvent, Capture

log = logging.getLogger("stream_ad.sources")


class Camera(ABC):
    """A source of frames: iterate it for Capture items (and CameraEvent items when it reports its own state), close
    it when done."""

    # True: it yields CameraEvent(UP / DOWN) as it connects and loses the camera (a network camera), so it starts
    # down; False: it is up once open (a file).
    reports_camera_state: ClassVar[bool] = False

    @abstractmethod
    def __iter__(self) -> Iterator[Capture | CameraEvent]: ...

    def close(self) -> None:  # a camera that holds nothing between frames keeps this one
        """Release the camera (each iteration closes what it opened; this is for what outlives one)."""


class Pacer:
    """Releases frame k at t0 + k / fps, like a camera's shutter: a late reader catches up (bursts) rather than
    shifting the schedule, so the camera's rate holds however slow what follows is. None: no pacing."""

    # Behind by more than this, the schedule restarts from now (a camera would have overwritten those frames).
    MAX_LAG_S = 1.0

    def __init__(self, fps: float | None) -> None:
        self.interval = 1.0 / fps if fps else 0.0
        self._t0: float | None = None
        self._k = 0

    def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0, self._k = now, 0
        due = self._t0 + self._k * self.interval
        if now - due > self.MAX_LAG_S:
            log.warning("source is %.1f s behind its %.1f fps schedule; restarting the schedule", now - due,
                        1.0 / self.interval)
            self._t0, self._k, due = now, 0, now
        if due > now:
            time.sleep(due - now)
        self._k += 1
