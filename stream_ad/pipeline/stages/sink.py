"""verdicts -> every configured sink (JSON lines, stdout, images, PLCs through their outbox). One failing sink is
counted and logged; the others still get the verdicts."""

from __future__ import annotations

import logging
import time

from stream_ad.frames import Frame, Verdict
from stream_ad.pipeline.metrics import StageMetrics
from stream_ad.pipeline.stages.base import Stage, StageContext
from stream_ad.sinks import Sink, make_sink

log = logging.getLogger("stream_ad.pipeline.stages")


class SinkStage(Stage):
    def open(self, ctx: StageContext) -> None:
        self.metrics: StageMetrics = ctx.metrics
        self.sinks: list[Sink] = [make_sink(cfg, ctx.settings.output_dir, f"pipeline.sink.outputs.{i}", ctx.plan.model)
                                  for i, cfg in enumerate(ctx.settings.pipeline.sink.outputs)]
        for sink in self.sinks:
            sink.open()

    def process(self, frames: list[Frame]) -> list[Frame]:
        now = time.time()
        verdicts = [Verdict.from_frame(f, now) for f in frames]
        for sink in self.sinks:
            try:
                sink.write(verdicts)
            except Exception as exc:  # noqa: BLE001 - one failing sink must not silence the others
                self.metrics.sink_error(sink.kind)
                log.error("sink %s failed on %d verdicts (%s ... %s): %s", sink.kind, len(verdicts),
                          verdicts[0].frame_id, verdicts[-1].frame_id, exc)
        return frames

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
