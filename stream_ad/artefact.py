"""A model artefact: one folder per fitted model, and the only code that reads or writes one.

    manifest.json        format version, stream_ad/torch versions, the full settings it was fitted with, the
                         backbone's name, taps and weights sha256, the preprocessing, the threshold (or null:
                         `stream-ad calibrate` sets it), the data split (fitted and held-out images, by path and
                         sha256), the sha256 of every other file of the artefact
    state.safetensors    the scorer's fitted tensors (no pickled objects)
    taught/NNNN.*        version NNNN's teaching (the operator's console): the memory items it added
                         (.safetensors) and the frame they came from (.png); the manifest's "teaching" lists each
                         with who, when, the frame's scores and the files' sha256
    SHA256SUMS           the manifest's sha256 (written last, atomically; `sha256sum -c SHA256SUMS` reads it)

Every file is checked against its sum as it is read: a damaged or changed one (a flipped bit, a copy cut short, a hand
edit) is an ArtefactError naming the file and both sums, and so is a tensor holding NaN or inf. Artefacts of the
format before the sums (1) are refused with a request to refit: accepting them unchecked would turn the check off
for any artefact whose SHA256SUMS is deleted.

The artefact is self-contained: loading builds the model from the manifest's own settings and takes from the line
PC's settings only how to run it (runtime, the weights' location, data.root for good images). A model setting those
settings name explicitly with another value (another backbone, taps, preprocessing, method or scoring param), or
weights with another sha256, is an error naming each difference, never a silent degradation; a training-only setting
(coreset size, epochs, calibration.*) never is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import stream_ad
from stream_ad.data import Layout
from stream_ad.frames import ModelInfo
from stream_ad.model import AnomalyModel
from stream_ad.runtime.checksums import SUMS, read_sums, sha256_bytes, write_sums
from stream_ad.scorers import scorer_class, scorer_params
from stream_ad.settings import ScorerSettings, Settings, format_errors, settings_from_record

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: sha256 sums (manifest "files", SHA256SUMS)
MANIFEST = "manifest.json"
STATE = "state.safetensors"
# How a machine runs a model, never what it computes: taken whole from the settings an artefact is loaded with.
RUNNING = ("shared_dir", "output_dir", "runtime", "pipeline")
# Where this machine finds the backbone's weights: the loading settings' where they name it (checked by sha256).
WEIGHTS = frozenset({"weights", "weights_path"})


class ArtefactError(RuntimeError):
    pass


def model_dir_name(settings: Settings, category: str | None = None) -> str:
    """An artefact folder's name: CATEGORY-METHOD (the category: data.root's name unless given)."""
    return f"{category or settings.data.root.name}-{settings.scorer.method}"


def default_model_dir(settings: Settings, category: str | None = None) -> Path:
    """Where `stream-ad fit` puts the artefact for these settings: OUTPUT_DIR/CATEGORY-METHOD."""
    return settings.output_dir / model_dir_name(settings, category)


def serving_model_dir(settings: Settings) -> Path:
    """The artefact a pipeline serves: pipeline.model, else what `stream-ad fit` wrote for these settings."""
    return settings.pipeline.model or default_model_dir(settings)


@dataclass(frozen=True)
class Manifest:
    """manifest.json, field for field."""

    format_version: int
    stream_ad_version: str
    torch_version: str
    python: str
    method: str
    scorer_params: dict[str, Any]
    backbone: dict[str, Any] | None  # Scorer.backbone_identity(): name, taps, weights sha256
    preprocessing: dict[str, Any]
    threshold: dict[str, Any] | float | None  # the calibration record (a bare number in hand-made artefacts)
    data_split: dict[str, Any] | None  # HoldoutSplit.manifest(); None in artefacts written before calibration existed
    settings: dict[str, Any]
    files: dict[str, str]  # sha256 of every other file of the artefact, by name
    # Each teaching since the fit, oldest first (version = its place, from 1); absent in artefacts never taught.
    teaching: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def threshold_value(self) -> float | None:
        """The decision threshold: a number, or a record's "value"; None when not calibrated."""
        return _number(self.threshold.get("value") if isinstance(self.threshold, dict) else self.threshold)

    @property
    def pixel_threshold_value(self) -> float | None:
        """The map's pixel threshold (`calibrate --pixel-target-fpr`): the record's pixel "value"; None without."""
        pixel = self.threshold.get("pixel") if isinstance(self.threshold, dict) else None
        return _number(pixel.get("value")) if isinstance(pixel, dict) else None

    @classmethod
    def of(cls, model: AnomalyModel, files: dict[str, str]) -> Manifest:
        """The manifest of `model`, whose other files (`files`: name -> sha256) are written."""
        return cls(
            format_version=FORMAT_VERSION,
            stream_ad_version=stream_ad.__version__,
            torch_version=torch.__version__,
            python=platform.python_version(),
            method=model.settings.scorer.method,
            scorer_params=model.scorer.params.model_dump(mode="json"),
            backbone=model.scorer.backbone_identity(),
            preprocessing=model.preprocessor.describe(),
            threshold=model.threshold,
            data_split=model.data_split,
            settings=model.settings.model_dump(mode="json"),
            files=files,
        )


