"""The live progress line on stderr: frames in, scored, dropped, recent rate and latency, alarms, in flight. On a
terminal it rewrites itself in place; elsewhere (a log, systemd's journal) it is one line per interval."""

from __future__ import annotations

import time
from typing import TextIO

from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.summary import percentiles


class ProgressLine:
    def __init__(self, out: TextIO, *, enabled: bool, interval_s: float) -> None:
        self.out = out
        self.enabled = enabled
        self.interval_s = interval_s
        self._last = 0.0

    def show(self, ledger: Ledger, elapsed_s: float, *, final: bool = False) -> None:
        """Write the line if the interval has passed since the last one (always when final)."""
        now = time.monotonic()
        if not self.enabled or (not final and now - self._last < self.interval_s):
            return
        self._last = now
        p = percentiles(ledger.recent_latencies())
        line = (
            f"[{elapsed_s:6.1f}s] in {ledger.frames_in}  scored {ledger.scored}  dropped {ledger.dropped_total}  "
            f"{ledger.recent_fps():5.1f} fps  p50 {p.get('p50', 0):6.1f} ms  p99 {p.get('p99', 0):6.1f} ms  "
            f"alarms {ledger.alarms}  in flight {ledger.in_flight}"
        )
        if self.out.isatty():
            self.out.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()
