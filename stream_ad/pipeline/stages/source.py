"""The source stage's camera. The source has no input and no process(): the shell iterates the camera at its own
rate (stream_ad.pipeline.shell.StageShell.run_source)."""

from __future__ import annotations

from pathlib import Path

from stream_ad.pipeline.stages.base import StageContext
from stream_ad.settings import SourceSettings
from stream_ad.sources import Camera, open_source


def source_folder(source: SourceSettings, where: str, data_root: Path) -> tuple[Path, str]:
    """What a folder source streams, and the setting that says so: WHERE.path, else the test images of data.root."""
    if source.path is not None:
        return source.path, f"{where}.path"
    return data_root / "test", "data.root"


def open_camera(ctx: StageContext) -> Camera:
    where, source = ctx.camera
    folder, setting = source_folder(source, where, ctx.settings.data.root)
    # The run numbers its frames on from its first id: a restarted source skips what it read before.
    skip = ctx.first_id - ctx.plan.first_frame_id
    return open_source(source, folder, skip=skip, stop=ctx.stop, default_setting=setting)
