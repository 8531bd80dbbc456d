"""verdicts -> every configured sink (JSON lines, stdout, images, PLCs through their outbox).

A frame's verdict is delivered (FrameDone) only once every sink has durably taken it. Where a sink's write fails
(a full disk, a failed outbox insert) the frames of that batch are dropped as sink_error, the other sinks still get
them, and pipeline.sink.on_error says what else happens: count (nothing more), safe_state (every PLC sink tells the
PLC "inspection not available", once per outage) or stop (the run stops, exit non-zero). One log line when a sink
starts failing, with the real error, and one when it takes verdicts again; the drops are counted meanwhile.
"""

from __future__ import annotations

import logging
import time

from stream_ad.frames import Frame, Verdict
from stream_ad.pipeline.metrics import StageMetrics
from stream_ad.pipeline.notices import DropReason
from stream_ad.pipeline.stages.base import DropFrame, Stage, StageContext, StageFailed
from stream_ad.pipeline.tap import TapSender
from stream_ad.sinks import Sink, make_sink

log = logging.getLogger("stream_ad.pipeline.stages")


class SinkStage(Stage):
    def open(self, ctx: StageContext) -> None:
        self.metrics: StageMetrics = ctx.metrics
        self.drop: DropFrame = ctx.drop
        self.on_error = ctx.settings.pipeline.sink.on_error
        self.run_id = ctx.plan.run_id
        self.sinks: list[Sink] = [make_sink(cfg, ctx.settings.output_dir, f"pipeline.sink.outputs.{i}")
                                  for i, cfg in enumerate(ctx.settings.pipeline.sink.outputs)]
        self.failing: dict[str, int] = {}  # sink -> verdicts dropped since it began to fail
        for sink in self.sinks:
            sink.progress = ctx.alive
            sink.open()
        console = ctx.plan.console  # the operator's console gets the delivered verdicts, never waited on
        self.tap = TapSender(console.tap, ctx.settings.pipeline.console.tap_queue) if console else None

    def process(self, frames: list[Frame]) -> list[Frame]:
        now = time.time()
        verdicts = [Verdict.from_frame(f, now, self.run_id) for f in frames]
        errors = [(sink, exc) for sink in self.sinks if (exc := self._write(sink, verdicts)) is not None]
        if not errors:
            if self.tap is not None:
                self.tap.offer(frames)
            return frames
        detail = "; ".join(f"sink {sink.where} ({sink.kind}): {exc}" for sink, exc in errors)
        for f in frames:
            self.drop(f, DropReason.SINK_ERROR, detail)
        if self.on_error == "stop":
            raise StageFailed(f"{detail} (pipeline.sink.on_error: stop)")
        return []

    def _write(self, sink: Sink, verdicts: list[Verdict]) -> Exception | None:
        """None once `sink` took the verdicts; else the error (logged when the sink starts failing)."""
        try:
            sink.write(verdicts)
        except Exception as exc:  # noqa: BLE001 - one failing sink must not silence the others
            self.metrics.sink_error(sink.kind, len(verdicts))
            if sink.where not in self.failing:
                self.failing[sink.where] = 0
                log.error("sink %s (%s) cannot take verdicts (from frame %s on, dropped as sink_error): %s",
                          sink.where, sink.kind, f"{verdicts[0].camera}/{verdicts[0].frame_id}", exc)
                if self.on_error == "safe_state":
                    self._safe_state(verdicts[0], f"sink {sink.where} ({sink.kind}): {exc}")
            self.failing[sink.where] += len(verdicts)
            return exc
        dropped = self.failing.pop(sink.where, None)
        if dropped is not None:
            log.warning("sink %s (%s) takes verdicts again; %d were dropped as sink_error", sink.where, sink.kind,
                        dropped)
        return None

    def _safe_state(self, first: Verdict, reason: str) -> None:
        for sink in self.sinks:
            try:
                sink.unavailable(first, reason)
            except Exception as exc:  # noqa: BLE001 - the other PLCs must still hear it
                log.error("sink %s (%s) cannot be told that inspection is not available: %s", sink.where, sink.kind,
                          exc)

    def close(self) -> None:
        if self.tap is not None:
            self.tap.close()
        for sink in self.sinks:
            sink.close()
