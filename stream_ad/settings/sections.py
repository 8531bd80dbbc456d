"""The model's sections: data, backbone, preprocessing, scorer, runtime, calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from stream_ad.settings.base import Strict

SHARED_TOKEN = "${shared_dir}"
# The default frame score: the mean of the anomaly map's highest 1 % (PreprocessSettings.map_score_fraction).
MAP_SCORE_FRACTION = 0.01


class BackboneSettings(Strict):
    name: str = "mobilenet_v2"
    # A torchvision weights enum member (e.g. IMAGENET1K_V1, DEFAULT) looked up in the torch hub cache, or "random"
    # (speed measurements only). Ignored when weights_path is set.
    weights: str = "DEFAULT"
    weights_path: Path | None = Path(f"{SHARED_TOKEN}/weights/mobilenet_v2_imagenet_tflite.pth")
    # Mid-level taps by torchvision node name: MobileNetV2's stride-8 and stride-16 stage outputs.
    layers: list[str] = Field(default_factory=lambda: ["features.6", "features.13"], min_length=1)
    # Input normalisation of these weights. None takes the torchvision weights enum's; a weights file must state it.
    mean: tuple[float, float, float] | None = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] | None = (0.5, 0.5, 0.5)

    @model_validator(mode="after")
    def _normalisation_is_known(self) -> BackboneSettings:
        if (self.mean is None) != (self.std is None):
            raise ValueError("backbone.mean and backbone.std must be given together")
        if self.weights_path is not None and self.mean is None:
            raise ValueError(
                "backbone.weights_path is set, so backbone.mean and backbone.std must be set too: "
                "a weights file does not say how its inputs were normalised"
            )
        return self


class PreprocessSettings(Strict):
    """How a camera frame becomes the backbone's input, and the model's outputs the frame's score. See the README for
    when to pick which mode."""

    # resize: stretch to image_size x image_size. letterbox: keep the aspect ratio, pad to a square.
    # tile: keep native resolution, score overlapping tile_size tiles and stitch their maps.
    # aspect: keep the aspect ratio, scale the short side to image_size, cut the long side into image_size tiles.
    # (geometry.MODES: this module imports nothing of stream_ad, so the list is spelled out; a test compares them.)
    mode: Literal["resize", "letterbox", "tile", "aspect"] = "resize"
    image_size: int = Field(224, ge=32, le=4096)
    tile_size: int = Field(224, ge=32, le=4096)
    tile_overlap: float = Field(0.25, ge=0.0, lt=1.0)
    # Grey level of the letterbox padding (and of tile padding at frame edges).
    pad_value: int = Field(0, ge=0, le=255)
    # A frame's score. A fraction f: the mean of the frame's anomaly map over its highest f of pixels
    # (geometry.map_score), less swayed by one noisy patch than the map's maximum and more by a defect spanning many
    # patches. null: the method's own image score (PatchCore: its worst patch's distance, reweighted), the highest of
    # the frame's tiles; `stream-ad tune` tries the other rule (README, "The frame score": with 0.01 image AUROC rose
    # where it moved beyond noise, the worst shared set 0.874 -> 0.922, and magnetic_tile's cross-fitted calibrated
    # recall 55 -> 66 %).
    map_score_fraction: float | None = Field(MAP_SCORE_FRACTION, gt=0.0, le=1.0)


class ScorerSettings(Strict):
    # A registered method (stream_ad.scorers); checked, with its params, where the scorer is built, so that loading
    # settings never imports a method.
    method: str = Field("patchcore", pattern=r"^[A-Za-z0-9_]+$")
    # The method's own settings, validated by the method's settings model (errors name scorer.params.KEY).
    params: dict[str, Any] = Field(default_factory=dict)


class DataSettings(Strict):
    # An MVTec-AD-layout category folder: train/good, test/<type>, ground_truth/<type> (optional).
    root: Path = Path(f"{SHARED_TOKEN}/datasets/magnetic_tile")


class RuntimeSettings(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(16, ge=1, le=1024)
    # Torch intra-op threads; None keeps torch's default (one per core).
    threads: int | None = Field(None, ge=1)
    seed: int = 0
    # Per-epoch checkpoints of methods that train networks, so an interrupted fit resumes; None: OUTPUT_DIR/checkpoints.
    checkpoint_dir: Path | None = None
    # How the backbone runs (docs/pipeline.md, "Accelerated inference"): auto takes the best available on the device
    # and logs which and why; naming a path that cannot run here is an error saying what to install.
    accelerate: Literal["auto", "tensorrt", "torch_compile", "openvino", "eager"] = "auto"
    # auto: fp16 for tensorrt, fp32 elsewhere; fp16 and int8 (calibrated on good images) are TensorRT's only.
    precision: Literal["auto", "fp32", "fp16", "int8"] = "auto"
    # Converted models and engines, reused across restarts; None: OUTPUT_DIR/cache.
    cache_dir: Path | None = None


class CalibrationSettings(Strict):
    """How the decision threshold is set from good images the model never saw (stream-ad calibrate)."""

    # Share of train/good held out of fitting (a seeded, deterministic split recorded in the artefact) for
    # calibration. 0 fits on everything; calibrate then needs --good DIR of other good parts.
    holdout_fraction: float = Field(0.25, ge=0.0, lt=1.0)
    # Cross-fitting instead of a hold-out (0: hold out holdout_fraction): the model is fitted on every good image,
    # and `folds` models, each fitted on all folds but one, score the fold they left out; calibrate sets the
    # threshold from these out-of-fold scores of every image. It fits folds + 1 models. Measured in
    # calibration/README.md ("Cross-fitting"): more defects caught at the same bound, and small sets calibratable.
    folds: int = Field(0, ge=0)
    seed: int = 0
    # The false-alarm rate asked for: the threshold is set so that, at `confidence`, the true rate is at most this
    # (exact one-sided Clopper-Pearson bound). Fewer good images than that needs is an error naming how many.
    target_fpr: float = Field(0.02, gt=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    # Also set a pixel threshold for the anomaly map: this share of good pixels above it (None: no pixel threshold).
    pixel_target_fpr: float | None = Field(None, gt=0.0, lt=1.0)
    # Report the max-F1 threshold and the recall at the chosen threshold on data.root/test/<defect> when present.
    defects: bool = True

    @field_validator("folds")
    @classmethod
    def _folds(cls, folds: int) -> int:
        if folds == 1:
            raise ValueError("one fold leaves no image to fit on: give 0 (hold out holdout_fraction) or at least 2")
        return folds

