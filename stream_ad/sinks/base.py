"""The sink interface: open once, write batches of verdicts, close. A failing write is counted by the sink stage
and never stops the pipeline; a sink that must not lose verdicts (a PLC) keeps an outbox (sinks/plc.py)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from stream_ad.config import SinkSettings
from stream_ad.pipeline.message import Frame


@dataclass
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
    def from_frame(cls, frame: Frame, t_verdict: float) -> Verdict:
        if frame.score is None or frame.verdict is None or frame.threshold is None:
            raise ValueError(f"frame {frame.key} reached the sinks without a score, threshold and verdict")
        return cls(frame.frame_id, frame.camera, frame.t_capture, t_verdict, frame.score, frame.threshold,
                   frame.verdict, frame.meta, frame.anomaly_map, frame.image)

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
        }
        for key in ("path", "label", "url", "pts"):
            if key in self.meta:
                rec[key] = self.meta[key]
        return rec


class Sink(ABC):
    kind: ClassVar[str]
    needs_maps: ClassVar[bool] = False  # ask the infer stage to send anomaly maps (and keep the image)

    def __init__(self, cfg: SinkSettings, output_dir: Path, where: str = "pipeline.sink.outputs") -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.where = where  # the settings key of this sink, for error messages

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire files, connections; called once in the sink stage's process."""

    @abstractmethod
    def write(self, verdicts: list[Verdict]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release."""

    def wanted(self, verdicts: list[Verdict]) -> list[Verdict]:
        return [v for v in verdicts if v.alarm] if self.cfg.only_alarms else verdicts


# Imported when first asked for: their protocol libraries are not loaded by pipelines that do not use them.
LAZY_SINKS = ("modbus", "opcua", "mqtt")


class _Registry(dict[str, type[Sink]]):
    def __missing__(self, kind: str) -> type[Sink]:
        if kind not in LAZY_SINKS:
            raise KeyError(kind)
        importlib.import_module(f"stream_ad.sinks.{kind}")  # registers it
        return self[kind]


SINKS: dict[str, type[Sink]] = _Registry()


def register_sink(kind: str) -> Callable[[type[Sink]], type[Sink]]:
    def deco(cls: type[Sink]) -> type[Sink]:
        cls.kind = kind
        SINKS[kind] = cls
        return cls

    return deco


def make_sink(cfg: SinkSettings, output_dir: Path, where: str = "pipeline.sink.outputs") -> Sink:
    try:
        cls = SINKS[cfg.kind]
    except KeyError:
        raise ValueError(f"unknown sink kind {cfg.kind!r}; known: {', '.join(sorted({*SINKS, *LAZY_SINKS}))}") from None
    return cls(cfg, output_dir, where)
