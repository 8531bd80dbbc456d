"""An IP camera over RTSP (PyAV/FFmpeg): reconnects with exponential backoff, reports up/down to the stage shell. A
packet that does not decode is a decode error for its frame; the camera stays connected.

Staleness (no frame for source.stale_after_s) is watched by the source stage's shell, whatever the source; this
module bounds every blocking call (open and read timeouts) so a dead camera is noticed and retried, never hung on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import av

from stream_ad.frames import CameraEvent, CameraState, Capture
from stream_ad.settings import SourceSettings
from stream_ad.settings.redact import hide_passwords
from stream_ad.sources.av_frames import pictures
from stream_ad.sources.base import Camera

log = logging.getLogger("stream_ad.sources.rtsp")


class RtspSource(Camera):
    reports_camera_state = True  # yields CameraEvent("up"/"down") as it connects and loses the camera

    def __init__(self, cfg: SourceSettings, stop: threading.Event | None = None) -> None:
        assert cfg.url
        self.cfg = cfg
        self.url = cfg.url
        self.stop = stop or threading.Event()
        self.connects = 0

    def _open(self) -> av.container.InputContainer:
        cfg = self.cfg
        options = {
            "rtsp_transport": cfg.rtsp_transport,
            # FFmpeg's socket timeout for RTSP, in microseconds.
            "timeout": str(int(cfg.read_timeout_s * 1_000_000)),
        }
        return av.open(self.url, options=options, timeout=(cfg.open_timeout_s, cfg.read_timeout_s))

    def __iter__(self) -> Iterator[Capture | CameraEvent]:
        backoff = self.cfg.reconnect_initial_s
        shown = hide_passwords(self.url)  # logs and verdicts name the camera, never its password
        while not self.stop.is_set():
            got_frames = False
            try:
                container = self._open()
            except (av.error.FFmpegError, OSError) as exc:
                detail = f"cannot open {shown}: {exc}"
                log.warning("%s; retrying in %.1f s", detail, backoff)
                yield CameraEvent(CameraState.DOWN, detail)
            else:
                self.connects += 1
                log.info("connected to %s", shown)
                yield CameraEvent(CameraState.UP, f"connected to {shown}")
                detail = "stream ended"
                try:
                    stream = container.streams.video[0]
                    for picture in pictures(container, stream, shown, self.cfg.max_image_pixels):
                        if not got_frames and picture.error is None:
                            got_frames = True
                            backoff = self.cfg.reconnect_initial_s
                        yield Capture(picture.image, time.time(), {"url": shown, "pts": picture.pts}, picture.error)
                        if self.stop.is_set():
                            break
                except Exception as exc:  # noqa: BLE001 - whatever demuxing raises is a lost camera: reconnect
                    detail = f"{exc.__class__.__name__}: {exc}"
                finally:
                    container.close()
                if self.stop.is_set():
                    return
                log.warning("camera %s lost (%s); reconnecting in %.1f s", shown, detail, backoff)
                yield CameraEvent(CameraState.DOWN, detail)
            if self.stop.wait(backoff):
                return
            backoff = min(backoff * 2.0, self.cfg.reconnect_max_s)
