"""Decoding a PyAV video stream packet by packet, as the video and RTSP sources share it: a packet the decoder
rejects (damaged, or a picture over the pixel limit) is one Picture with its error, never an exception that ends
the stream. Demuxing errors are the caller's: the end of a file, a lost camera."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np


@dataclass(frozen=True)
class Picture:
    """One decoded frame (RGB), or the packet that did not decode and why."""

    image: np.ndarray | None
    pts: int | None
    error: str | None = None


def pictures(container: av.container.InputContainer, stream: av.video.stream.VideoStream, name: str,
             max_pixels: int) -> Iterator[Picture]:
    """The stream's frames in order; `name` (the file or redacted URL) is what errors name. Raises only what
    demuxing raises."""
    width, height = stream.codec_context.width, stream.codec_context.height
    oversize = (f"{name}: its header says {width} x {height} = {width * height} pixels a frame, over the limit of "
                f"{max_pixels} (setting pipeline.source.max_image_pixels)") if width * height > max_pixels else None
    # FFmpeg's own bound, for a stream that changes its size mid-way: such a packet fails to decode, unallocated.
    stream.codec_context.options = {"max_pixels": str(max_pixels)}
    for packet in container.demux(stream):
        if oversize is not None:
            if packet.size:  # the flush packet at the end carries no frame
                yield Picture(None, packet.pts, oversize)
            continue
        try:
            frames = packet.decode()
        except Exception as exc:  # noqa: BLE001 - one damaged packet costs its frame, not the stream
            yield Picture(None, packet.pts, f"{name}: packet at pts {packet.pts} does not decode: {exc}")
            continue
        for vframe in frames:
            try:
                picture = Picture(vframe.to_ndarray(format="rgb24"), vframe.pts)
            except Exception as exc:  # noqa: BLE001 - a frame PyAV cannot convert (odd pixel format, size)
                picture = Picture(None, vframe.pts, f"{name}: frame at pts {vframe.pts} does not convert: {exc}")
            yield picture
