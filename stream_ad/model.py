"""A model as a line PC runs it: preprocessing + scorer, scoring frames in batches into one score and map each.

It knows nothing of the application around it: the batch size it serves and the good images an INT8 engine
calibrates on are given to it; saving and loading it is the artefact module's (stream_ad.artefact).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream_ad.backbones import resolve_normalisation
from stream_ad.data import ImageBatches, Prepared, Preprocessor
from stream_ad.geometry import FramePrediction, frame_scores
from stream_ad.runtime.accelerate import AccelerateSpec
from stream_ad.runtime.device import resolve_device
from stream_ad.scorers import Scorer, ScorerContext, build_scorer
from stream_ad.settings import MAX_IMAGE_PIXELS, Settings

CALIBRATION_IMAGES = 64  # good images an INT8 engine calibrates its ranges on


class AnomalyModel:
    def __init__(
        self, settings: Settings, *, max_batch: int | None = None, calibration_images: Sequence[Path] = (),
        max_image_pixels: int = MAX_IMAGE_PIXELS, streams: int = 1,
    ) -> None:
        """`max_batch`: the largest batch it will be asked to score (default runtime.batch_size); `streams`: OpenVINO
        requests run side by side on a batch (stream_ad.runtime.openvino.compile_for_cpu); `calibration_images`:
        good images for an INT8 engine's ranges (only read if one is built); `max_image_pixels`: the largest image
        file it reads (fit, calibration, predict; the callers give the camera's limit, pipeline.source's)."""
        self.settings = settings
        self.max_image_pixels = max_image_pixels
        self.device = resolve_device(settings.runtime.device)
        if settings.runtime.threads:
            torch.set_num_threads(settings.runtime.threads)
        mean, std = resolve_normalisation(settings.backbone)
        self.preprocessor = Preprocessor(settings.preprocess, mean, std, self.device)
        context = ScorerContext(
            settings.backbone, self.device, self.preprocessor.input_size, settings.runtime.seed,
            settings.checkpoint_folder,
            self._accelerate_spec(max_batch or settings.runtime.batch_size, streams, calibration_images),
        )
        self.scorer: Scorer = build_scorer(settings.scorer, context)
        self.threshold: dict[str, Any] | None = None  # the calibration record (stream_ad.calibration)
        self.data_split: dict[str, Any] | None = None  # HoldoutSplit.manifest(): what was fitted on, what held out

    def _accelerate_spec(self, max_batch: int, streams: int, calibration_images: Sequence[Path]) -> AccelerateSpec:
        runtime = self.settings.runtime
        images = list(calibration_images)[:CALIBRATION_IMAGES]

        def calibration() -> ImageBatches:
            return self.image_batches(images)

        # The largest batch served whole: the caller's (the infer stage's dynamic batches) and fitting's batches.
        return AccelerateSpec(runtime.accelerate, runtime.precision, self.settings.cache_folder,
                              max(max_batch, runtime.batch_size), streams, calibration if images else None)

    def image_batches(self, paths: Sequence[Path]) -> ImageBatches:
        """Image files -> batches of decoded frames, at runtime.batch_size, under the pixel limit."""
        return ImageBatches(paths, self.preprocessor, self.settings.runtime.batch_size, self.max_image_pixels)

    def fit(self, paths: Sequence[Path]) -> None:
        torch.manual_seed(self.settings.runtime.seed)
        self.scorer.fit(self.image_batches(paths))

    def predict(self, frames: Sequence[np.ndarray]) -> FramePrediction:
        return self.score_prepared(self.preprocessor(frames))

    def parallel_calls(self) -> int:
        """Batches score_prepared() may score at once, from as many threads (Scorer.parallel_calls)."""
        return self.scorer.parallel_calls()

    def score_prepared(self, prepared: Prepared) -> FramePrediction:
        """Score a preprocessed batch (the infer stage's, or predict's own) into one score and map per frame."""
        out = self.scorer.score(prepared.inputs)
        scores, maps = self.preprocessor.to_frames(
            prepared, out.image.float().cpu().numpy(), out.maps.float().cpu().numpy()
        )
        return FramePrediction(scores, maps)

    def score_frames(self, prepared: Prepared) -> np.ndarray:
        """score_prepared's per-frame scores alone, for a caller that has no use for maps: they are not brought to
        each frame's size, unless the scores come from them (preprocess.map_score_fraction)."""
        if self.preprocessor.scores_need_maps:
            return self.score_prepared(prepared).scores
        return frame_scores(prepared, self.scorer.score(prepared.inputs).image.float().cpu().numpy())

    def score_files(self, paths: Sequence[Path]) -> np.ndarray:
        """The image scores of image files, in order (no maps brought to the frames' sizes unless scores need them)."""
        batches = [self.score_frames(self.preprocessor(frames)) for frames in self.image_batches(paths).frames()]
        return np.concatenate(batches) if batches else np.zeros(0, np.float32)

    def predict_files(self, paths: Sequence[Path]) -> Iterator[FramePrediction]:
        for frames in self.image_batches(paths).frames():
            yield self.predict(frames)
