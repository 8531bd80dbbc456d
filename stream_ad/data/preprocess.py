"""Frames -> normalised backbone inputs, and scorer outputs -> one score and one map per frame at its own size.

Four geometries (preprocess.mode):
- resize: the frame is stretched to a square. Fast; fine when parts fill the frame and defects span many pixels.
- letterbox: the aspect ratio is kept and the rest padded; use it when frames are far from square.
- tile: native resolution, overlapping square tiles scored separately and stitched (mean over overlaps);
  image score = the highest tile score. Use it for large frames with defects a few pixels wide.
- aspect: the aspect ratio is kept, the short side scaled to image_size, the long side cut into overlapping
  squares as in tile: frames far from square at resize's scale across, neither squeezed nor padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stream_ad.data.device_preprocess import DevicePreprocess
from stream_ad.geometry import RESAMPLING, Geometry, Prepared, as_rgb, place_frames, to_frames
from stream_ad.settings import PreprocessSettings


def geometry_of(cfg: PreprocessSettings) -> Geometry:
    return Geometry(cfg.mode, cfg.image_size, cfg.tile_size, cfg.tile_overlap, cfg.pad_value)


class Preprocessor:
    """Frames -> inputs. On the CPU with OpenCV; on a CUDA device (or with on_device=True) as tensor operations on
    the device (stream_ad.data.device_preprocess), so frames cross to a GPU once, as uint8."""

    def __init__(
        self, cfg: PreprocessSettings, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
        on_device: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.geometry = geometry_of(cfg)
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        use_device = self.device.type == "cuda" if on_device is None else on_device
        self.on_device = DevicePreprocess(self.geometry, self.mean, self.std, self.device) if use_device else None

    @property
    def input_size(self) -> int:
        return self.geometry.input_size

    def describe(self) -> dict[str, object]:
        """What a saved model must be served with; compared on load."""
        # No map_score_fraction where it is None: the frame score every artefact fitted before the setting has.
        return {
            **self.cfg.model_dump(exclude={"map_score_fraction"} if self.cfg.map_score_fraction is None else None),
            # A model fitted on other resampling (OpenCV's, before) sees other inputs: it must not load silently.
            "resampling": RESAMPLING,
            "mean": [round(float(v) / 255.0, 6) for v in self.mean.flatten()],
            "std": [round(float(v) / 255.0, 6) for v in self.std.flatten()],
        }

    def __call__(self, frames: Sequence[np.ndarray]) -> Prepared:
        if self.on_device is not None:
            inputs, placements = self.on_device([as_rgb(i, frame) for i, frame in enumerate(frames)])
            return Prepared(inputs, placements, [frame.shape[:2] for frame in frames])
        pixels, prepared = place_frames(self.geometry, frames)
        batch = torch.from_numpy(pixels).to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()
        prepared.inputs = (batch - self.mean) / self.std
        return prepared

    @property
    def scores_need_maps(self) -> bool:
        """Whether a frame's score is taken from its map (preprocess.map_score_fraction)."""
        return self.cfg.map_score_fraction is not None

    def to_frames(
        self, prepared: Prepared, image_scores: np.ndarray, maps: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per-input scores and (S, S) maps -> per-frame score and map at the frame's size (geometry.to_frames)."""
        return to_frames(prepared, image_scores, maps, self.cfg.map_score_fraction)
