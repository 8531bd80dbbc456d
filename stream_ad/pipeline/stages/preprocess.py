"""frame -> normalised model inputs (resize / letterbox / aspect / tiles), as AnomalyModel does in-process. With a
CUDA device it only validates and forwards the frame: the infer stage preprocesses on the GPU."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_ad.frames import Frame
from stream_ad.line.artefact import is_runtime_artefact, read_runtime_manifest
from stream_ad.line.model import LinePreprocessor
from stream_ad.pipeline.stages.base import BadFrame, Stage, StageContext
from stream_ad.settings import Settings

MAX_SIDE = 16384


class Preprocess(Stage):
    def open(self, ctx: StageContext) -> None:
        self.keep_image = ctx.plan.send_maps  # the images sink overlays the maps on the frame
        self.pre: Any
        if is_runtime_artefact(ctx.model.model_dir):  # OpenCV and numpy, as the artefact records them: no torch
            self.pre = LinePreprocessor(read_runtime_manifest(ctx.model.model_dir).pre)
            self.forward_frames = False
        else:
            self._open_torch(ctx.settings)
        self.pre([np.zeros((64, 64, 3), np.uint8)])  # first calls are slow: not on a real frame

    def _open_torch(self, settings: Settings) -> None:
        import torch

        from stream_ad.backbones import resolve_normalisation
        from stream_ad.data import Preprocessor
        from stream_ad.runtime.device import resolve_device

        torch.set_num_threads(settings.pipeline.preprocess.threads)
        mean, std = resolve_normalisation(settings.backbone)
        self.pre = Preprocessor(settings.preprocess, mean, std, "cpu")
        # On CUDA the frame goes on as uint8 and the infer stage preprocesses it on the GPU: one host-to-device copy
        # of the smallest form of the frame, and no float inputs (4x the bytes) through ZeroMQ.
        self.forward_frames = resolve_device(settings.runtime.device).type == "cuda"

    def process(self, frames: list[Frame]) -> list[Frame]:
        for frame in frames:
            img = frame.image
            if img is None:
                raise BadFrame("no image in the message")
            if img.dtype != np.uint8:
                raise BadFrame(f"image dtype {img.dtype}, expected uint8")
            if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3))):
                raise BadFrame(f"image shape {list(img.shape)}, expected (H, W, 3) or (H, W)")
            if not (0 < img.shape[0] <= MAX_SIDE and 0 < img.shape[1] <= MAX_SIDE):
                raise BadFrame(f"image size {img.shape[1]}x{img.shape[0]} outside 1..{MAX_SIDE}")
            if img.ndim == 3 and img.shape[2] == 1:
                img = img[:, :, 0]
            if self.forward_frames:
                frame.image = img
                continue
            prepared = self.pre([img])
            frame.inputs = np.asarray(prepared.inputs)  # a CPU tensor's buffer, or already an array
            frame.meta["shape"] = list(prepared.frame_shapes[0])
            frame.meta["placements"] = [[p.th, p.tw, p.y0, p.y1, p.x0, p.x1] for p in prepared.placements]
            if not self.keep_image:
                frame.image = None
        return frames
