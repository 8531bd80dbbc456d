"""A fitted model as a line PC runs it: preprocessing + scorer (+ threshold), saved as a versioned artefact.

Artefact folder:
    manifest.json        format version, stream_ad/torch versions, the full settings it was fitted with, the
                         backbone's name, taps and weights sha256, the preprocessing, the threshold (or null:
                         `stream-ad calibrate` sets it), the data split (fitted and held-out images, by path and
                         sha256)
    state.safetensors    the scorer's fitted tensors (no pickled objects)

Loading checks the manifest against what the line PC would run: another backbone, other weights (by sha256),
other preprocessing or another method is an error listing each difference, never a silent degradation.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import stream_ad
from stream_ad.backbones import resolve_normalisation
from stream_ad.runtime.accelerate import AccelerateSpec
from stream_ad.settings import Settings
from stream_ad.data import MVTecCategory, Prepared, Preprocessor, read_image
from stream_ad.runtime.device import resolve_device
from stream_ad.scorers import Scorer, ScorerContext, build_scorer, scorer_params

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATE = "state.safetensors"
CALIBRATION_IMAGES = 64  # good training images an INT8 engine calibrates its ranges on


class ArtefactError(RuntimeError):
    pass


class ImageBatches:
    """Image files -> preprocessed batches, decoded by a small thread pool (OpenCV releases the GIL)."""

    def __init__(self, paths: Sequence[Path], preprocessor: Preprocessor, batch_size: int) -> None:
        self.paths = list(paths)
        self.preprocessor = preprocessor
        self.batch_size = batch_size

    def __len__(self) -> int:
        return (len(self.paths) + self.batch_size - 1) // self.batch_size

    def frames(self) -> Iterator[list[np.ndarray]]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for start in range(0, len(self.paths), self.batch_size):
                yield list(pool.map(read_image, self.paths[start : start + self.batch_size]))

    def __iter__(self) -> Iterator[torch.Tensor]:
        for frames in self.frames():
            yield self.preprocessor(frames).inputs


@dataclass
class FramePrediction:
    scores: np.ndarray  # (N,) image scores
    maps: list[np.ndarray]  # N maps, each at its frame's own (H, W)


class AnomalyModel:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.runtime.device)
        if settings.runtime.threads:
            torch.set_num_threads(settings.runtime.threads)
        mean, std = resolve_normalisation(settings.backbone)
        self.preprocessor = Preprocessor(settings.preprocess, mean, std, self.device)
        checkpoints = settings.runtime.checkpoint_dir or settings.output_dir / "checkpoints"
        context = ScorerContext(
            settings.backbone, self.device, self.preprocessor.input_size, settings.runtime.seed, checkpoints,
            self._accelerate_spec(),
        )
        self.scorer: Scorer = build_scorer(settings.scorer, context)
        self.threshold: dict[str, Any] | None = None
        self.data_split: dict[str, Any] | None = None  # HoldoutSplit.manifest(): what was fitted on, what held out

    def _accelerate_spec(self) -> AccelerateSpec:
        runtime = self.settings.runtime

        def calibration() -> ImageBatches:
            train = MVTecCategory(self.settings.data.root).train()[:CALIBRATION_IMAGES]
            return ImageBatches([s.path for s in train], self.preprocessor, runtime.batch_size)

        # The largest batch served whole: the infer stage's dynamic batches and fitting's batches.
        max_batch = max(self.settings.pipeline.infer.max_batch, runtime.batch_size)
        cache = runtime.cache_dir or self.settings.output_dir / "cache"
        return AccelerateSpec(runtime.accelerate, runtime.precision, cache, max_batch, calibration)

    def fit(self, paths: Sequence[Path]) -> None:
        torch.manual_seed(self.settings.runtime.seed)
        self.scorer.fit(ImageBatches(paths, self.preprocessor, self.settings.runtime.batch_size))

    def predict(self, frames: Sequence[np.ndarray]) -> FramePrediction:
        return self.score_prepared(self.preprocessor(frames))

    def score_prepared(self, prepared: Prepared) -> FramePrediction:
        """Score a preprocessed batch (the infer stage's, or predict's own) into one score and map per frame."""
        out = self.scorer.score(prepared.inputs)
        scores, maps = self.preprocessor.to_frames(
            prepared, out.image.float().cpu().numpy(), out.maps.float().cpu().numpy()
        )
        return FramePrediction(scores, maps)

    def predict_files(self, paths: Sequence[Path]) -> Iterator[FramePrediction]:
        for frames in ImageBatches(paths, self.preprocessor, self.settings.runtime.batch_size).frames():
            yield self.predict(frames)

    # ---- artefact ----
    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "stream_ad_version": stream_ad.__version__,
            "torch_version": torch.__version__,
            "python": platform.python_version(),
            "method": self.settings.scorer.method,
            "scorer_params": self.scorer.params.model_dump(mode="json"),
            "backbone": self.scorer.backbone_identity(),
            "preprocessing": self.preprocessor.describe(),
            "threshold": self.threshold,
            "data_split": self.data_split,
            "settings": self.settings.model_dump(mode="json"),
        }

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous().cpu() for k, v in self.scorer.state_tensors().items()}, directory / STATE)
        # The manifest goes last: a folder with a manifest is a complete artefact.
        self.save_manifest(directory)
        log.info("saved model artefact %s", directory)
        return directory

    def save_manifest(self, directory: str | Path) -> None:
        """Rewrite only the manifest (calibration changes no tensors), atomically: a pipeline starting meanwhile
        reads the old manifest or the new one, never half of one."""
        path = Path(directory) / MANIFEST
        tmp = path.with_name(f".{MANIFEST}.tmp")
        tmp.write_text(json.dumps(self.manifest(), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, directory: str | Path, settings: Settings | None = None) -> AnomalyModel:
        """Load an artefact. With `settings`, they must describe the same model; their weights path is used."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        fitted = Settings.model_validate(manifest["settings"])
        if settings is not None:
            diffs = _differences(fitted, settings)
            if diffs:
                raise ArtefactError(f"model artefact {directory} was fitted with other settings: " + "; ".join(diffs))
            run = settings.model_copy(update={"scorer": fitted.scorer})
        else:
            run = fitted
        model = cls(run)
        saved_id, now_id = manifest["backbone"], model.scorer.backbone_identity()
        if saved_id != now_id:
            raise ArtefactError(
                f"model artefact {directory} was fitted with backbone {saved_id} but these settings load {now_id}: "
                "other weights give other features, so this model would silently mis-score; refit or fix the weights"
            )
        if manifest["preprocessing"] != model.preprocessor.describe():
            raise ArtefactError(
                f"model artefact {directory} expects preprocessing {manifest['preprocessing']}, "
                f"got {model.preprocessor.describe()}"
            )
        model.scorer.load_state_tensors(load_file(directory / STATE, device="cpu"))
        model.threshold = manifest["threshold"]
        model.data_split = manifest.get("data_split")  # artefacts written before calibration existed have none
        return model


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtefactError(f"not a stream_ad model artefact: {path} is missing")
    manifest = json.loads(path.read_text())
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtefactError(
            f"{path} has artefact format {version}; this stream_ad {stream_ad.__version__} reads format "
            f"{FORMAT_VERSION}: refit the model with this version"
        )
    if not (directory / STATE).is_file():
        raise ArtefactError(f"model artefact {directory} is incomplete: {STATE} is missing")
    return manifest


def _differences(fitted: Settings, wanted: Settings) -> list[str]:
    """Settings that change what the model computes; paths to data and weights may differ between machines."""
    out = []
    for section in ("backbone", "preprocess", "scorer"):
        a, b = (_computing(s, section) for s in (fitted, wanted))
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}: fitted {a.get(key)!r}, now {b.get(key)!r}")
    return out


def _computing(settings: Settings, section: str) -> dict[str, Any]:
    if section == "scorer":  # params as the method reads them, defaults filled in
        return {"method": settings.scorer.method, "params": scorer_params(settings.scorer).model_dump(mode="json")}
    return getattr(settings, section).model_dump(mode="json", exclude={"weights_path"})
