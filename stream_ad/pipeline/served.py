"""Which model artefact judges which camera, and what each is served with: its threshold (checked), the settings its
stages run with, the good scores it was calibrated on, its identity for the sinks. Cameras naming the same artefact
(after symlinks) share one ModelSpec, so one process loads it and batches their frames together.

With a runtime artefact (`stream-ad export`) nothing here imports torch; the model artefact's modules are imported
only for a model artefact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_ad.calibration.shift import GoodScores
from stream_ad.calibration.thresholds import checked_threshold
from stream_ad.errors import ArtefactError
from stream_ad.frames import ModelInfo
from stream_ad.line.artefact import (
    describe_runtime,
    is_runtime_artefact,
    read_runtime_manifest,
    runtime_model_info,
    runtime_serving_settings,
    threshold_value,
)
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.plan import ModelSpec
from stream_ad.settings import ConfigError, Settings
from stream_ad.settings.serving import serving_model_dir


@dataclass(frozen=True)
class ServedModel:
    spec: ModelSpec
    link: Path  # as the settings name it (spec.model_dir: where it resolved to, at the start)
    what: str  # what it computes and how it runs, one line
    threshold_origin: str
    good_scores: GoodScores | None  # those its threshold was calibrated on (None: a set threshold)


@dataclass(frozen=True)
class ServedCameras:
    models: tuple[ServedModel, ...]
    camera_models: dict[str, str]  # camera -> ModelSpec.key

    def model_of(self, camera: str) -> ServedModel:
        key = self.camera_models[camera]
        return next(m for m in self.models if m.spec.key == key)


def _threshold_record(model_dir: Path) -> tuple[dict[str, Any] | float | None, bool]:
    """The artefact's calibration record, and whether its method's scores are never negative."""
    if is_runtime_artefact(model_dir):
        runtime = read_runtime_manifest(model_dir)
        return runtime.threshold, runtime.nonnegative_scores
    from stream_ad.artefact import read_manifest
    from stream_ad.scorers import scorer_class

    manifest = read_manifest(model_dir)
    return manifest.threshold, scorer_class(manifest.method).nonnegative_scores


def resolve_threshold(settings: Settings, model_dir: Path) -> tuple[float, str]:
    """The decide stage's threshold: the model artefact's, else pipeline.decide.threshold, else an error; refused
    (CalibrationError) where it cannot decide (checked_threshold: not finite, negative for a method whose scores are
    not, far outside its calibration's good scores)."""
    try:
        record, nonnegative = _threshold_record(model_dir)
    except ArtefactError as exc:
        raise PipelineError(
            f"no model artefact at {model_dir} ({exc}): fit one with "
            f"`stream-ad -c PIPELINE.yaml fit --out {model_dir}` or set pipeline.model"
        ) from None
    value = threshold_value(record)
    if value is not None:
        origin = f"{'runtime' if is_runtime_artefact(model_dir) else 'model'} artefact {model_dir}"
        return checked_threshold(value, origin, GoodScores.from_record(record), nonnegative), origin
    if settings.pipeline.decide.threshold is not None:
        origin = "setting pipeline.decide.threshold"
        return checked_threshold(settings.pipeline.decide.threshold, origin, None, nonnegative), origin
    raise ConfigError(
        f"no decision threshold: the artefact {model_dir} has no 'threshold' (manifest.json) and "
        "pipeline.decide.threshold is not set; calibrate the model or set pipeline.decide.threshold"
    )


def serving(model_dir: Path, given: Settings) -> tuple[Settings, str, dict[str, Any] | float | None]:
    """The settings the artefact runs with, what it computes and how it runs (one line), its calibration record."""
    if is_runtime_artefact(model_dir):
        runtime = read_runtime_manifest(model_dir)
        what = f"{describe_runtime(runtime)}; runs on the CPU with OpenVINO, without torch"
        return runtime_serving_settings(model_dir, runtime, given), what, runtime.threshold
    from stream_ad.artefact import describe, read_manifest, serving_settings
    from stream_ad.scorers import scorer_params

    scorer_params(given.scorer)  # ConfigError naming scorer.method or scorer.params.KEY
    settings = serving_settings(model_dir, given)
    manifest = read_manifest(model_dir)
    rt = settings.runtime
    what = f"{describe(manifest)}; runs on device {rt.device}, accelerate {rt.accelerate}, precision {rt.precision}"
    return settings, what, manifest.threshold


def model_info(model_dir: Path) -> ModelInfo:
    try:
        if is_runtime_artefact(model_dir):
            return runtime_model_info(model_dir)
        from stream_ad.artefact import model_info as artefact_model_info  # imports torch: a model artefact only

        return artefact_model_info(model_dir)
    except ArtefactError as exc:
        raise PipelineError(f"cannot read the model artefact {model_dir}: {exc}") from None


def serve_model(key: str, link: Path, given: Settings) -> ServedModel:
    """One artefact as `stream-ad run` serves it: resolved once (a symlink switched while the line runs takes effect
    at the next start, or at a reload for the cameras that name it)."""
    model_dir = link.resolve()
    threshold, origin = resolve_threshold(given, model_dir)
    settings, what, record = serving(model_dir, given)
    spec = ModelSpec(key, model_dir, threshold, model_info(model_dir), settings)
    return ServedModel(spec, link, what, origin, GoodScores.from_record(record))


def serve_cameras(settings: Settings, running: tuple[ServedModel, ...] = ()) -> ServedCameras:
    """Each camera's artefact (its `model`, else pipeline.model, else what `stream-ad fit` writes), loaded and
    checked once per artefact; PipelineError, CalibrationError or ConfigError naming the artefact that cannot be
    served. `running`: the models a running line serves (a reload): one whose artefact is unchanged keeps its key
    (its stages run on); a new or changed artefact gets a key no running model has."""
    links = {cam.camera: cam.model or serving_model_dir(settings) for _, cam in settings.pipeline.camera_sections()}
    resolved = {camera: link.resolve() for camera, link in links.items()}
    used = {int(m.spec.key.removeprefix("m")) for m in running}
    served: dict[Path, ServedModel] = {}
    for camera, model_dir in resolved.items():
        if model_dir in served:
            continue
        same = next((m for m in running if m.spec.model_dir == model_dir and m.spec.info == model_info(model_dir)),
                    None)
        if same is None:
            number = min(set(range(len(used) + 1)) - used)
            used.add(number)
            same = serve_model(f"m{number}", links[camera], settings)
        served[model_dir] = same
    return ServedCameras(tuple(served.values()),
                         {camera: served[model_dir].spec.key for camera, model_dir in resolved.items()})


def check_console_models(settings: Settings, served: ServedCameras) -> None:
    """PipelineError naming the runtime artefacts served while pipeline.console is on: the console reads a model
    artefact (calibration record, teaching) and teaches a model in its infer stage, not yet a runtime artefact.
    Checked at the start and at each reload (a reload must not bring one in)."""
    runtime = [f"{m.spec.key} {m.spec.model_dir}" for m in served.models if is_runtime_artefact(m.spec.model_dir)]
    if settings.pipeline.console.enabled and runtime:
        raise PipelineError(f"pipeline.console is not available with a runtime artefact ({', '.join(runtime)}) yet: "
                            "serve the model artefact it was exported from, or set pipeline.console.enabled: false")


def serve_one(settings: Settings, model_dir: Path, threshold: float, good_scores: GoodScores | None = None
              ) -> ServedCameras:
    """Every camera judged by one artefact with this threshold, the settings as given (the demo, the benchmarks)."""
    spec = ModelSpec("m0", model_dir, threshold, model_info(model_dir), settings)
    served = ServedModel(spec, model_dir, str(model_dir), "given", good_scores)
    return ServedCameras((served,), {cam.camera: "m0" for _, cam in settings.pipeline.camera_sections()})
