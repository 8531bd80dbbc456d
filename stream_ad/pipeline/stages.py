"""The stage functions of the built-in chain. Each factory runs once in its stage's process and returns a plain
function from a batch of frames to frames; everything around it (sockets, queues, batching, metrics, restarts) is
the shell's (stream_ad.pipeline.stage).

    source      camera frames (folder / video / RTSP), stamped with their capture time
    preprocess  frame -> normalised model inputs (resize / letterbox / tiles), as AnomalyModel does in-process;
                with a CUDA device it only validates and forwards the frame (the infer stage preprocesses on the GPU)
    infer       a dynamic batch of inputs (or, on CUDA, of frames) -> backbone + scorer -> one score (and map) per frame
    decide      score > threshold -> verdict
    sink        verdict -> JSON lines, stdout, images, PLCs (Modbus TCP, OPC UA, MQTT through a durable outbox)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from stream_ad.settings import Settings
from stream_ad.frames import Frame
from stream_ad.pipeline.stage import BadFrame, StageSpec

log = logging.getLogger("stream_ad.pipeline.stages")

MAX_SIDE = 16384


class StageContext:
    """What a stage factory gets. `pipeline`, `output_dir` and `data_root` are cheap; `settings` (the full model,
    whose validation imports the scorers and torch) is validated on first use, so light stages start fast."""

    def __init__(self, raw_settings: dict[str, Any], spec: StageSpec, metrics: Any, stop: threading.Event) -> None:
        from stream_ad.settings import PipelineSettings

        self._raw = raw_settings
        self.spec = spec
        self.metrics = metrics  # StageMetrics
        self.stop = stop  # set on SIGTERM
        self.pipeline = PipelineSettings.model_validate(raw_settings["pipeline"])
        self.output_dir = Path(raw_settings["output_dir"])
        self.data_root = Path(raw_settings["data"]["root"])
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.model_validate(self._raw)
        return self._settings


def source_folder(pipeline: Any, data_root: Path) -> Path:
    """What a folder source streams when source.path is unset: the test images of data.root."""
    return pipeline.source.path or data_root / "test"


def make_source(ctx: StageContext):  # noqa: ANN201 - an iterable of Capture | CameraEvent
    from stream_ad.sources import open_source

    return open_source(ctx.pipeline.source, source_folder(ctx.pipeline, ctx.data_root), skip=ctx.spec.first_id,
                       stop=ctx.stop)


class Preprocess:
    def __init__(self, ctx: StageContext) -> None:
        import torch

        from stream_ad.backbones import resolve_normalisation
        from stream_ad.data import Preprocessor

        from stream_ad.runtime.device import resolve_device

        torch.set_num_threads(ctx.settings.pipeline.preprocess.threads)
        mean, std = resolve_normalisation(ctx.settings.backbone)
        self.pre = Preprocessor(ctx.settings.preprocess, mean, std, "cpu")
        self.keep_image = bool(ctx.spec.extra.get("keep_image", False))
        # On CUDA the frame goes on as uint8 and the infer stage preprocesses it on the GPU: one host-to-device copy
        # of the smallest form of the frame, and no float inputs (4x the bytes) through ZeroMQ.
        self.forward_frames = resolve_device(ctx.settings.runtime.device).type == "cuda"
        self.pre([np.zeros((64, 64, 3), np.uint8)])  # first calls are slow: not on a real frame

    def __call__(self, batch: list[Frame]) -> list[Frame]:
        for frame in batch:
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
            frame.inputs = prepared.inputs.cpu().numpy()
            frame.meta["shape"] = list(prepared.frame_shapes[0])
            frame.meta["placements"] = [[p.th, p.tw, p.y0, p.y1, p.x0, p.x1] for p in prepared.placements]
            if not self.keep_image:
                frame.image = None
        return batch


def make_preprocess(ctx: StageContext) -> Preprocess:
    return Preprocess(ctx)


def default_infer_threads() -> int:
    """All cores but one: the other stages (and the camera reader) keep a core, and torch's OpenMP threads do not
    fight them for it (oversubscribed, they slow inference several-fold)."""
    return max(1, (os.cpu_count() or 2) - 1)


class Infer:
    """Backbone + scorer on a dynamic batch; per-frame scores (and maps) exactly as AnomalyModel.predict gives."""

    def __init__(self, ctx: StageContext) -> None:
        import torch

        from stream_ad.artefact import load_model

        cfg = ctx.settings.pipeline.infer
        threads = cfg.threads or ctx.settings.runtime.threads or default_infer_threads()
        torch.set_num_threads(threads)
        self.torch = torch
        model_dir = Path(ctx.spec.extra["model_dir"])
        self.model = load_model(model_dir, ctx.settings, max_batch=cfg.max_batch)
        self.send_maps = bool(ctx.spec.extra.get("send_maps", False))
        self.delay_s = cfg.delay_ms / 1000.0
        self._warm_up(cfg.max_batch)
        log.info("infer: model %s on %s, %d torch threads, batches up to %d", model_dir, self.model.device, threads,
                 cfg.max_batch)

    def _warm_up(self, max_batch: int) -> None:
        """First calls allocate and pick kernels; do it before the first real frame so its latency is honest."""
        side = self.model.preprocessor.input_size
        frame = np.full((side, side, 3), 127, dtype=np.uint8)
        for n in sorted({1, max_batch}):
            self.model.predict([frame] * n)

    def __call__(self, batch: list[Frame]) -> list[Frame]:
        if self.model.preprocessor.on_device is not None:
            return self._finish(batch, self._prepare_frames(batch))
        return self._finish(batch, self._gather_inputs(batch))

    def _prepare_frames(self, batch: list[Frame]) -> Any:
        """CUDA: the preprocess stage forwarded validated uint8 frames; they go to the GPU here, once."""
        if any(frame.image is None for frame in batch):
            raise BadFrame("no image in the message: on CUDA the infer stage preprocesses frames itself")
        prepared = self.model.preprocessor([frame.image for frame in batch])
        if not self.send_maps:  # the images sink overlays maps on the frame (preprocess keep_image, same flag)
            for frame in batch:
                frame.image = None
        return prepared

    def _gather_inputs(self, batch: list[Frame]) -> Any:
        """CPU: the preprocess stage sent normalised inputs and placements; stack them into one batch."""
        from stream_ad.data import Placement, Prepared

        placements: list[Placement] = []
        shapes: list[tuple[int, int]] = []
        inputs = []
        for i, frame in enumerate(batch):
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
        tensor = self.torch.from_numpy(np.concatenate(inputs) if len(inputs) > 1 else np.array(inputs[0]))
        return Prepared(tensor.to(self.model.device), placements, shapes)

    def _finish(self, batch: list[Frame], prepared: Any) -> list[Frame]:
        pred = self.model.score_prepared(prepared)
        if self.delay_s:
            time.sleep(self.delay_s)
        for frame, score, amap in zip(batch, pred.scores, pred.maps):
            frame.inputs = None
            frame.score = float(score)
            frame.anomaly_map = amap.astype(np.float16) if self.send_maps else None
        return batch


def make_infer(ctx: StageContext) -> Infer:
    return Infer(ctx)


class Decide:
    def __init__(self, ctx: StageContext) -> None:
        self.threshold = float(ctx.spec.extra["threshold"])

    def __call__(self, batch: list[Frame]) -> list[Frame]:
        for frame in batch:
            if frame.score is None:
                raise BadFrame("no score in the message: did it pass the infer stage?")
            frame.threshold = self.threshold
            frame.verdict = "anomaly" if frame.score > self.threshold else "ok"
        return batch


def make_decide(ctx: StageContext) -> Decide:
    return Decide(ctx)


class SinkStage:
    def __init__(self, ctx: StageContext) -> None:
        from stream_ad.sinks import make_sink

        self.metrics = ctx.metrics
        self.sinks = [make_sink(cfg, ctx.output_dir, f"pipeline.sink.outputs.{i}")
                      for i, cfg in enumerate(ctx.pipeline.sink.outputs)]
        for sink in self.sinks:
            sink.open()

    def __call__(self, batch: list[Frame]) -> list[Frame]:
        from stream_ad.frames import Verdict

        now = time.time()
        verdicts = [Verdict.from_frame(f, now) for f in batch]
        for sink in self.sinks:
            try:
                sink.write(verdicts)
            except Exception as exc:  # noqa: BLE001 - one failing sink must not silence the others
                self.metrics.sink_error(sink.kind)
                log.error("sink %s failed on %d verdicts (%s ... %s): %s", sink.kind, len(verdicts),
                          verdicts[0].frame_id, verdicts[-1].frame_id, exc)
        return batch

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def make_sink(ctx: StageContext) -> SinkStage:
    return SinkStage(ctx)
