"""score > threshold -> verdict (the threshold: the model artefact's, else pipeline.decide.threshold).

A frame older than pipeline.max_frame_age_ms (capture to here) is dropped as stale instead: a verdict that late
is of no use to the line (the part has moved on), and one that looked fresh would mislead the PLC. One log line
when frames start to arrive stale, one when they are fresh again; each is counted meanwhile.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict

from stream_ad.frames import MODEL_KEY, Frame
from stream_ad.pipeline.notices import DropReason
from stream_ad.pipeline.stages.base import BadFrame, DropFrame, Stage, StageContext

log = logging.getLogger("stream_ad.pipeline.stages")


class Decide(Stage):
    def open(self, ctx: StageContext) -> None:
        self.threshold = ctx.model.threshold
        self.model = asdict(ctx.model.info)  # stamped on each frame: the sinks record which model judged it
        if not math.isfinite(self.threshold):  # `stream-ad run` refuses it earlier (checked_threshold)
            raise ValueError(f"decision threshold {self.threshold} is not a finite number: no score can be judged")
        self.max_age_ms = ctx.settings.pipeline.max_frame_age_ms
        self.drop: DropFrame = ctx.drop
        self.stale = 0  # frames dropped as stale since they began to arrive stale

    def process(self, frames: list[Frame]) -> list[Frame]:
        if any(frame.score is None for frame in frames):
            # Raised before any frame is dropped: the shell retries the batch frame by frame, so only these go.
            raise BadFrame("no score in the message: did it pass the infer stage?")
        fresh = []
        now = time.time()
        for frame in frames:
            age_ms = (now - frame.t_capture) * 1000.0
            if self.max_age_ms is not None and age_ms > self.max_age_ms:
                self._drop_stale(frame, age_ms, self.max_age_ms)
                continue
            if self.stale:
                log.warning("decide: frames are fresh again from %s on; %d were dropped as stale", frame.key,
                            self.stale)
                self.stale = 0
            frame.threshold = self.threshold
            frame.verdict = "anomaly" if frame.score > self.threshold else "ok"
            frame.meta[MODEL_KEY] = self.model
            fresh.append(frame)
        return fresh

    def _drop_stale(self, frame: Frame, age_ms: float, max_age_ms: float) -> None:
        detail = f"{age_ms:.0f} ms after capture, over pipeline.max_frame_age_ms {max_age_ms:g}"
        if not self.stale:
            log.warning("decide: frame %s is stale (%s): dropping stale frames until they are fresh again", frame.key,
                        detail)
        self.stale += 1
        self.drop(frame, DropReason.STALE, detail)
