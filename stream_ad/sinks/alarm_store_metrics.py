"""The alarm store's metrics, with prometheus_client itself: the supervisor serves them with the stages' metrics."""

from __future__ import annotations

from typing import Any, ClassVar


class AlarmStoreMetrics:
    """Alarms pruned from a store past its bounds (label sink). Multiprocess-safe in a stage (the supervisor sets the
    folder); plain in-process metrics elsewhere (tests, tools)."""

    # One family per process: prometheus_client refuses a name registered twice.
    _families: ClassVar[dict[str, Any]] = {}

    def __init__(self, sink: str) -> None:
        from prometheus_client import Counter

        fam = AlarmStoreMetrics._families
        if not fam:
            fam["pruned"] = Counter("stream_ad_alarm_store_pruned_total",
                                    "Alarms removed from the alarm store past its count, bytes or age bound", ["sink"])
        self.pruned = fam["pruned"].labels(sink)
