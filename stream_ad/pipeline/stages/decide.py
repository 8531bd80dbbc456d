"""score > threshold -> verdict (the threshold: the model artefact's, else pipeline.decide.threshold)."""

from __future__ import annotations

import math

from stream_ad.frames import Frame
from stream_ad.pipeline.stages.base import BadFrame, Stage, StageContext


class Decide(Stage):
    def open(self, ctx: StageContext) -> None:
        self.threshold = ctx.plan.threshold
        if not math.isfinite(self.threshold):  # `stream-ad run` refuses it earlier (checked_threshold)
            raise ValueError(f"decision threshold {self.threshold} is not a finite number: no score can be judged")

    def process(self, frames: list[Frame]) -> list[Frame]:
        for frame in frames:
            if frame.score is None:
                raise BadFrame("no score in the message: did it pass the infer stage?")
            frame.threshold = self.threshold
            frame.verdict = "anomaly" if frame.score > self.threshold else "ok"
        return frames
