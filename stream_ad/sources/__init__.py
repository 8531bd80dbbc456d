"""Cameras: where frames come from. Each source yields Capture (pixels + capture time) or CameraEvent items.

folder  images in a folder (sorted, recursive), played at a fixed fps, once or looped: a camera for tests and demos
video   a video file (PyAV), at its own or a fixed fps, once or looped
rtsp    an IP camera over RTSP (PyAV), reconnecting with exponential backoff
gige    a GigE Vision camera (aravis), NewestOnly buffers, reconnecting with exponential backoff
"""

from __future__ import annotations

import threading
from pathlib import Path

from stream_ad.settings import SourceSettings
from stream_ad.sources.base import Camera, Pacer
from stream_ad.sources.folder import FolderSource
from stream_ad.sources.gige import GigeSource
from stream_ad.sources.rtsp import RtspSource
from stream_ad.sources.video import VideoSource


def open_source(
    cfg: SourceSettings, default_folder: Path, skip: int = 0, stop: threading.Event | None = None,
    default_setting: str = "data.root",
) -> Camera:
    """The configured source; `skip` frames are passed over (a restarted file source resumes where it stopped).
    A folder source without cfg.path streams `default_folder`, which comes from the setting `default_setting`."""
    if cfg.kind == "folder":
        if cfg.path is not None:
            return FolderSource(cfg.path, cfg.fps, cfg.loop, cfg.preload, skip, cfg.max_image_pixels)
        return FolderSource(default_folder, cfg.fps, cfg.loop, cfg.preload, skip, cfg.max_image_pixels,
                            setting=default_setting)
    if cfg.kind == "video":
        assert cfg.path is not None
        return VideoSource(cfg.path, cfg.fps, cfg.loop, skip, cfg.max_image_pixels)
    if cfg.kind == "gige":
        return GigeSource(cfg, stop)
    assert cfg.url is not None
    return RtspSource(cfg, stop)


__all__ = ["Camera", "FolderSource", "GigeSource", "Pacer", "RtspSource", "VideoSource", "open_source"]
