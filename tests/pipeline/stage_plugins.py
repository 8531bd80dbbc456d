"""A custom stage for the tests, plugged in by one line of pipeline YAML: `tests.pipeline.stage_plugins:make_sampler`."""

from __future__ import annotations

from typing import Any

from stream_ad.frames import Frame


def make_sampler(ctx: Any):  # noqa: ANN201 - a stage function
    """Passes every other frame on (the rest are dropped as "filtered", counted by the shell)."""

    def sample(batch: list[Frame]) -> list[Frame]:
        return [f for f in batch if f.frame_id % 2 == 0]

    return sample
