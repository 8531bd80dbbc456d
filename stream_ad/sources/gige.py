"""A GigE Vision camera through aravis (PyGObject): exposure, frame rate and pixel format set where the camera has
them (one it lacks is an error naming the setting), a small pool of pushed buffers read NewestOnly, reconnects with
exponential backoff and up/down events like the RTSP source (staleness is the source stage's watchdog).

NewestOnly (GenICam's buffer handling mode): after each pop, newer filled buffers waiting in the stream mean the
pipeline lags; the older ones go back to the pool at once and each skipped frame is reported as a drop with reason
`newest_only`. Frames the camera sent while no buffer was free (gaps in its frame ids) are reported as
`buffer_underrun`. So a slow pipeline never backs the camera up, and no frame vanishes uncounted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from stream_ad.frames import CameraEvent, CameraState, Capture
from stream_ad.settings import SourceSettings
from stream_ad.sources.base import Camera

log = logging.getLogger("stream_ad.sources.gige")

# A frame id at most this far below the last one seen is a stale buffer handed back (GigeSource._fresh); further
# below, the camera restarted its numbering or wrapped, and its frames are new. Stale ones lie within a few stream
# pools of buffers of the last frame.
STALE_IDS = 64

# GenICam pixel format -> how to make RGB of it (None: already RGB).
TO_RGB: dict[str, int | None] = {
    "Mono8": cv2.COLOR_GRAY2RGB, "RGB8": None, "RGB8Packed": None, "BGR8": cv2.COLOR_BGR2RGB,
    "BGR8Packed": cv2.COLOR_BGR2RGB,
    # OpenCV names Bayer patterns by the second row's first two pixels: GenICam's RG is OpenCV's BG.
    "BayerRG8": cv2.COLOR_BAYER_BG2RGB, "BayerBG8": cv2.COLOR_BAYER_RG2RGB, "BayerGR8": cv2.COLOR_BAYER_GB2RGB,
    "BayerGB8": cv2.COLOR_BAYER_GR2RGB,
}


def _aravis() -> Any:
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise RuntimeError(
            f"source.kind gige needs aravis through PyGObject: Debian packages aravis-tools gir1.2-aravis-0.8 and "
            f"pip 'PyGObject<3.51' (scripts/setup.sh installs them): {exc}") from None
    return Aravis


class GigeSource(Camera):
    reports_camera_state = True

    def __init__(self, cfg: SourceSettings, stop: threading.Event | None = None) -> None:
        self.cfg = cfg
        self.gige = cfg.gige
        self.stop = stop or threading.Event()
        self.Aravis = _aravis()
        self.shown = self.gige.camera or "the first GigE Vision camera found"
        self.connects = 0

    def _configure(self, camera: Any) -> str:
        """Apply exposure, frame rate and pixel format; returns the pixel format in use."""
        g = self.gige
        if g.exposure_us is not None:
            if not camera.is_exposure_time_available():
                raise ValueError(f"pipeline.source.gige.exposure_us: camera {self.shown} has no exposure time")
            camera.set_exposure_time(g.exposure_us)
        if g.frame_rate is not None:
            if not camera.is_frame_rate_available():
                raise ValueError(f"pipeline.source.gige.frame_rate: camera {self.shown} has no frame rate control")
            camera.set_frame_rate(g.frame_rate)
        if g.pixel_format is not None:
            offered = camera.dup_available_pixel_formats_as_strings()
            if g.pixel_format not in offered:
                raise ValueError(f"pipeline.source.gige.pixel_format: camera {self.shown} does not offer "
                                 f"{g.pixel_format!r}; it offers {', '.join(offered)}")
            camera.set_pixel_format_from_string(g.pixel_format)
        fmt = camera.get_pixel_format_as_string()
        if fmt not in TO_RGB:
            raise ValueError(f"pipeline.source.gige.pixel_format: {fmt!r} is not one stream_ad converts; use one of "
                             f"{', '.join(TO_RGB)}")
        return fmt

    def _image(self, buffer: Any, fmt: str) -> np.ndarray:
        h, w = buffer.get_image_height(), buffer.get_image_width()
        if h * w > self.cfg.max_image_pixels:
            raise ValueError(f"the buffer says {w} x {h} = {w * h} pixels, over the limit of "
                             f"{self.cfg.max_image_pixels} (setting pipeline.source.max_image_pixels)")
        channels = 1 if fmt == "Mono8" or fmt.startswith("Bayer") else 3
        img = np.frombuffer(buffer.get_data(), np.uint8)[: h * w * channels].reshape(h, w, channels)
        code = TO_RGB[fmt]
        return np.ascontiguousarray(img) if code is None else cv2.cvtColor(img, code)

    def _capture(self, buffer: Any, fmt: str, t_capture: float, meta: dict[str, Any]) -> Capture:
        """The buffer's frame, or a decode error saying why there is none (incomplete, or pixels that do not fit its
        stated size): a bad buffer costs its frame, never the camera."""
        if buffer.get_status() != self.Aravis.BufferStatus.SUCCESS:
            return Capture(None, t_capture, meta, f"incomplete buffer: {buffer.get_status().value_nick}")
        try:
            return Capture(self._image(buffer, fmt), t_capture, meta)
        except Exception as exc:  # noqa: BLE001 - short payload (reshape), odd size for the conversion, ...
            return Capture(None, t_capture, meta, f"GigE frame {meta.get('gige_frame_id')} from {self.shown}: "
                                                  f"{exc.__class__.__name__}: {exc}")

    def _frames(self, stream: Any, fmt: str) -> Iterator[Capture]:
        """Captures until the camera stops delivering for read_timeout_s (returns) or the source stops."""
        timeout_us = int(self.cfg.read_timeout_s * 1_000_000)
        last_id: int | None = None
        while not self.stop.is_set():
            buffer = stream.timeout_pop_buffer(timeout_us)
            if buffer is None:
                return
            t_capture = time.time()
            meta = {"camera_id": self.shown}
            waiting = [buffer]
            while (newer := stream.try_pop_buffer()) is not None:
                waiting.append(newer)
            waiting = self._fresh(waiting, last_id, stream)
            if not waiting:
                continue
            for older in waiting[:-1]:  # NewestOnly: older filled buffers go straight back to the pool
                yield from self._missed(last_id, older.get_frame_id(), t_capture, meta)
                last_id = older.get_frame_id()
                stream.push_buffer(older)
                yield Capture(None, t_capture, meta, "a newer frame was waiting (NewestOnly)", "newest_only")
            buffer = waiting[-1]
            yield from self._missed(last_id, buffer.get_frame_id(), t_capture, meta)
            last_id = buffer.get_frame_id()
            try:
                yield self._capture(buffer, fmt, t_capture, {**meta, "gige_frame_id": last_id})
            finally:
                stream.push_buffer(buffer)

    @staticmethod
    def _fresh(waiting: list[Any], last_id: int | None, stream: Any) -> list[Any]:
        """The popped buffers newer than every frame before them; the others go back to the pool unreported. After
        its buffers ran out, aravis hands back some frames older than ones it already delivered
        (AravisProject/aravis#396): each was delivered or counted in a gap already, and counting it again as a drop
        reported more drops than frames skipped (7 against 4, seen once in CI)."""
        fresh: list[Any] = []
        for buffer in waiting:
            newest = fresh[-1].get_frame_id() if fresh else last_id
            if newest is not None and 0 <= newest - buffer.get_frame_id() < STALE_IDS:
                log.debug("GigE frame %d after frame %d: already delivered or counted", buffer.get_frame_id(), newest)
                stream.push_buffer(buffer)
            else:
                fresh.append(buffer)
        return fresh

    @staticmethod
    def _missed(last_id: int | None, frame_id: int, t: float, meta: dict[str, Any]) -> Iterator[Capture]:
        """Frames the camera sent while no buffer was free: the gap in its frame ids (GigE Vision numbers every
        frame; 16-bit ids wrap from 65535 to 1). aravis' own counters count packets, not frames."""
        if last_id is None:
            return
        if frame_id > last_id:
            gap = frame_id - last_id - 1
        else:  # a wrap, or a camera that restarted its numbering (nothing known lost)
            gap = frame_id + 0xFFFF - last_id - 1 if last_id > 0xFF00 and frame_id < 0x100 else 0
        for _ in range(gap):
            yield Capture(None, t, meta, "no free buffer when the camera sent this frame", "buffer_underrun")

    def __iter__(self) -> Iterator[Capture | CameraEvent]:
        backoff = self.cfg.reconnect_initial_s
        while not self.stop.is_set():
            try:
                camera = self.Aravis.Camera.new(self.gige.camera)
            except Exception as exc:  # noqa: BLE001 - GLib.Error: not found or not answering; retried
                detail = f"pipeline.source.gige.camera: cannot open {self.shown}: {exc}"
                log.warning("%s; retrying in %.1f s", detail, backoff)
                yield CameraEvent(CameraState.DOWN, detail)
            else:
                fmt = self._configure(camera)  # a setting the camera lacks: raised, not retried
                stream = camera.create_stream(None, None)
                for _ in range(self.gige.buffers):
                    stream.push_buffer(self.Aravis.Buffer.new_allocate(camera.get_payload()))
                camera.start_acquisition()
                self.connects += 1
                log.info("connected to GigE camera %s (%s %s, %s)", self.shown, camera.get_vendor_name(),
                         camera.get_model_name(), fmt)
                yield CameraEvent(CameraState.UP, f"connected to {self.shown}")
                got = False
                try:
                    for capture in self._frames(stream, fmt):
                        if not got:
                            got, backoff = True, self.cfg.reconnect_initial_s
                        yield capture
                finally:
                    try:
                        camera.stop_acquisition()
                    except Exception:  # noqa: BLE001, S110 - the camera is gone; nothing to stop
                        pass
                if self.stop.is_set():
                    return
                detail = f"no frame from {self.shown} for {self.cfg.read_timeout_s} s"
                log.warning("camera lost (%s); reconnecting in %.1f s", detail, backoff)
                yield CameraEvent(CameraState.DOWN, detail)
            if self.stop.wait(backoff):
                return
            backoff = min(backoff * 2.0, self.cfg.reconnect_max_s)
