"""The plain data that crosses packages: what a camera delivers, a frame on its way through the stages, a verdict.

Imports nothing of stream_ad: sources produce Capture and CameraEvent, the stages fill a Frame, the sinks take
Verdicts (and, once per run, the ModelInfo of the model that judged them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class CameraState(enum.StrEnum):
    UP = "up"  # connected, delivering frames
    DOWN = "down"  # lost, reconnecting


@dataclass(frozen=True)
class Capture:
    """What a source yields per camera frame: the pixels, or why there are none (a decode error)."""

    image: np.ndarray | None  # (H, W, 3) uint8, or None with error set
    t_capture: float  # wall-clock capture time, time.time() seconds
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able: source path, URL, pts, ...
    error: str | None = None
    drop_reason: str = "decode_error"  # the ledger's reason when error is set (a camera's skipped frame: its own)


@dataclass(frozen=True)
class CameraEvent:
    """A source's report about its camera as it connects and loses it."""

    state: CameraState
    detail: str = ""


@dataclass
class Frame:
    """One camera frame and what the stages add to it (each stage process fills in its part of its own copy)."""

    frame_id: int
    camera: str
    t_capture: float  # wall-clock capture time, time.time() seconds
    image: np.ndarray | None = None  # the camera frame, (H, W, 3) or (H, W) uint8
    inputs: np.ndarray | None = None  # model inputs after preprocessing, (T, 3, S, S) float32
    anomaly_map: np.ndarray | None = None  # (H, W) at the frame's own size
    score: float | None = None
    verdict: str | None = None  # "ok" | "anomaly"
    threshold: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able extras (source path, placements, ...)
    t_sent: float = 0.0  # when the previous stage sent it (time.time()); queue wait = receipt - t_sent
    t_received: float = 0.0  # local only: when this stage received it

    @property
    def key(self) -> str:
        return f"{self.camera}/{self.frame_id}"


# Frame.meta key under which the decide stage records the model that judged the frame (ModelInfo's fields).
MODEL_KEY = "model"


@dataclass(frozen=True)
class ModelInfo:
    """The model that judges the frames, as the sinks record it with each alarm: told once per run, not per frame."""

    version: str  # the artefact's identity (its folder, method and state sha256)
    pixel_threshold: float | None = None  # map value above which a pixel is anomalous; None: not calibrated


def judging_model(frame: Frame) -> ModelInfo | None:
    """The model that judged the frame, as the decide stage stamped it; None before that stage."""
    model = frame.meta.get(MODEL_KEY)
    return ModelInfo(**model) if model is not None else None


@dataclass(frozen=True)
class Verdict:
    frame_id: int
    camera: str
    t_capture: float  # time.time() seconds
    t_verdict: float
    score: float
    threshold: float
    verdict: str  # "ok" | "anomaly"
    meta: dict[str, Any]
    anomaly_map: np.ndarray | None = None
    image: np.ndarray | None = None
    run_id: str = ""  # the `stream-ad run` that judged it (its frame ids are that run's)
    model: ModelInfo | None = None  # the model that judged it (its camera's); None outside a pipeline

    @property
    def latency_s(self) -> float:
        return self.t_verdict - self.t_capture

    @property
    def alarm(self) -> bool:
        return self.verdict == "anomaly"

    @property
    def score_normalised(self) -> float | None:
        """score / threshold, so operators read 1.0 as the threshold whatever the model's own scale (None for a
        threshold <= 0, where the ratio means nothing)."""
        return self.score / self.threshold if self.threshold > 0 else None

    @classmethod
    def from_frame(cls, frame: Frame, t_verdict: float, run_id: str) -> Verdict:
        if frame.score is None or frame.verdict is None or frame.threshold is None:
            raise ValueError(f"frame {frame.key} reached the sinks without a score, threshold and verdict")
        return cls(frame.frame_id, frame.camera, frame.t_capture, t_verdict, frame.score, frame.threshold,
                   frame.verdict, frame.meta, frame.anomaly_map, frame.image, run_id, judging_model(frame))

    def record(self) -> dict[str, Any]:
        rec = {
            "frame_id": self.frame_id,
            "camera": self.camera,
            "t_capture": round(self.t_capture, 6),
            "t_verdict": round(self.t_verdict, 6),
            "latency_ms": round(self.latency_s * 1000.0, 3),
            "score": round(self.score, 6),
            "threshold": round(self.threshold, 6),
            "score_normalised": None if self.score_normalised is None else round(self.score_normalised, 4),
            "verdict": self.verdict,
            "run_id": self.run_id,
        }
        for key in ("path", "label", "url", "pts"):
            if key in self.meta:
                rec[key] = self.meta[key]
        return rec
