"""Cameras: where frames come from. Each source yields Capture (pixels + capture time) or CameraEvent items.

folder  images in a folder (sorted, recursive), played at a fixed fps, once or looped: a camera for tests and demos
video   a video file (PyAV), at its own or a fixed fps, once or looped
rtsp    an IP camera over RTSP (PyAV), reconnecting with exponential backoff
gige    a GigE Vision camera (aravis), NewestOnly buffers, reconnecting with exponential backoff

open_source imports only the configured kind's module: every stage process imports this package, and PyAV (video,
rtsp) or Pillow (folder) would add to each one's start-up what only the source process of that kind needs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from stream_ad.settings import SourceSettings
from stream_ad.sources.base import Camera, Pacer


def open_source(
    cfg: SourceSettings, default_folder: Path, skip: int = 0, stop: threading.Event | None = None,
    default_setting: str = "data.root",
) -> Camera:
    """The configured source; `skip` frames are passed over (a restarted file source resumes where it stopped).
    A folder source without cfg.path streams `default_folder`, which comes from the setting `default_setting`."""
    if cfg.kind == "folder":
        from stream_ad.sources.folder import FolderSource

        if cfg.path is not None:
            return FolderSource(cfg.path, cfg.fps, cfg.loop, cfg.preload, skip, cfg.max_image_pixels)
        return FolderSource(default_folder, cfg.fps, cfg.loop, cfg.preload, skip, cfg.max_image_pixels,
                            setting=default_setting)
    if cfg.kind == "video":
        from stream_ad.sources.video import VideoSource

        assert cfg.path is not None
        return VideoSource(cfg.path, cfg.fps, cfg.loop, skip, cfg.max_image_pixels)
    if cfg.kind == "gige":
        from stream_ad.sources.gige import GigeSource

        return GigeSource(cfg, stop)
    from stream_ad.sources.rtsp import RtspSource

    assert cfg.url is not None
    return RtspSource(cfg, stop)


__all__ = ["Camera", "Pacer", "open_source"]