def _number(raw: object) -> float | None:
    return None if isinstance(raw, bool) or not isinstance(raw, (int, float)) else float(raw)


def model_info(directory: Path) -> ModelInfo:
    """Which model judges the frames, for the sinks to record with each alarm: the folder it resolves to (a symlink
    switched for an upgrade names the new one), its method and the sha256 of its fitted state; its pixel threshold."""
    manifest = read_manifest(directory)
    taught = f" taught version {len(manifest.teaching)}" if manifest.teaching else ""
    return ModelInfo(version=f"{directory.resolve().name} {manifest.method} state sha256:{manifest.files[STATE][:16]}"
                     f"{taught}", pixel_threshold=manifest.pixel_threshold_value)


def has_artefact(directory: Path) -> bool:
    """Whether an artefact was written there (complete, damaged or of an older format: loading tells which)."""
    return (directory / MANIFEST).is_file()


def _mismatch(path: Path, got: str, want: str, where: str) -> ArtefactError:
    return ArtefactError(f"{path} has sha256 {got} but {where} records {want}: the file was damaged or changed after "
                         "it was written; copy the artefact again or refit")


def _format_version(data: bytes) -> object:
    """The format version a manifest's bytes state, if they are a JSON object at all."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return raw.get("format_version") if isinstance(raw, dict) else None


def _format_error(path: Path, version: object) -> ArtefactError:
    return ArtefactError(f"{path} has artefact format {version}; this stream_ad {stream_ad.__version__} reads format "
                         f"{FORMAT_VERSION}: refit the model with this version")


def _checked_manifest_bytes(directory: Path) -> bytes:
    """manifest.json's bytes, once they match the sum SHA256SUMS records."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtefactError(f"not a stream_ad model artefact: {path} is missing")
    data = path.read_bytes()
    try:
        want = (read_sums(directory) or {}).get(MANIFEST)
    except ValueError as exc:
        raise ArtefactError(f"model artefact {directory}: {exc}") from None
    if want is None:
        version = _format_version(data)
        if version != FORMAT_VERSION:  # written before artefacts carried sums
            raise _format_error(path, version)
        raise ArtefactError(f"model artefact {directory} has no sha256 of {MANIFEST} in {SUMS}: it is incomplete "
                            "(a copy cut short?) or was edited; copy it again or refit")
    got = sha256_bytes(data)
    if got != want:
        raise _mismatch(path, got, want, SUMS)
    return data


def read_manifest(directory: Path) -> Manifest:
    """The manifest, checked against SHA256SUMS (the other files are checked as they are read: verify_artefact)."""
    path = directory / MANIFEST
    data = _checked_manifest_bytes(directory)
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ArtefactError(f"{path} must hold a JSON object")
    if raw.get("format_version") != FORMAT_VERSION:
        raise _format_error(path, raw.get("format_version"))
    fields = {f.name for f in dataclasses.fields(Manifest)}
    required = {f.name for f in dataclasses.fields(Manifest) if f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(raw))
    if missing:
        raise ArtefactError(f"{path} lacks {', '.join(missing)}: not a complete stream_ad manifest")
    if not (directory / STATE).is_file():
        raise ArtefactError(f"model artefact {directory} is incomplete: {STATE} is missing")
    return Manifest(**{k: v for k, v in raw.items() if k in fields})


