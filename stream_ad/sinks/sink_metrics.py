"""The sinks' own Prometheus metrics (label sink), with prometheus_client itself: multiprocess-safe in a stage (the
supervisor sets the folder and serves them with the stages' metrics), plain in-process metrics elsewhere (tests,
tools)."""

from __future__ import annotations

from typing import Any

# One family per name and process: prometheus_client refuses a name registered twice, and a process may open several
# sinks of a kind.
_FAMILIES: dict[str, Any] = {}


def _family(kind: type, name: str, documentation: str, **options: Any) -> Any:
    if name not in _FAMILIES:
        _FAMILIES[name] = kind(name, documentation, ["sink"], **options)
    return _FAMILIES[name]


class OutboxMetrics:
    """A PLC sink's outbox: pending verdicts, overflow, deliveries, retries."""

    def __init__(self, sink: str) -> None:
        from prometheus_client import Counter, Gauge

        self.pending = _family(Gauge, "stream_ad_outbox_pending", "Verdicts in a sink's outbox, not yet delivered",
                               multiprocess_mode="livesum").labels(sink)
        self.overflow = _family(Counter, "stream_ad_outbox_overflow_total",
                                "Verdicts dropped from a full outbox (ok verdicts first)").labels(sink)
        self.delivered = _family(Counter, "stream_ad_outbox_delivered_total",
                                 "Verdicts delivered and acknowledged by the PLC or broker").labels(sink)
        self.retries = _family(Counter, "stream_ad_outbox_retries_total",
                               "Failed delivery attempts, retried").labels(sink)


class AlarmStoreMetrics:
    """Alarms pruned from a store past its bounds."""

    def __init__(self, sink: str) -> None:
        from prometheus_client import Counter

        self.pruned = _family(Counter, "stream_ad_alarm_store_pruned_total",
                              "Alarms removed from the alarm store past its count, bytes or age bound").labels(sink)
