"""The sink interface: open once, write batches of verdicts, close. write() returns once the sink has taken the
verdicts durably (on disk, in the outbox) and raises otherwise: the sink stage then drops them as sink_error. A sink
that must not lose verdicts to a peer's outage (a PLC) keeps an outbox (sinks/plc.py)."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from stream_ad.frames import Verdict
from stream_ad.settings import SinkSettings


def _nothing() -> None:
    pass


class Sink(ABC):
    kind: ClassVar[str]
    needs_maps: ClassVar[bool] = False  # ask the infer stage to send anomaly maps (and keep the image)

    def __init__(self, cfg: SinkSettings, output_dir: Path, where: str = "pipeline.sink.outputs") -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.where = where  # the settings key of this sink, for error messages
        # A sink whose write() of one batch may take long (pictures to encode) calls it between verdicts; the sink
        # stage sets it to its heartbeat's tick, or the stage would count as hung meanwhile.
        self.progress: Callable[[], None] = _nothing

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire files, connections; called once in the sink stage's process."""

    @abstractmethod
    def write(self, verdicts: list[Verdict]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release."""

    def unavailable(self, first: Verdict, reason: str) -> None:  # noqa: B027 - optional hook
        """Tell the peer that inspection is not available from frame `first` on (the first verdict not delivered:
        safe state); sinks without a peer that acts on it (files, stdout) do nothing."""

    def wanted(self, verdicts: list[Verdict]) -> list[Verdict]:
        return [v for v in verdicts if v.alarm] if self.cfg.only_alarms else verdicts


# Every built-in kind, imported when first asked for: a process loads only the sinks it runs, not their libraries
# (OpenCV for images, the PLC protocols) at every stage process's start-up.
LAZY_SINKS = ("jsonl", "stdout", "images", "modbus", "opcua", "mqtt")


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
