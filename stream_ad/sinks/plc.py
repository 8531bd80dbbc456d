"""What the PLC sinks (Modbus TCP, OPC UA, MQTT) share: write() only stores verdicts in the durable outbox, so the
pipeline keeps flowing while the PLC is down; the outbox thread connects, delivers and reconnects through the
sink's protocol methods (connect, send, disconnect, heartbeat).

Safe state (pipeline.sink.on_error: safe_state): unavailable() sends, ahead of the queue and without the disk, a
record with verdict "unavailable" (no score, no threshold) and the id of the first frame that got no verdict: the
PLC treats the part as not inspected until a verdict of a later frame arrives. It carries that frame's capture time
and the run id, as every record does."""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

from stream_ad.sinks.base import Sink, Verdict
from stream_ad.sinks.outbox import Outbox

log = logging.getLogger("stream_ad.sinks.plc")

UNAVAILABLE = "unavailable"  # the verdict of a safe-state record: inspection not available


class SinkConfigError(ValueError):
    """The peer is reachable but refuses this configuration (a register address, a node, credentials)."""


class OutboxSink(Sink):
    @property
    def heartbeat_s(self) -> float | None:
        """Seconds between heartbeats while connected: the sink's `heartbeat_s` setting; None where it has none."""
        return getattr(self.cfg, "heartbeat_s", None)

    def __init__(self, cfg: Any, output_dir: Path, where: str = "pipeline.sink.outputs") -> None:
        super().__init__(cfg, output_dir, where)
        self.outbox: Outbox | None = None
        self.connected = False
        self._last_beat = 0.0

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where the peer is, with the settings that say so (for error messages)."""

    @abstractmethod
    def connect(self) -> None:
        """Connect and check the peer accepts this configuration; raise SinkConfigError when it refuses it."""

    @abstractmethod
    def send(self, record: dict[str, Any]) -> None:
        """Deliver one record; return once the peer acknowledged it."""

    @abstractmethod
    def disconnect(self) -> None: ...

    def heartbeat(self) -> None:  # noqa: B027 - optional
        """Tell the peer this pipeline is alive."""

    def open(self) -> None:
        try:
            self.connect()
            self.connected = True
        except SinkConfigError as exc:
            self.disconnect()
            raise SinkConfigError(f"{self.where} (sink {self.cfg.label}, {self.endpoint}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - unreachable now: said loudly, then retried by the outbox
            self.disconnect()
            log.error("%s (sink %s): cannot connect to %s: %s; verdicts wait in the outbox and delivery is retried",
                      self.where, self.cfg.label, self.endpoint, exc)
        self.outbox = Outbox(self.cfg.outbox_file(self.output_dir), self.cfg.outbox, self.cfg.label, self)

    def write(self, verdicts: list[Verdict]) -> None:
        assert self.outbox is not None, f"{type(self).__name__}.open() was not called"
        self.outbox.put([(v.alarm, v.record()) for v in self.wanted(verdicts)])

    def unavailable(self, first: Verdict, reason: str) -> None:
        assert self.outbox is not None, f"{type(self).__name__}.open() was not called"
        self.outbox.announce({"frame_id": first.frame_id, "camera": first.camera,
                              "t_capture": round(first.t_capture, 6), "t_verdict": round(time.time(), 6),
                              "score": None, "threshold": None, "verdict": UNAVAILABLE, "reason": reason,
                              "run_id": first.run_id})

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        self.disconnect()
        self.connected = False

    # ---- called by the outbox thread ----
    def deliver(self, record: dict[str, Any]) -> None:
        try:
            if not self.connected:
                self.connect()
                self.connected = True
            self.send(record)
        except Exception:
            self.connected = False
            self.disconnect()  # the next attempt starts from a fresh connection
            raise

    def tick(self) -> None:
        if self.heartbeat_s is None or not self.connected or time.monotonic() - self._last_beat < self.heartbeat_s:
            return
        self._last_beat = time.monotonic()
        try:
            self.heartbeat()
        except Exception:
            self.connected = False
            self.disconnect()
            raise
