"""Notices: what the stage processes tell the supervisor, one frozen dataclass per kind, encoded and decoded here.

    FrameIn       the source read a camera frame
    FrameDone     the last stage emitted the frame's verdict
    FrameDropped  a stage dropped a frame (or a message that was no frame), with the reason
    StageReady    a stage process is up and waits for frames
    StageFatal    a stage process cannot start or go on (the run stops with its error)
    CameraStatus  the source's camera is up / stale (or came up / went down)
    SourceDone    a file source reached its end
    Heartbeat     the stage's worker loop made progress since the last one (or waits for input): it is not hung

On the wire a notice is one small JSON object: {"t": kind, "stage": label, "pid": pid, ...its fields}. The sender's
stage label and pid travel in an Envelope around the notice. decode() checks every field against its dataclass and
raises BadNotice saying what is wrong, so the supervisor logs a malformed notice and carries on.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import typing
from dataclasses import asdict, dataclass, fields
from types import NoneType, UnionType
from typing import Any

from stream_ad.frames import CameraState


class NoticeKind(enum.StrEnum):
    FRAME_IN = "in"
    FRAME_DONE = "done"
    FRAME_DROPPED = "drop"
    STAGE_READY = "ready"
    STAGE_FATAL = "fatal"
    CAMERA_STATUS = "camera"
    SOURCE_DONE = "source_done"
    HEARTBEAT = "beat"


class DropReason(enum.StrEnum):
    """Why the pipeline dropped a frame: Prometheus label values and ledger keys. A source reports its own reasons
    too (decode_error, newest_only, buffer_underrun: Capture.drop_reason), so FrameDropped.reason is a plain str."""

    QUEUE_FULL = "queue_full"
    BAD_FRAME = "bad_frame"
    BAD_SCORE = "bad_score"  # the model scored the frame NaN or infinite: no verdict can be made
    STAGE_ERROR = "stage_error"
    FILTERED = "filtered"
    SHUTDOWN = "shutdown"
    STAGE_RESTART = "stage_restart"
    LOST = "lost"
    SINK_ERROR = "sink_error"  # a configured sink did not durably take the verdict (a full disk, a failed outbox)
    STAGE_HUNG = "stage_hung"  # lost inside a stage killed for sending no heartbeat (pipeline.supervisor.hung_after_s)
    STALE = "stale"  # older than pipeline.max_frame_age_ms at the decide stage: a verdict now would come too late


@dataclass(frozen=True)
class FrameIn:
    camera: str
    frame_id: int
    t_capture: float


@dataclass(frozen=True)
class FrameDone:
    camera: str
    frame_id: int
    t_capture: float
    t_verdict: float
    score: float | None
    verdict: str | None
    run_id: str = ""  # the run that judged it (RunPlan.run_id), as in the sinks' records


@dataclass(frozen=True)
class FrameDropped:
    camera: str | None  # None with frame_id: a message whose header could not be read
    frame_id: int | None
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class StageReady:
    pass


@dataclass(frozen=True)
class StageFatal:
    error: str


@dataclass(frozen=True)
class CameraStatus:
    camera: str
    up: bool
    stale: bool
    event: CameraState | None = None  # set when the camera itself reported a change (a network camera)
    detail: str = ""


@dataclass(frozen=True)
class SourceDone:
    camera: str
    last_id: int


@dataclass(frozen=True)
class Heartbeat:
    pass


Notice = FrameIn | FrameDone | FrameDropped | StageReady | StageFatal | CameraStatus | SourceDone | Heartbeat

KINDS: dict[NoticeKind, type[Notice]] = {
    NoticeKind.FRAME_IN: FrameIn,
    NoticeKind.FRAME_DONE: FrameDone,
    NoticeKind.FRAME_DROPPED: FrameDropped,
    NoticeKind.STAGE_READY: StageReady,
    NoticeKind.STAGE_FATAL: StageFatal,
    NoticeKind.CAMERA_STATUS: CameraStatus,
    NoticeKind.SOURCE_DONE: SourceDone,
    NoticeKind.HEARTBEAT: Heartbeat,
}
KIND_OF: dict[type[Notice], NoticeKind] = {cls: kind for kind, cls in KINDS.items()}


@dataclass(frozen=True)
class Envelope:
    """A received notice and who sent it: the stage's label and its process id."""

    stage: str
    pid: int
    notice: Notice


class BadNotice(ValueError):
    """Bytes on the notice socket that are not a well-formed notice."""


def encode(notice: Notice, stage: str, pid: int) -> bytes:
    body = {"t": KIND_OF[type(notice)].value, "stage": stage, "pid": pid, **asdict(notice)}
    return json.dumps(body, separators=(",", ":")).encode()


def _typed(value: Any, hint: Any, key: str) -> Any:
    """`value` as the field type `hint` (str, int, float, bool, a StrEnum, or X | None); BadNotice if it is not."""
    options = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
    if value is None:
        if NoneType in options:
            return None
        raise BadNotice(f"field {key!r} is missing or null")
    for option in options:
        if isinstance(option, type) and issubclass(option, enum.Enum):
            try:
                return option(value)
            except ValueError:
                continue
        # bool is an int in Python, never in a notice; ints are fine where a float is wanted.
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    shown = hint.__name__ if isinstance(hint, type) else hint
    raise BadNotice(f"field {key!r} must be {shown}, got {value!r}")


@functools.cache
def _field_types(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    """A notice class's field types and names, resolved once: the supervisor decodes a few notices per frame, and
    resolving the (string) annotations took most of a decode's 50 us."""
    return typing.get_type_hints(cls), frozenset(f.name for f in fields(cls))


def decode(data: bytes) -> Envelope:
    """Bytes -> Envelope; BadNotice naming what is wrong (not JSON, unknown kind, a missing or mistyped field)."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadNotice(f"not UTF-8 JSON ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(body, dict):
        raise BadNotice(f"a notice is a JSON object, got {type(body).__name__}")
    kind = body.pop("t", None)
    try:
        cls = KINDS[NoticeKind(kind)]
    except ValueError:
        raise BadNotice(f"unknown notice kind {kind!r}; known: {', '.join(NoticeKind)}") from None
    stage = _typed(body.pop("stage", None), str, "stage")
    pid = _typed(body.pop("pid", None), int, "pid")
    hints, known = _field_types(cls)
    if body.keys() - known:
        raise BadNotice(f"{cls.__name__} has no field(s) {sorted(body.keys() - known)}")
    values = {name: _typed(body[name], hints[name], name) for name in known if name in body}
    try:
        notice = cls(**values)
    except TypeError as exc:  # a field without a default is missing
        raise BadNotice(f"{cls.__name__}: {exc}") from None
    return Envelope(stage, pid, notice)
