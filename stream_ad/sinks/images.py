"""The alarm store of a pipeline: for each alarm the frame as the camera gave it, an overlay a person can read and a
JSON sidecar, named by capture time (UTC), camera and frame id:

    20240501T101530.123Z_line3_00000021.frame.png     the frame, lossless
    20240501T101530.123Z_line3_00000021.overlay.png   stream_ad/overlay.py
    20240501T101530.123Z_line3_00000021.json          scores, threshold, pixel threshold, model, times, source

Never overwritten, bounded by count, bytes and age (sinks/alarm_store.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream_ad.overlay import FALLBACK_QUANTILE, draw_overlay
from stream_ad.settings import ImagesSinkSettings
from stream_ad.sinks.alarm_store import AlarmStore, StoreBounds
from stream_ad.sinks.base import Sink, Verdict, register_sink

FRAME, OVERLAY, SIDECAR = ".frame.png", ".overlay.png", ".json"  # the sidecar last: its presence means all are there


def utc(t: float, *, compact: bool = False) -> str:
    """A time.time() as UTC to the millisecond: 2024-05-01T10:15:30.123Z, or 20240501T101530.123Z for file names."""
    ms = int(t * 1000)
    moment = datetime.fromtimestamp(ms // 1000, UTC)
    return moment.strftime("%Y%m%dT%H%M%S" if compact else "%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def alarm_stem(v: Verdict) -> str:
    return f"{utc(v.t_capture, compact=True)}_{v.camera}_{v.frame_id:08d}"


@register_sink("images")
class ImageSink(Sink):
    needs_maps = True
    cfg: ImagesSinkSettings

    @property
    def folder(self) -> Path:
        return self.cfg.folder(self.output_dir)

    def open(self) -> None:
        c = self.cfg
        self.store = AlarmStore(self.folder, (FRAME, OVERLAY, SIDECAR),
                                StoreBounds(c.max_alarms, int(c.max_bytes), c.max_age_days * 86400.0), label=self.kind)
        self.store.open()

    def write(self, verdicts: list[Verdict]) -> None:
        failed = []
        for v in verdicts:
            if v.alarm:
                try:
                    self._store(v)
                except (OSError, ValueError) as exc:  # the batch's other alarms are still stored
                    failed.append(f"{v.camera}/{v.frame_id}: {exc}")
                self.progress()
        self.store.prune()  # the age bound, also while no alarm comes
        if failed:
            raise OSError(f"{len(failed)} alarm(s) not stored in {self.folder}: " + "; ".join(failed))

    def _store(self, v: Verdict) -> None:
        if v.image is None or v.anomaly_map is None:
            raise ValueError("the alarm came without its frame or anomaly map (the infer stage sends them when an "
                             "images sink is configured)")
        pixel = v.model.pixel_threshold if v.model else None
        raw = v.image if v.image.ndim == 2 else cv2.cvtColor(v.image, cv2.COLOR_RGB2BGR)
        picture = draw_overlay(v.image, v.anomaly_map, v.score, v.threshold, pixel)
        sidecar = json.dumps(self._sidecar(v, pixel), indent=1) + "\n"
        self.store.add(alarm_stem(v), {FRAME: _png(raw), OVERLAY: _png(picture), SIDECAR: sidecar.encode()})

    def _sidecar(self, v: Verdict, pixel: float | None) -> dict[str, Any]:
        assert v.image is not None
        return {
            **v.record(),  # frame id, camera, times, score, threshold, normalised score, verdict, path/url/pts
            "capture_time": utc(v.t_capture),
            "verdict_time": utc(v.t_verdict),
            "pixel_threshold": pixel,
            "coloured": "map > pixel_threshold" if pixel is not None
            else f"map > its {100 * FALLBACK_QUANTILE:g}th percentile (no pixel threshold calibrated)",
            "model": v.model.version if v.model else None,
            "frame_shape": list(v.image.shape),
        }


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} {image.dtype} picture as PNG")
    return data.tobytes()
