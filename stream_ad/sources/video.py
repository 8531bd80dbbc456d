"""A video file as a camera (PyAV): at its own frame rate or a configured fps, once or looped."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import av

from stream_ad.frames import Capture
from stream_ad.sources.base import Camera, Pacer

log = logging.getLogger("stream_ad.sources.video")


class VideoSource(Camera):
    def __init__(self, path: Path, fps: float | None, loop: bool, skip: int = 0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path} (setting pipeline.source.path)")
        with av.open(str(self.path)) as container:
            if not container.streams.video:
                raise ValueError(f"{self.path} has no video stream")
            rate = container.streams.video[0].average_rate
        self.fps = fps or (float(rate) if rate else None)
        self.loop = loop
        self.skip = skip

    def __iter__(self) -> Iterator[Capture]:
        pacer = Pacer(self.fps)
        index = 0
        while True:
            produced = 0
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                packets = container.demux(stream)
                while True:
                    try:
                        packet = next(packets)
                    except StopIteration:
                        break
                    except av.error.FFmpegError as exc:
                        log.warning("%s: demuxing failed: %s", self.path, exc)
                        break
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as exc:
                        # One damaged packet costs its frame (counted as a decode error), not the stream.
                        frames = None
                        error = f"{self.path} packet at pts {packet.pts}: {exc}"
                    if frames is None:
                        if index >= self.skip:
                            pacer.wait()
                            yield Capture(None, time.time(), {"path": str(self.path)}, error)
                        index += 1
                        continue
                    for vframe in frames:
                        if index >= self.skip:
                            pacer.wait()
                            t_capture = time.time()
                            yield Capture(vframe.to_ndarray(format="rgb24"), t_capture,
                                          {"path": str(self.path), "pts": vframe.pts})
                        index += 1
                        produced += 1
            if not self.loop or produced == 0:
                return
