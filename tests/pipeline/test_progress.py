"""The live progress line: what it shows, at most once per interval, and nothing when disabled."""

from __future__ import annotations

import io
import time

from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.progress import ProgressLine


def test_progress_line_shows_the_counts_once_per_interval() -> None:
    ledger = Ledger()
    now = time.time()
    for fid in range(3):
        ledger.on_in("cam0", fid, now)
    ledger.on_done("cam0", 0, now, now + 0.05, 4.0, "anomaly")
    out = io.StringIO()
    line = ProgressLine(out, enabled=True, interval_s=60.0)
    line.show(ledger, 1.5)
    line.show(ledger, 1.6)  # within the interval: nothing
    line.show(ledger, 1.7, final=True)  # the last line always
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[   1.5s] in 3  scored 1  dropped 0")
    assert "alarms 1  in flight 2" in lines[0]


def test_a_disabled_progress_line_writes_nothing() -> None:
    out = io.StringIO()
    ProgressLine(out, enabled=False, interval_s=0.1).show(Ledger(), 1.0, final=True)
    assert out.getvalue() == ""