def _checked_file(directory: Path, manifest: Manifest, name: str) -> bytes:
    """The bytes of one of the artefact's files, once they match the manifest's sum: what is checked is what is
    used (no second read to change in between)."""
    path = directory / name
    want = manifest.files.get(name)
    if want is None:
        raise ArtefactError(f"{directory / MANIFEST} records no sha256 of {name}: not a complete stream_ad manifest")
    data = path.read_bytes()
    got = sha256_bytes(data)
    if got != want:
        raise _mismatch(path, got, want, MANIFEST)
    return data


def _state_tensors(directory: Path, manifest: Manifest) -> dict[str, torch.Tensor]:
    """state.safetensors, checked against its sum, every floating tensor finite."""
    path = directory / STATE
    tensors = load_safetensors(_checked_file(directory, manifest, STATE))
    for name, tensor in tensors.items():
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ArtefactError(f"{path}: tensor {name!r} holds {bad} NaN or infinite value(s) of "
                                    f"{tensor.numel()}: a model that would score NaN; refit")
    return tensors


def verify_artefact(directory: Path) -> Manifest:
    """Check every file of the artefact against its sum, and its tensors for NaN / inf, without building the model
    (`stream-ad check`); the manifest. ArtefactError naming the first bad file."""
    manifest = read_manifest(directory)
    _state_tensors(directory, manifest)
    for name in manifest.files.keys() - {STATE}:
        _checked_file(directory, manifest, name)
    return manifest


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomically, then its sum in SHA256SUMS: a pipeline starting meanwhile reads the old manifest or the new one,
    never half of one (between the two renames, the new manifest with the old sum: refused, never misread)."""
    data = (json.dumps(dataclasses.asdict(manifest), indent=2) + "\n").encode()
    _write_atomic(directory / MANIFEST, data)
    write_sums(directory, {MANIFEST: sha256_bytes(data)})


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_model(model: AnomalyModel, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    state = save_safetensors({k: v.contiguous().cpu() for k, v in model.scorer.state_tensors().items()})
    _write_atomic(directory / STATE, state)
    # The manifest, then its sum, go last: a folder whose sums match is a complete artefact.
    write_manifest(directory, Manifest.of(model, {STATE: sha256_bytes(state)}))
    log.info("saved model artefact %s", directory)
    return directory


def save_threshold(model: AnomalyModel, directory: Path) -> None:
    """Rewrite only the manifest's threshold: calibration changes no tensors, nor the record of how it was fitted."""
    write_manifest(directory, dataclasses.replace(read_manifest(directory), threshold=model.threshold))


def _fitted(manifest: Manifest, directory: Path) -> Settings:
    """The settings the artefact was fitted with, as its manifest records them."""
    try:
        return settings_from_record(manifest.settings)
    except ValidationError as exc:
        raise ArtefactError(format_errors(exc, f"{directory / MANIFEST}, settings")) from None


def serving_settings(directory: Path, given: Settings | None = None) -> Settings:
    """The settings the artefact in `directory` runs with: what it computes (backbone, taps, normalisation,
    preprocessing, method and params) from its manifest, how it runs (runtime, pipeline, output_dir) from `given`,
    and data.root, calibration and the weights' location from `given` where it names them, else the artefact's.

    A model setting `given` names explicitly (YAML or environment; defaults never count) with another value than the
    artefact's is an ArtefactError naming each; the method's not_scoring params are never compared."""
    return _serving(read_manifest(directory), directory, given)


def _serving(manifest: Manifest, directory: Path, given: Settings | None) -> Settings:
    fitted = _fitted(manifest, directory)
    if given is None:
        return fitted
    conflicts = _conflicts(fitted, given)
    if conflicts:
        raise ArtefactError(f"model artefact {directory} computes otherwise than these settings say: "
                            + "; ".join(conflicts) + " (leave them out: the artefact carries its own)")
    return fitted.model_copy(update={
        **{name: getattr(given, name) for name in RUNNING},
        "backbone": fitted.backbone.model_copy(update=_named(given.backbone, WEIGHTS)),
        "data": fitted.data.model_copy(update=_named(given.data)),
        "calibration": fitted.calibration.model_copy(update=_named(given.calibration)),
    })


