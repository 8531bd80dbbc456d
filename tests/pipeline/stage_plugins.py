"""A custom stage for the tests, plugged in by one line of pipeline YAML: `tests.pipeline.stage_plugins:Sampler`."""

from __future__ import annotations

from stream_ad.frames import Frame
from stream_ad.pipeline.stages.base import Stage


class Sampler(Stage):
    """Passes every other frame on (the rest are dropped as "filtered", counted by the shell)."""

    def process(self, frames: list[Frame]) -> list[Frame]:
        return [f for f in frames if f.frame_id % 2 == 0]
