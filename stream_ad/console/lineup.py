"""What the console serves, read from the run plan: each model (its artefact's facts, its threshold and calibration,
its infer stage's teaching channel) and each camera with the key of its model. A plan with many cameras may name many
models; everything the page shows or teaches goes through a camera's own model, so two models' facts never mix.

A reload replaces the lineup as a whole (read_lineup on the new plan); a teaching replaces one model's facts
(Lineup.refreshed), since the artefact's taught version changed on disk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from stream_ad.artefact import read_manifest
from stream_ad.calibration.shift import GoodScores
from stream_ad.frames import Frame, judging_model
from stream_ad.pipeline.plan import ModelSpec, RunPlan
from stream_ad.scorers import scorer_class


@dataclass(frozen=True)
class ModelFacts:
    """What the page says about one model: which artefact, whether it learns from the "good" button, how its
    threshold was set and how often it was taught."""

    key: str  # the run's key of the model ("m0", "m1", ...)
    model_dir: str
    version: str  # the artefact's identity as the run serves it (the decide stage stamps it on each verdict)
    method: str
    teachable: bool
    threshold: float
    pixel_threshold: float | None
    calibration: dict[str, Any] | None  # the artefact's calibration record, its sample of good scores left out
    taught_version: int  # the artefact's teaching version on disk (0: as fitted)
    taught_since_calibration: int  # teachings of the artefact made after its threshold was calibrated


@dataclass(frozen=True)
class ConsoleModel:
    spec: ModelSpec
    facts: ModelFacts
    control: str  # its infer stage's teaching channel
    good_scores: GoodScores | None  # its calibration's good scores: the drift watch's reference (None: watch off)


@dataclass(frozen=True)
class ConsoleCamera:
    name: str
    model: str  # ModelSpec.key
    stale_after_s: float  # no verdict for this long: the page shows the camera stale


@dataclass(frozen=True)
class Lineup:
    models: tuple[ConsoleModel, ...]
    cameras: tuple[ConsoleCamera, ...]

    def model(self, key: str) -> ConsoleModel:
        for model in self.models:
            if model.spec.key == key:
                return model
        raise KeyError(f"no model {key!r} in the console's plan; it has {', '.join(m.spec.key for m in self.models)}")

    def camera(self, name: str) -> ConsoleCamera | None:
        return next((camera for camera in self.cameras if camera.name == name), None)

    def judged(self, frame: Frame) -> ConsoleModel | None:
        """The model of the frame's camera, if it is still the one that judged the frame (the identity its decide
        stage stamped); None when a reload has removed the camera or moved it to another model since. By camera
        first: two copies of one fit in folders of the same name carry the same identity."""
        camera = self.camera(frame.camera)
        if camera is None:
            return None
        model = self.model(camera.model)
        return model if model.spec.info == judging_model(frame) else None

    def refreshed(self, key: str) -> Lineup:
        """This lineup with model `key`'s facts read again from its artefact (after a teaching)."""
        models = tuple(read_model(m.spec, m.control) if m.spec.key == key else m for m in self.models)
        return dataclasses.replace(self, models=models)


def read_model(spec: ModelSpec, control: str) -> ConsoleModel:
    manifest = read_manifest(spec.model_dir)
    record = manifest.threshold if isinstance(manifest.threshold, dict) else None
    calibrated = dt.datetime.fromisoformat(record["calibrated_at"]) if record and "calibrated_at" in record else None
    since = sum(1 for entry in manifest.teaching
                if calibrated is None or dt.datetime.fromisoformat(entry["time"]) >= calibrated)
    shown = None if record is None else {k: v for k, v in record.items() if k != "good_scores"}
    facts = ModelFacts(spec.key, str(spec.model_dir), spec.info.version, manifest.method,
                       scorer_class(manifest.method).teachable, spec.threshold, spec.info.pixel_threshold, shown,
                       len(manifest.teaching), since)
    return ConsoleModel(spec, facts, control, GoodScores.from_record(manifest.threshold))


def read_lineup(plan: RunPlan) -> Lineup:
    """The plan's models and cameras, each model's artefact read (ArtefactError naming one that cannot be)."""
    if plan.console is None:
        raise ValueError("the run plan has no console (pipeline.console.enabled is false)")
    models = tuple(read_model(spec, plan.console.control(spec.key)) for spec in plan.models)
    stale = {cam.camera: cam.stale_after_s for _, cam in plan.settings.pipeline.camera_sections()}
    cameras = []
    for spec in plan.sources:
        assert spec.camera is not None and spec.model is not None  # plan_wiring names both for every source
        cameras.append(ConsoleCamera(spec.camera, spec.model, stale[spec.camera]))
    return Lineup(models, tuple(cameras))
