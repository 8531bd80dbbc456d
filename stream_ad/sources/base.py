"""What every source shares: pacing at a camera's frame rate."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("stream_ad.sources")


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
