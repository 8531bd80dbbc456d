"""Frames -> normalised backbone inputs, and scorer outputs -> one score and one map per frame at its own size.

Three geometries (preprocess.mode):
- resize: the frame is stretched to a square. Fast; fine when parts fill the frame and defects span many pixels.
- letterbox: the aspect ratio is kept and the rest padded; use it when frames are far from square.
- tile: native resolution, overlapping square tiles scored separately and stitched (mean over overlaps);
  image score = the highest tile score. Use it for large frames with defects a few pixels wide.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from stream_ad.data.device_preprocess import DevicePreprocess
from stream_ad.data.geometry import Placement, Prepared, letterbox_size, tile_starts
from stream_ad.settings import PreprocessSettings


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    shrinking = h * w < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class Preprocessor:
    """Frames -> inputs. On the CPU with OpenCV; on a CUDA device (or with on_device=True) as tensor operations on
    the device (stream_ad.data.device_preprocess), so frames cross to a GPU once, as uint8."""

    def __init__(
        self, cfg: PreprocessSettings, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
        on_device: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        use_device = self.device.type == "cuda" if on_device is None else on_device
        self.on_device = DevicePreprocess(cfg, self.mean, self.std, self.device) if use_device else None

    @property
    def input_size(self) -> int:
        return self.cfg.tile_size if self.cfg.mode == "tile" else self.cfg.image_size

    def describe(self) -> dict[str, object]:
        """What a saved model must be served with; compared on load."""
        return {
            **self.cfg.model_dump(),
            "mean": [round(float(v) / 255.0, 6) for v in self.mean.flatten()],
            "std": [round(float(v) / 255.0, 6) for v in self.std.flatten()],
        }

    def _place(self, index: int, img: np.ndarray) -> tuple[list[np.ndarray], list[Placement]]:
        h, w = img.shape[:2]
        s, mode = self.input_size, self.cfg.mode
        if mode == "resize":
            return [_resize(img, s, s)], [Placement(index, s, s, 0, h, 0, w)]
        canvas_fill = self.cfg.pad_value
        if mode == "letterbox":
            th, tw = letterbox_size(h, w, s)
            canvas = np.full((s, s, 3), canvas_fill, dtype=np.uint8)
            canvas[:th, :tw] = _resize(img, th, tw)
            return [canvas], [Placement(index, th, tw, 0, h, 0, w)]
        tiles, places = [], []
        for y in tile_starts(h, s, self.cfg.tile_overlap):
            for x in tile_starts(w, s, self.cfg.tile_overlap):
                crop = img[y : y + s, x : x + s]
                th, tw = crop.shape[:2]
                if (th, tw) != (s, s):  # a frame smaller than a tile: pad, never stretch
                    canvas = np.full((s, s, 3), canvas_fill, dtype=np.uint8)
                    canvas[:th, :tw] = crop
                    crop = canvas
                tiles.append(crop)
                places.append(Placement(index, th, tw, y, y + th, x, x + tw))
        return tiles, places

    def __call__(self, frames: Sequence[np.ndarray]) -> Prepared:
        arrays: list[np.ndarray] = []
        placements: list[Placement] = []
        shapes: list[tuple[int, int]] = []
        for i, frame in enumerate(frames):
            if frame.ndim == 2:
                frame = np.repeat(frame[:, :, None], 3, axis=2)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected uint8 (H, W, 3) or (H, W), got {frame.dtype} {frame.shape}")
            shapes.append(frame.shape[:2])
            if self.on_device is None:
                a, p = self._place(i, frame)
                arrays.extend(a)
                placements.extend(p)
            else:
                arrays.append(frame)
        if self.on_device is not None:
            inputs, placements = self.on_device(arrays)
            return Prepared(inputs, placements, shapes)
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))
        batch = batch.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        return Prepared((batch - self.mean) / self.std, placements, shapes)

    def to_frames(
        self, prepared: Prepared, image_scores: np.ndarray, maps: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per-input scores and (S, S) maps -> per-frame score (max over its tiles) and map at the frame's size."""
        n = len(prepared.frame_shapes)
        frame_scores = np.full(n, -np.inf, dtype=np.float32)
        sums = [np.zeros(shape, dtype=np.float32) for shape in prepared.frame_shapes]
        counts = [np.zeros(shape, dtype=np.float32) for shape in prepared.frame_shapes]
        for p, score, m in zip(prepared.placements, image_scores, maps):
            frame_scores[p.frame] = max(frame_scores[p.frame], float(score))
            content = m[: p.th, : p.tw]
            region = (slice(p.y0, p.y1), slice(p.x0, p.x1))
            target = (p.y1 - p.y0, p.x1 - p.x0)
            if content.shape != target:
                content = cv2.resize(content, (target[1], target[0]), interpolation=cv2.INTER_LINEAR)
            sums[p.frame][region] += content
            counts[p.frame][region] += 1.0
        return frame_scores, [s / c for s, c in zip(sums, counts)]
