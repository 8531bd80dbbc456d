"""Preprocessing as tensor operations on the scorer's device: frames cross to a GPU once, as uint8.

Frames of one shape are stacked and uploaded together through a reused pinned host buffer (non-blocking copy), then
resized, letterboxed or cut into tiles (scaled first in aspect mode) and normalised there, in the batch. The geometry
(placements, tile origins, letterbox and aspect sizes) is the CPU path's (stream_ad.geometry), and so is the
resampling: torch's antialiased bilinear is the filter of the CPU path's Pillow BILINEAR, both in float32
(tests/data/test_device_preprocess.py).
The same code runs on CPU tensors, which is how the CPU tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stream_ad.geometry import Geometry, Placement, cut_size, letterbox_size, tile_grid


def resize_batch(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(N, 3, H, W) float -> (N, 3, h, w), bilinear, antialiased along each axis that shrinks (geometry.resize)."""
    if (h, w) == tuple(x.shape[-2:]):
        return x
    # antialias acts per axis (an enlarged axis gets plain bilinear): deciding by area left an axis shrunk while the
    # other grew unfiltered.
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


class PinnedUploader:
    """uint8 host arrays -> device tensors through one pinned buffer, grown as needed and reused.

    The copy is asynchronous; before the buffer is overwritten, the previous copy is waited for (an event), so the
    host never races its own transfer.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.buffer = torch.empty(0, dtype=torch.uint8)
        self.copied: torch.cuda.Event | None = None

    def __call__(self, array: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(np.ascontiguousarray(array))
        if self.device.type != "cuda":
            return host
        if self.copied is not None:
            self.copied.synchronize()
        if self.buffer.numel() < host.numel():
            self.buffer = torch.empty(host.numel(), dtype=torch.uint8, pin_memory=True)
        staged = self.buffer[: host.numel()].view(host.shape)
        staged.copy_(host)
        out = staged.to(self.device, non_blocking=True)
        self.copied = torch.cuda.Event()
        self.copied.record()
        return out


class DevicePreprocess:
    def __init__(self, geometry: Geometry, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> None:
        self.geometry = geometry
        self.mean, self.std = mean, std  # (1, 3, 1, 1) on `device`, in 0..255 units
        self.upload = PinnedUploader(device)
        self.device = device

    @property
    def size(self) -> int:
        return self.geometry.input_size

    def _place(self, index: int, img: torch.Tensor) -> tuple[list[torch.Tensor], list[Placement]]:
        """One frame (1, 3, H, W) float on the device -> its input tensors (1, 3, S, S) and placements (letterbox,
        tile, aspect; resize runs batched in __call__)."""
        h, w = img.shape[-2:]
        s = self.size
        if self.geometry.mode == "letterbox":
            th, tw = letterbox_size(h, w, s)
            canvas = img.new_full((1, 3, s, s), float(self.geometry.pad_value))
            canvas[..., :th, :tw] = resize_batch(img, th, tw)
            return [canvas], [Placement(index, th, tw, 0, h, 0, w)]
        cut = resize_batch(img, *cut_size(self.geometry, h, w))
        tiles, places = [], []
        for y, x, p in tile_grid(index, (h, w), tuple(cut.shape[-2:]), self.geometry):
            crop = cut[..., y : y + s, x : x + s]
            if (p.th, p.tw) != (s, s):  # a frame smaller than a tile: pad, never stretch
                crop = F.pad(crop, (0, s - p.tw, 0, s - p.th), value=float(self.geometry.pad_value))
            tiles.append(crop)
            places.append(p)
        return tiles, places

    def __call__(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, list[Placement]]:
        """Validated uint8 (H, W, 3) frames -> normalised inputs (N, 3, S, S) on the device and their placements."""
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            by_shape.setdefault(frame.shape, []).append(i)
        per_frame: dict[int, tuple[list[torch.Tensor], list[Placement]]] = {}
        for indices in by_shape.values():  # a camera's frames share one shape: one upload, one resize per batch
            batch = self.upload(np.stack([frames[i] for i in indices]))
            batch = batch.to(self.device).permute(0, 3, 1, 2).float()
            if self.geometry.mode == "resize":
                resized = resize_batch(batch, self.size, self.size)
                h, w = batch.shape[-2:]
                for k, i in enumerate(indices):
                    per_frame[i] = [resized[k : k + 1]], [Placement(i, self.size, self.size, 0, h, 0, w)]
            else:
                for k, i in enumerate(indices):
                    per_frame[i] = self._place(i, batch[k : k + 1])
        inputs = torch.cat([t for i in range(len(frames)) for t in per_frame[i][0]])
        placements = [p for i in range(len(frames)) for p in per_frame[i][1]]
        return (inputs - self.mean) / self.std, placements
