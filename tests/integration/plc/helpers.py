"""Verdicts and metric readings for the PLC sink tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from stream_ad.frames import Verdict
from stream_ad.settings import JsonlSinkSettings
from stream_ad.sinks.base import Sink, make_sink


def verdict(frame_id: int, alarm: bool, camera: str = "line1") -> Verdict:
    now = time.time()
    return Verdict(frame_id, camera, now - 0.05, now, 2.0 + frame_id / 1000 if alarm else 0.5, 1.0,
                   "anomaly" if alarm else "ok", {})


def sink(settings: Any, tmp_path: Path) -> Sink:
    return make_sink(settings, tmp_path, "pipeline.sink.outputs.0")


def metric(name: str, sink_label: str) -> float:
    return REGISTRY.get_sample_value(name, {"sink": sink_label}) or 0.0


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def dedup_consecutive(seqs: list[int]) -> tuple[list[int], int]:
    """The sequence with immediate repeats removed (an at-least-once resend), and how many there were."""
    out: list[int] = []
    for s in seqs:
        if not out or out[-1] != s:
            out.append(s)
    return out, len(seqs) - len(out)


__all__ = ["JsonlSinkSettings", "dedup_consecutive", "metric", "sink", "verdict", "wait_until"]
