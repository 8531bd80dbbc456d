"""A dynamic batch -> backbone + scorer -> one score (and anomaly map) per frame, as AnomalyModel scores in-process;
for a runtime artefact (`stream-ad export`), as stream_ad.line.model.LineModel does, without torch."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from stream_ad.frames import Frame
from stream_ad.geometry import Placement, Prepared
from stream_ad.line.artefact import is_runtime_artefact
from stream_ad.line.model import LineModel
from stream_ad.pipeline.model_lock import ModelLock
from stream_ad.pipeline.stages.base import BadFrame, BadScore, Stage, StageContext

log = logging.getLogger("stream_ad.pipeline.stages")


def default_infer_threads() -> int:
    """All cores but one: the other stages (and the camera reader) keep a core, and torch's OpenMP threads do not
    fight them for it (oversubscribed, they slow inference several-fold)."""
    return max(1, (os.cpu_count() or 2) - 1)


def default_infer_streams(cameras: int) -> int:
    """One for a model one camera uses: its frames come one at a time, and one request with every thread answers each
    soonest. With several cameras a batch holds frames of several, and one request per core scores them side by side
    (the threads of one request share a 224 px PatchCore image far less well: 1.4x the CPU per image at 2 threads)."""
    return 1 if cameras <= 1 else min(cameras, os.cpu_count() or 1)


class Infer(Stage):
    def open(self, ctx: StageContext) -> None:
        settings = ctx.settings
        cfg = settings.pipeline.infer
        threads = cfg.threads or settings.runtime.threads or default_infer_threads()
        # The cameras at the start: one added by a reload shares the streams there are (its model is not restarted).
        cameras = sum(1 for spec in ctx.plan.stages if spec.camera is not None and spec.model == ctx.spec.model)
        streams = cfg.streams or default_infer_streams(cameras)
        model_dir = ctx.model.model_dir
        self.model: Any
        if is_runtime_artefact(model_dir):  # OpenVINO alone: this process never imports torch
            self.model = LineModel(model_dir, threads, streams)
            self.as_inputs: Callable[[np.ndarray], Any] = np.asarray
        else:
            import torch

            from stream_ad.artefact import load_model

            torch.set_num_threads(threads)
            self.model = load_model(model_dir, settings, max_batch=cfg.max_batch, streams=streams)
            self.as_inputs = lambda inputs: torch.from_numpy(inputs).to(self.model.device)
        self.send_maps = ctx.plan.send_maps
        self.delay_s = cfg.delay_ms / 1000.0
        self._warm_up(cfg.max_batch)
        # Batches side by side, each on its own OpenVINO request: one is taken while the others are scored, where
        # a lone request would leave cores idle between batches (and with batches of one, always all but one).
        self.concurrent_batches = self.model.parallel_calls()
        # Batches share the model; the console's teaching (its own thread) has it alone.
        self.lock = ModelLock()
        self.teaching = None
        if ctx.plan.console is not None:
            from stream_ad.pipeline.teaching import TeachingChannel

            self.teaching = TeachingChannel(ctx.plan.console.control(ctx.model.key), self.model, model_dir,
                                            ctx.model.threshold, settings.pipeline.console.max_taught_patches,
                                            self.lock)
        log.info("infer: model %s on %s, %d threads, %d stream%s, batches up to %d, %d at once", model_dir,
                 self.model.device, threads, streams, "" if streams == 1 else "s", cfg.max_batch,
                 self.concurrent_batches)

    def _warm_up(self, max_batch: int) -> None:
        """First calls allocate and pick kernels (torch.compile: one graph per power-of-two batch bucket); do it for
        every bucket before the first real frame, so its latency is honest and no first batch of a new size outlasts
        pipeline.supervisor.hung_after_s (the stage would be killed as hung, and compile again after its restart)."""
        side = self.model.preprocessor.input_size
        frame = np.full((side, side, 3), 127, dtype=np.uint8)
        for n in sorted({min(2**k, max_batch) for k in range(max_batch.bit_length())} | {max_batch}):
            self.model.predict([frame] * n)

    def process(self, frames: list[Frame]) -> list[Frame]:
        on_device = self.model.preprocessor.on_device is not None
        prepared = self._prepare_frames(frames) if on_device else self._gather_inputs(frames)
        with self.lock.shared():
            # Maps only where a sink or the console draws them: none brought to each frame's size for nothing.
            pred = self.model.score_prepared(prepared) if self.send_maps else None
            scores = pred.scores if pred is not None else self.model.score_frames(prepared)
        bad = [frame.key for frame, score in zip(frames, scores) if not math.isfinite(score)]
        if bad:
            # Raised before any frame is changed: the shell retries the batch frame by frame, so only these drop.
            raise BadScore(f"the model scored {', '.join(map(str, bad))} NaN or infinite")
        if self.delay_s:
            time.sleep(self.delay_s)
        for i, (frame, score) in enumerate(zip(frames, scores, strict=True)):
            frame.inputs = None
            if on_device and pred is None:  # the images sink overlays maps on the frame (preprocess keep_image)
                frame.image = None
            frame.score = float(score)
            frame.anomaly_map = pred.maps[i].astype(np.float16) if pred is not None else None
        return frames

    def close(self) -> None:
        if self.teaching is not None:
            self.teaching.close()

    def _prepare_frames(self, frames: list[Frame]) -> Any:
        """CUDA: the preprocess stage forwarded validated uint8 frames; they go to the GPU here, once."""
        if any(frame.image is None for frame in frames):
            raise BadFrame("no image in the message: on CUDA the infer stage preprocesses frames itself")
        return self.model.preprocessor([frame.image for frame in frames])

    def _gather_inputs(self, frames: list[Frame]) -> Any:
        """CPU: the preprocess stage sent normalised inputs and placements; stack them into one batch."""
        placements: list[Placement] = []
        shapes: list[tuple[int, int]] = []
        inputs = []
        for i, frame in enumerate(frames):
            if frame.inputs is None or frame.inputs.ndim != 4:
                raise BadFrame("no model inputs (T, 3, S, S) in the message: was it preprocessed?")
            try:
                places = [Placement(i, *map(int, p)) for p in frame.meta["placements"]]
                shape = (int(frame.meta["shape"][0]), int(frame.meta["shape"][1]))
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise BadFrame(f"placements/shape missing or malformed in the header: {exc}") from None
            if len(places) != frame.inputs.shape[0]:
                raise BadFrame(f"{len(places)} placements for {frame.inputs.shape[0]} input tensors")
            placements.extend(places)
            shapes.append(shape)
            inputs.append(frame.inputs)
        return Prepared(self.as_inputs(np.concatenate(inputs) if len(inputs) > 1 else np.array(inputs[0])), placements,
                        shapes)
