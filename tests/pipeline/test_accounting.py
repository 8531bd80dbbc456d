"""Notices about frames and the camera end up in the ledger and in the supervisor's Prometheus metrics."""

from __future__ import annotations

from stream_ad.frames import CameraState
from stream_ad.pipeline.accounting import Accounting
from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.metrics import SupervisorMetrics
from stream_ad.pipeline.notices import (
    CameraStatus,
    DropReason,
    FrameDone,
    FrameDropped,
    FrameIn,
)


def _value(metrics: SupervisorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_frames_are_counted_by_fate_and_the_camera_state_is_exported() -> None:
    metrics = SupervisorMetrics({"cam0": 2.0})
    ledger = Ledger(metrics)
    acc = Accounting(ledger, metrics)
    acc.add_camera("cam0")
    assert _value(metrics, "stream_ad_frames_in_total", camera="cam0") == 0  # the series exist before any frame
    assert _value(metrics, "stream_ad_camera_up", camera="cam0") == 0

    acc.record(CameraStatus("cam0", up=False, stale=False), "source")  # a network camera, not connected yet
    acc.record(CameraStatus("cam0", up=True, stale=False, event=CameraState.UP), "source")
    for fid in range(3):
        acc.record(FrameIn("cam0", fid, 100.0 + fid), "source")
    acc.record(FrameDone("cam0", 0, 100.0, 100.25, 3.5, "anomaly"), "sink")
    acc.record(FrameDone("cam0", 1, 101.0, 101.5, 1.0, "ok"), "sink")
    acc.record(FrameDropped("cam0", 2, DropReason.QUEUE_FULL, "infer queue full"), "infer")

    assert (ledger.frames_in, ledger.scored, ledger.alarms, ledger.in_flight) == (3, 2, 1, 0)
    assert ledger.drops_by_reason() == {"queue_full": 1}
    assert _value(metrics, "stream_ad_frames_scored_total", camera="cam0") == 2
    assert _value(metrics, "stream_ad_alarms_total", camera="cam0") == 1
    assert _value(metrics, "stream_ad_frames_dropped_total", camera="cam0", stage="infer", reason="queue_full") == 1
    assert _value(metrics, "stream_ad_end_to_end_latency_seconds_count", camera="cam0") == 2
    assert _value(metrics, "stream_ad_camera_up", camera="cam0") == 1
    assert _value(metrics, "stream_ad_camera_reconnects_total", camera="cam0") == 0  # the first connection

    acc.record(CameraStatus("cam0", up=False, stale=True, event=CameraState.DOWN, detail="lost"), "source")
    assert _value(metrics, "stream_ad_camera_up", camera="cam0") == 0
    assert _value(metrics, "stream_ad_camera_stale", camera="cam0") == 1
    acc.record(CameraStatus("cam0", up=True, stale=False, event=CameraState.UP), "source")
    assert _value(metrics, "stream_ad_camera_reconnects_total", camera="cam0") == 1


def test_a_drop_without_a_frame_id_is_a_rejected_message_not_a_camera_frame() -> None:
    metrics = SupervisorMetrics()
    ledger = Ledger(metrics)
    acc = Accounting(ledger, metrics)
    acc.add_camera("cam0")
    acc.record(FrameDropped(None, None, DropReason.BAD_FRAME, "not JSON"), "preprocess")
    assert ledger.foreign_by_reason() == {"bad_frame": 1}
    assert ledger.drops_by_reason() == {} and ledger.unaccounted == 0
