"""A repeating event is logged once per interval, and the next line says how many were left out."""

from __future__ import annotations

import logging
import time

import pytest

from stream_ad.pipeline.throttled_log import ThrottledLog


def test_one_line_per_interval_then_the_count_left_out(caplog: pytest.LogCaptureFixture) -> None:
    lines = ThrottledLog(logging.getLogger("test.throttled"), every_s=0.2)
    with caplog.at_level(logging.WARNING, logger="test.throttled"):
        for i in range(100):
            lines.warning("refused peer %d", i)
        time.sleep(0.25)
        lines.warning("refused peer %d", 100)
    assert [r.getMessage() for r in caplog.records] == ["refused peer 0",
                                                       "refused peer 100 (and 99 more in the last 0.2 s)"]
