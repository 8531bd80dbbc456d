"""A video file as a camera (PyAV): at its own frame rate or a configured fps, once or looped.

A damaged packet is a decode error for its frame; a file that ends before the frame count its header announces (cut
off, or damaged past demuxing) says so in one log line and counts each missing frame as a decode error, so the
ledger shows them."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import av

from stream_ad.errors import located
from stream_ad.frames import Capture
from stream_ad.settings import MAX_IMAGE_PIXELS
from stream_ad.sources.av_frames import pictures
from stream_ad.sources.base import Camera, Pacer

log = logging.getLogger("stream_ad.sources.video")


def announced_frames(stream: av.video.stream.VideoStream) -> int | None:
    """The frame count the container's header states, else its duration times its rate; None when it says neither."""
    if stream.frames:
        return stream.frames
    if stream.duration and stream.time_base and stream.average_rate:
        return round(float(stream.duration * stream.time_base * stream.average_rate))
    return None


class VideoSource(Camera):
    def __init__(self, path: Path, fps: float | None, loop: bool, skip: int = 0,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {located(self.path)} (setting pipeline.source.path)")
        with av.open(str(self.path)) as container:
            if not container.streams.video:
                raise ValueError(f"{self.path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate
            self.expected = announced_frames(stream)
        self.fps = fps or (float(rate) if rate else None)
        self.loop = loop
        self.skip = skip
        self.max_pixels = max_pixels

    def __iter__(self) -> Iterator[Capture]:
        pacer = Pacer(self.fps)
        index = 0  # across passes, missing frames included: what `skip` counts
        meta = {"path": str(self.path)}
        while True:
            read = decoded = 0  # this pass: frames and undecodable packets, and those that decoded
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                try:
                    for picture in pictures(container, stream, str(self.path), self.max_pixels):
                        if index >= self.skip:
                            pacer.wait()
                            yield Capture(picture.image, time.time(), {**meta, "pts": picture.pts}, picture.error)
                        index += 1
                        read += 1
                        decoded += picture.error is None
                except Exception as exc:  # noqa: BLE001 - damaged past demuxing: the pass ends, short (counted below)
                    log.warning("%s: demuxing failed after %d frames: %s", self.path, read, exc)
            missing = self.expected - read if self.expected else 0
            if missing > 0:
                log.warning("video %s ended early: %d of the %d frames its header announces were read (%d did not "
                            "decode); the %d missing count as decode errors", self.path, read, self.expected,
                            read - decoded, missing)
                for k in range(read, read + missing):
                    if index >= self.skip:
                        yield Capture(None, time.time(), meta,
                                      f"{self.path}: frame {k} of {self.expected} missing (the video ended early)")
                    index += 1
            if not self.loop or decoded == 0:
                return
