"""Frames on the wire: JSON header + raw buffers, and every malformed message rejected with the frame's name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_ad.frames import Frame
from stream_ad.pipeline.wire import BadMessage, decode, encode


def _frame() -> Frame:
    rng = np.random.default_rng(0)
    return Frame(
        frame_id=17, camera="cam0", t_capture=1700000000.25,
        image=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
        inputs=rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
        score=1.5, verdict="anomaly", threshold=1.2, meta={"path": "/x/y.png", "placements": [[8, 8, 0, 48, 0, 64]]},
    )


def _wire(parts: list) -> list[bytes]:
    return [bytes(memoryview(p).cast("B")) if not isinstance(p, bytes) else p for p in parts]


def test_round_trip_keeps_every_field_and_pixel() -> None:
    frame = _frame()
    parts = _wire(encode(frame))
    header = json.loads(parts[0])  # the header is plain JSON (no pickle)
    assert header["id"] == 17 and header["cam"] == "cam0"
    assert header["arrays"] == [["image", "uint8", [48, 64, 3]], ["inputs", "float32", [2, 3, 8, 8]]]
    assert len(parts) == 3 and len(parts[1]) == 48 * 64 * 3
    back = decode(parts)
    assert back.key == "cam0/17" and back.t_capture == frame.t_capture
    np.testing.assert_array_equal(back.image, frame.image)
    np.testing.assert_array_equal(back.inputs, frame.inputs)
    assert (back.score, back.verdict, back.threshold, back.meta) == (1.5, "anomaly", 1.2, frame.meta)
    assert back.t_sent > 0


def test_a_frame_without_arrays_is_one_part() -> None:
    parts = _wire(encode(Frame(frame_id=0, camera="c", t_capture=1.0, score=0.1)))
    assert len(parts) == 1
    assert decode(parts).score == pytest.approx(0.1)


def _header(parts: list[bytes]) -> dict:
    return json.loads(parts[0])


def _with_header(parts: list[bytes], **changes) -> list[bytes]:
    header = _header(parts)
    header.update(changes)
    return [json.dumps(header).encode(), *parts[1:]]


@pytest.mark.parametrize(
    ("mangle", "message", "named"),
    [
        (lambda p: [b"\xff\xfe not json", *p[1:]], "not UTF-8 JSON", False),
        (lambda p: [b"[1, 2]", *p[1:]], "must be a JSON object", False),
        (lambda p: p[:2], "truncated", True),
        (lambda p: [p[0], p[1][:-5], p[2]], "corrupt or truncated payload", True),
        (lambda p: [*p, b"extra"], "truncated", True),
        (lambda p: _with_header(p, arrays=[["image", "int64", [48, 64, 3]], ["inputs", "float32", [2, 3, 8, 8]]]),
         "dtype 'int64'", True),
        (lambda p: _with_header(p, arrays=[["image", "uint8", [48, -64, 3]], ["inputs", "float32", [2, 3, 8, 8]]]),
         "invalid shape", True),
        (lambda p: _with_header(p, arrays=[["pickle", "uint8", [9216]], ["inputs", "float32", [2, 3, 8, 8]]]),
         "unknown or repeated array", True),
        (lambda p: _with_header(p, ts="yesterday"), "'ts' must be a finite number", True),
        (lambda p: _with_header(p, id=-3), "non-negative integer", False),
        (lambda p: _with_header(p, v=99), "format version", True),
        (lambda p: _with_header(p, verdict="maybe"), "verdict must be", True),
    ],
)
def test_malformed_messages_raise_bad_message_naming_the_frame(mangle, message: str, named: bool) -> None:
    parts = _wire(encode(_frame()))
    with pytest.raises(BadMessage, match=message) as err:
        decode(mangle(parts))
    if named:
        assert err.value.frame == "cam0/17"
        assert "cam0/17" in str(err.value)


def test_empty_message() -> None:
    with pytest.raises(BadMessage, match="empty"):
        decode([])
