"""A frame on the wire: a small JSON header and the raw array buffers, as one ZeroMQ multipart message.

    part 0   header, UTF-8 JSON: {"v": 1, "id": 17, "cam": "cam0", "ts": 1718000000.123, "sent": ...,
                                  "arrays": [["image", "uint8", [480, 640, 3]], ...], "score": ..., "meta": {...}}
    part 1.. one raw C-order buffer per entry of "arrays", in that order

No pickling anywhere: a receiver trusts nothing but JSON and byte counts. Every way a message can be malformed
(not JSON, missing keys, wrong types, an unknown dtype, a buffer whose size disagrees with its shape, missing or
extra parts) raises BadMessage naming the frame when its id could be read, so a stage counts and skips it.
Large buffers travel without copies (pyzmq zero-copy send; np.frombuffer on receipt).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np

from stream_ad.frames import Frame

VERSION = 1
DTYPES = frozenset({"uint8", "uint16", "float16", "float32"})
MAX_DIMS = 4
MAX_ARRAY_BYTES = 1 << 30
ARRAY_FIELDS = ("image", "inputs", "anomaly_map")


class BadMessage(ValueError):
    """A message that is not a well-formed frame. `frame` names it ("cam0/17") when the header could be read."""

    def __init__(self, detail: str, camera: str | None = None, frame_id: int | None = None) -> None:
        self.detail = detail
        self.camera = camera
        self.frame_id = frame_id
        super().__init__(f"frame {self.frame}: {detail}")

    @property
    def frame(self) -> str:
        if self.frame_id is None:
            return "<unknown>"
        return f"{self.camera or '?'}/{self.frame_id}"


def encode(frame: Frame) -> list[Any]:
    """Frame -> multipart parts: [header bytes, buffer, ...]. Buffers are contiguous arrays (sent without copy)."""
    arrays: list[list[Any]] = []
    buffers: list[Any] = []
    for name in ARRAY_FIELDS:
        value = getattr(frame, name)
        if value is None:
            continue
        if value.dtype.name not in DTYPES:
            raise ValueError(f"frame {frame.key}: {name} has dtype {value.dtype}, the wire carries {sorted(DTYPES)}")
        value = np.ascontiguousarray(value)
        arrays.append([name, value.dtype.name, list(value.shape)])
        buffers.append(value if value.size else b"")
    header: dict[str, Any] = {
        "v": VERSION,
        "id": frame.frame_id,
        "cam": frame.camera,
        "ts": frame.t_capture,
        "sent": frame.t_sent or time.time(),
        "arrays": arrays,
    }
    if frame.score is not None:
        header["score"] = frame.score
    if frame.verdict is not None:
        header["verdict"] = frame.verdict
    if frame.threshold is not None:
        header["threshold"] = frame.threshold
    if frame.meta:
        header["meta"] = frame.meta
    return [json.dumps(header, separators=(",", ":")).encode(), *buffers]


def _buffer(part: Any) -> memoryview:
    """A received part (zmq.Frame, bytes or memoryview) as a byte view without copying."""
    buf = getattr(part, "buffer", part)
    return memoryview(buf).cast("B")


def _number(header: dict[str, Any], key: str, frame: tuple[str | None, int | None]) -> float:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadMessage(f"header field {key!r} must be a finite number, got {value!r}", *frame)
    return float(value)


def decode(parts: list[Any]) -> Frame:
    """Multipart parts -> Frame; BadMessage on anything malformed. Arrays are read-only views of the parts."""
    if not parts:
        raise BadMessage("empty message")
    try:
        header = json.loads(bytes(_buffer(parts[0])).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"header is not UTF-8 JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise BadMessage(f"header must be a JSON object, got {type(header).__name__}")
    camera = header.get("cam")
    frame_id = header.get("id")
    ident = (
        camera if isinstance(camera, str) else None,
        frame_id if isinstance(frame_id, int) and not isinstance(frame_id, bool) else None,
    )
    if header.get("v") != VERSION:
        raise BadMessage(f"message format version {header.get('v')!r}, this stream_ad reads {VERSION}", *ident)
    if ident[0] is None or not ident[0]:
        raise BadMessage(f"header field 'cam' must be a non-empty string, got {camera!r}", *ident)
    if ident[1] is None or frame_id < 0:
        raise BadMessage(f"header field 'id' must be a non-negative integer, got {frame_id!r}", *ident)
    t_capture = _number(header, "ts", ident)
    t_sent = _number(header, "sent", ident)
    arrays = header.get("arrays")
    if not isinstance(arrays, list):
        raise BadMessage("header field 'arrays' must be a list", *ident)
    if len(parts) != 1 + len(arrays):
        raise BadMessage(f"header lists {len(arrays)} buffer(s) but the message has {len(parts) - 1} (truncated?)", *ident)
    frame = Frame(frame_id=frame_id, camera=camera, t_capture=t_capture, t_sent=t_sent)
    seen: set[str] = set()
    for spec, part in zip(arrays, parts[1:]):
        if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[2], list)):
            raise BadMessage(f"array spec must be [name, dtype, shape], got {spec!r}", *ident)
        name, dtype, shape = spec
        if name not in ARRAY_FIELDS or name in seen:
            raise BadMessage(f"unknown or repeated array {name!r} (known: {', '.join(ARRAY_FIELDS)})", *ident)
        seen.add(name)
        if dtype not in DTYPES:
            raise BadMessage(f"array {name!r} has dtype {dtype!r}; allowed: {', '.join(sorted(DTYPES))}", *ident)
        if len(shape) > MAX_DIMS or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise BadMessage(f"array {name!r} has an invalid shape {shape!r}", *ident)
        itemsize = np.dtype(dtype).itemsize
        expected = math.prod(shape) * itemsize
        if expected > MAX_ARRAY_BYTES:
            raise BadMessage(f"array {name!r} of shape {shape} is over {MAX_ARRAY_BYTES} bytes", *ident)
        buf = _buffer(part)
        if buf.nbytes != expected:
            raise BadMessage(
                f"array {name!r} holds {buf.nbytes} bytes but dtype {dtype} and shape {shape} need {expected} "
                "(corrupt or truncated payload)",
                *ident,
            )
        setattr(frame, name, np.frombuffer(buf, dtype=dtype).reshape(shape))
    for key in ("score", "threshold"):
        if key in header:
            setattr(frame, key, _number(header, key, ident))
    verdict = header.get("verdict")
    if verdict is not None and verdict not in ("ok", "anomaly"):
        raise BadMessage(f"verdict must be 'ok' or 'anomaly', got {verdict!r}", *ident)
    frame.verdict = verdict
    meta = header.get("meta", {})
    if not isinstance(meta, dict):
        raise BadMessage("header field 'meta' must be a JSON object", *ident)
    frame.meta = meta
    return frame

