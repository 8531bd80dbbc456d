"""Custom stages for the tests, each plugged in by one line of pipeline YAML: `tests.pipeline.stage_plugins:Sampler`."""

from __future__ import annotations

import logging
import threading
import time

from stream_ad.frames import Frame
from stream_ad.pipeline.stages.base import Stage, StageContext

log = logging.getLogger(__name__)


class Sampler(Stage):
    """Passes every other frame on (the rest are dropped as "filtered", counted by the shell)."""

    def process(self, frames: list[Frame]) -> list[Frame]:
        return [f for f in frames if f.frame_id % 2 == 0]


class Shuffler(Stage):
    """Takes three batches at once and holds each one whose first frame has an even id back 0.3 s, so that later
    batches finish first: the shell must still pass the frames on in order. Says at close how many it held at once."""

    concurrent_batches = 3

    def open(self, ctx: StageContext) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def process(self, frames: list[Frame]) -> list[Frame]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.3 if frames[0].frame_id % 2 == 0 else 0.0)
        with self.lock:
            self.running -= 1
        return frames

    def close(self) -> None:
        log.warning("shuffler: at most %d batches at once", self.most)
