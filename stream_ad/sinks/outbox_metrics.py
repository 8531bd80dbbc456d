"""A PLC sink's outbox metrics, with prometheus_client itself: the supervisor serves them with the stages' metrics."""

from __future__ import annotations

from typing import Any


class OutboxMetrics:
    """A PLC sink's outbox: pending verdicts, overflow, deliveries, retries (label sink). Multiprocess-safe in a stage
    (the supervisor sets the folder); plain in-process metrics elsewhere (tests, tools)."""

    _families: dict[str, Any] = {}  # one family per process: prometheus_client refuses a name registered twice

    def __init__(self, sink: str) -> None:
        from prometheus_client import Counter, Gauge

        fam = OutboxMetrics._families
        if not fam:
            fam["pending"] = Gauge("stream_ad_outbox_pending", "Verdicts in a sink's outbox, not yet delivered",
                                   ["sink"], multiprocess_mode="livesum")
            fam["overflow"] = Counter("stream_ad_outbox_overflow_total",
                                      "Verdicts dropped from a full outbox (ok verdicts first)", ["sink"])
            fam["delivered"] = Counter("stream_ad_outbox_delivered_total",
                                       "Verdicts delivered and acknowledged by the PLC or broker", ["sink"])
            fam["retries"] = Counter("stream_ad_outbox_retries_total", "Failed delivery attempts, retried", ["sink"])
        self.pending = fam["pending"].labels(sink)
        self.overflow = fam["overflow"].labels(sink)
        self.delivered = fam["delivered"].labels(sink)
        self.retries = fam["retries"].labels(sink)