def fit_differences(directory: Path, settings: Settings) -> list[str]:
    """Each model setting, training-only ones too, that `settings` would fit otherwise than this artefact was
    fitted: a cache of fitted models (the demo's) refits on any."""
    fitted = _fitted(read_manifest(directory), directory)
    method = fitted.scorer.method
    if settings.scorer.method != method:
        return [_difference("scorer.method", method, settings.scorer.method)]
    have, want = (_model_values(s, method, explicit_only=False) for s in (fitted, settings))
    return [_difference(key, have[key], value) for key, value in want.items() if value != have[key]]


def load_model(directory: Path, settings: Settings | None = None, *, max_batch: int | None = None) -> AnomalyModel:
    """Load an artefact to run with `settings` (serving_settings: what it computes is its own). `max_batch`: the
    largest batch it will score (AnomalyModel)."""
    manifest = read_manifest(directory)
    run = _serving(manifest, directory, settings)
    model = AnomalyModel(run, max_batch=max_batch, calibration_images=fitted_images(manifest, run.data.root),
                         max_image_pixels=run.pipeline.source.max_image_pixels)
    now_id = model.scorer.backbone_identity()
    if manifest.backbone != now_id:
        raise ArtefactError(
            f"model artefact {directory} was fitted with backbone {manifest.backbone} but these settings load "
            f"{now_id}: other weights give other features, so this model would silently mis-score; refit or fix the "
            "weights"
        )
    if manifest.preprocessing != model.preprocessor.describe():
        raise ArtefactError(
            f"model artefact {directory} expects preprocessing {manifest.preprocessing}, "
            f"got {model.preprocessor.describe()}"
        )
    model.scorer.load_state_tensors(_state_tensors(directory, manifest))
    if manifest.teaching:
        model.scorer.add_memory(torch.cat([_taught_items(directory, manifest, entry) for entry in manifest.teaching]))
    model.threshold = manifest.threshold  # type: ignore[assignment] - a record, or a hand-made number
    model.data_split = manifest.data_split
    return model


TAUGHT = "taught"


@dataclass(frozen=True)
class Teaching:
    """A frame an operator marked good, as the infer stage taught it (the console's "good" button)."""

    operator: str
    camera: str
    frame_id: int
    score_before: float  # the frame's score when it alarmed
    score_after: float  # its score once taught
    frame_png: bytes  # the frame as the camera gave it


def save_teaching(directory: Path, items: torch.Tensor, teaching: Teaching) -> int:
    """A new version of the artefact: the memory items one teaching added and its frame, recorded in the manifest
    with their sha256, who and when; the version's number. Replayed in order by load_model, so a restart (or a
    restarted infer stage) serves the taught model; rollback_teaching undoes it."""
    manifest = read_manifest(directory)
    version = len(manifest.teaching) + 1
    (directory / TAUGHT).mkdir(exist_ok=True)
    names = {"items": f"{TAUGHT}/{version:04d}.safetensors", "frame": f"{TAUGHT}/{version:04d}.png"}
    sums = {}
    for name, data in ((names["items"], save_safetensors({"items": items.contiguous().cpu()})),
                       (names["frame"], teaching.frame_png)):
        _write_atomic(directory / name, data)
        sums[name] = sha256_bytes(data)
    entry = {"version": version, "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "operator": teaching.operator, "camera": teaching.camera, "frame_id": teaching.frame_id,
             "score_before": teaching.score_before, "score_after": teaching.score_after, "patches": items.shape[0],
             **{key: {"file": name, "sha256": sums[name]} for key, name in names.items()}}
    write_manifest(directory, dataclasses.replace(manifest, files={**manifest.files, **sums},
                                                  teaching=[*manifest.teaching, entry]))
    return version


def taught_items(manifest: Manifest) -> int:
    """Memory items all teachings of the artefact added (bounded by pipeline.console.max_taught_patches)."""
    return sum(int(entry["patches"]) for entry in manifest.teaching)


def _taught_items(directory: Path, manifest: Manifest, entry: dict[str, Any]) -> torch.Tensor:
    return load_safetensors(_checked_file(directory, manifest, entry["items"]["file"]))["items"]


