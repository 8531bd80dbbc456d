"""The anomaly map of each alarmed frame, saved as a PNG (the frame with the map as a heat overlay)."""

from __future__ import annotations

import cv2
import numpy as np

from stream_ad.sinks.base import Sink, Verdict, register_sink


def overlay(image: np.ndarray | None, amap: np.ndarray, threshold: float) -> np.ndarray:
    """BGR uint8: the map scaled so the threshold sits mid-scale, blended over the frame when there is one."""
    scaled = np.clip(amap / (2.0 * threshold) if threshold > 0 else amap / max(float(amap.max()), 1e-6), 0.0, 1.0)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    if image is None:
        return heat
    base = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    base = cv2.cvtColor(np.ascontiguousarray(base), cv2.COLOR_RGB2BGR)
    if base.shape[:2] != heat.shape[:2]:
        heat = cv2.resize(heat, (base.shape[1], base.shape[0]))
    return cv2.addWeighted(base, 0.55, heat, 0.45, 0.0)


@register_sink("images")
class ImageSink(Sink):
    needs_maps = True

    @property
    def folder(self):  # noqa: ANN201 - Path
        return self.cfg.folder(self.output_dir)

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, verdicts: list[Verdict]) -> None:
        for v in verdicts:
            if not v.alarm or v.anomaly_map is None:
                continue
            out = self.folder / f"{v.camera}_{v.frame_id:08d}_{v.score:.3f}.png"
            if not cv2.imwrite(str(out), overlay(v.image, v.anomaly_map.astype(np.float32), v.threshold)):
                raise OSError(f"cannot write {out}")
