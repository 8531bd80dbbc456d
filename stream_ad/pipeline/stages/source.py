"""The source stage's camera. The source has no input and no process(): the shell iterates the camera at its own
rate (stream_ad.pipeline.shell.StageShell.run_source)."""

from __future__ import annotations

from pathlib import Path

from stream_ad.pipeline.stages.base import StageContext
from stream_ad.settings import PipelineSettings
from stream_ad.sources import Camera, open_source


def source_folder(pipeline: PipelineSettings, data_root: Path) -> Path:
    """What a folder source streams when source.path is unset: the test images of data.root."""
    return pipeline.source.path or data_root / "test"


def open_camera(ctx: StageContext) -> Camera:
    settings = ctx.settings
    return open_source(settings.pipeline.source, source_folder(settings.pipeline, settings.data.root),
                       skip=ctx.first_id, stop=ctx.stop)