def rollback_teaching(directory: Path, to_version: int | None = None) -> list[dict[str, Any]]:
    """Back to version `to_version` (0: as fitted; None: the one before the last teaching): the later teachings leave
    the manifest, then their files go. The teachings removed, oldest first. A running pipeline keeps what it holds
    until it restarts."""
    manifest = read_manifest(directory)
    latest = len(manifest.teaching)
    if latest == 0:
        raise ArtefactError(f"model artefact {directory} was never taught: nothing to roll back")
    keep = latest - 1 if to_version is None else to_version
    if not 0 <= keep < latest:
        raise ArtefactError(f"model artefact {directory} is at version {latest}: roll back to 0..{latest - 1}, "
                            f"not {to_version}")
    removed = manifest.teaching[keep:]
    gone = {entry[key]["file"] for entry in removed for key in ("items", "frame")}
    write_manifest(directory, dataclasses.replace(
        manifest, teaching=manifest.teaching[:keep], files={k: v for k, v in manifest.files.items() if k not in gone}))
    for name in gone:
        (directory / name).unlink(missing_ok=True)
    return removed


def split_layout(split: dict[str, Any]) -> Layout:
    return Layout(split.get("layout", Layout.MVTEC.value))  # artefacts written before plain folders: MVTec


def split_root(split: dict[str, Any], data_root: Path) -> Path:
    """Where a data split's relative paths start: this machine's data.root for the MVTec layout (the data set may
    live elsewhere than where it was fitted), the recorded folder for a plain folder (`fit --good`)."""
    return data_root if split_layout(split) is Layout.MVTEC else Path(split["root"])


def fitted_images(manifest: Manifest, data_root: Path) -> list[Path]:
    """The good images the artefact was fitted on that exist on this machine."""
    split = manifest.data_split
    if not split:
        return []
    root = split_root(split, data_root)
    return [p for p in (root / entry["path"] for entry in split["fitted"]) if p.is_file()]


def describe(manifest: Manifest) -> str:
    """What an artefact computes, in one line: method and params, backbone, preprocessing."""
    params = ", ".join(f"{k}={v}" for k, v in manifest.scorer_params.items())
    backbone = ", ".join(f"{k} {v}" for k, v in manifest.backbone.items()) if manifest.backbone else "none"
    pre = manifest.preprocessing
    size = pre["tile_size"] if pre["mode"] == "tile" else pre["image_size"]
    return f"{manifest.method} ({params}); backbone {backbone}; preprocess {pre['mode']} {size} px"


def _named(section: Any, keys: frozenset[str] | None = None) -> dict[str, Any]:
    """The keys of a settings section given explicitly (YAML or environment), with their values."""
    return {k: getattr(section, k) for k in section.model_fields_set if keys is None or k in keys}


def _difference(key: str, artefact: Any, given: Any) -> str:
    return f"{key}: the artefact's {artefact!r}, given {given!r}"


def _conflicts(fitted: Settings, given: Settings) -> list[str]:
    """The model settings `given` names explicitly with other values than the artefact's: its not_scoring params
    (training only) and the weights' location (checked by sha256 once loaded) aside."""
    method = fitted.scorer.method
    if "method" in given.scorer.model_fields_set and given.scorer.method != method:
        return [_difference("scorer.method", method, given.scorer.method)]
    have = _model_values(fitted, method, explicit_only=False)
    want = _model_values(given, method, explicit_only=True)
    free = {f"scorer.params.{name}" for name in scorer_class(method).Params.not_scoring}
    return [_difference(key, have[key], value) for key, value in want.items() if key not in free and value != have[key]]


def _model_values(settings: Settings, method: str, *, explicit_only: bool) -> dict[str, Any]:
    """What a model computes from, by dotted key as JSON values: backbone name, taps and normalisation,
    preprocessing, method and params (read as `method` reads them, defaults filled in). explicit_only: only the
    keys the settings name (defaults never count)."""
    out: dict[str, Any] = {}
    for name in ("backbone", "preprocess"):
        section = getattr(settings, name)
        values = section.model_dump(mode="json", exclude=WEIGHTS)
        keys = section.model_fields_set if explicit_only else values
        out.update({f"{name}.{key}": values[key] for key in keys if key in values})
    if not explicit_only or "method" in settings.scorer.model_fields_set:
        out["scorer.method"] = settings.scorer.method
    params = scorer_params(ScorerSettings(method=method, params=settings.scorer.params)).model_dump(mode="json")
    keys = settings.scorer.params if explicit_only else params
    out.update({f"scorer.params.{key}": params[key] for key in keys})
    return out
