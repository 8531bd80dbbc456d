"""Notices from the stages to the supervisor: every kind survives the wire, and anything malformed is refused with
a reason (the supervisor logs it and carries on)."""

from __future__ import annotations

import json

import pytest

from stream_ad.frames import CameraState
from stream_ad.pipeline.notices import (
    BadNotice,
    CameraStatus,
    DropReason,
    Envelope,
    FrameDone,
    FrameDropped,
    FrameIn,
    Heartbeat,
    SourceDone,
    StageFatal,
    StageReady,
    decode,
    encode,
)

EVERY_KIND = [
    FrameIn("cam0", 17, 1718000000.25),
    FrameDone("cam0", 17, 1718000000.25, 1718000000.5, 3.75, "anomaly"),
    FrameDone("cam0", 18, 1718000000.25, 1718000000.5, None, None),
    FrameDone("cam0", 1_750_000_000_000_017, 1750000000.25, 1750000000.5, 0.5, "ok",
              "0b5c2a9e-3f1d-4c55-9a51-6a8f1e2d7c44"),
    FrameDropped("cam0", 17, DropReason.QUEUE_FULL, "infer queue full (drop_oldest)"),
    FrameDropped(None, None, DropReason.BAD_FRAME, "header is not UTF-8 JSON"),
    FrameDropped("cam0", 3, "decode_error", "cannot decode image"),  # a source's own reason
    StageReady(),
    StageFatal("FileNotFoundError: no model"),
    CameraStatus("cam0", up=True, stale=False, event=CameraState.UP, detail="connected"),
    CameraStatus("cam0", up=False, stale=True, detail="no frame for 2.1 s"),
    SourceDone("cam0", last_id=82),
    Heartbeat(),
]


@pytest.mark.parametrize("notice", EVERY_KIND, ids=lambda n: type(n).__name__)
def test_every_notice_survives_the_wire(notice: object) -> None:
    assert decode(encode(notice, "infer", 4242)) == Envelope("infer", 4242, notice)  # type: ignore[arg-type]


def test_drop_reasons_keep_their_label_values() -> None:
    body = json.loads(encode(FrameDropped("cam0", 1, DropReason.STAGE_RESTART), "pipeline", 1))
    assert body == {"t": "drop", "stage": "pipeline", "pid": 1, "camera": "cam0", "frame_id": 1,
                    "reason": "stage_restart", "detail": ""}


def _raw(**body: object) -> bytes:
    return json.dumps({"stage": "infer", "pid": 7, **body}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe not utf-8", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "a notice is a JSON object, got list"),
        (_raw(t="teleport"), "unknown notice kind 'teleport'"),
        (_raw(), "unknown notice kind None"),
        (json.dumps({"t": "ready", "pid": 7}).encode(), "field 'stage' is missing"),
        (_raw(t="ready", pid="7"), "field 'pid' must be int"),
        (_raw(t="in", camera="cam0", frame_id=True, t_capture=1.0), "field 'frame_id' must be int"),
        (_raw(t="in", camera="cam0", frame_id=1, t_capture=float("nan")), "field 't_capture' must be float"),
        (_raw(t="in", camera="cam0"), "missing 2 required"),
        (_raw(t="done", camera="cam0", frame_id=1, t_capture=1, t_verdict=2, score="high", verdict="ok"),
         "field 'score' must be float | None"),
        (_raw(t="ready", extra=1), "StageReady has no field"),
        (_raw(t="camera", camera="cam0", up=1, stale=False), "field 'up' must be bool"),
        (_raw(t="camera", camera="cam0", up=True, stale=False, event="sideways"), "field 'event'"),
    ],
)
def test_malformed_notices_are_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(BadNotice, match=message):
        decode(data)
