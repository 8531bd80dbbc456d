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
from stream_ad.errors import ArtefactError
from stream_ad.frames import ModelInfo
from stream_ad.geometry import describe_frame_score
from stream_ad.line.artefact import KIND as RUNTIME_KIND
from stream_ad.line.artefact import Thresholded, json_object
from stream_ad.model import AnomalyModel
from stream_ad.runtime.checksums import SUMS, checked_read, mismatch_error, sha256_bytes, summed_manifest, write_sums
from stream_ad.scorers import scorer_class, scorer_params
from stream_ad.settings import ScorerSettings, Settings, format_errors, settings_from_record
from stream_ad.settings.serving import (  # noqa: F401 - the folder naming, re-exported for the commands
    conflicts,
    default_model_dir,
    difference,
    model_dir_name,
    model_values,
    served,
    serving_model_dir,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: sha256 sums (manifest "files", SHA256SUMS)
MANIFEST = "manifest.json"
STATE = "state.safetensors"


@dataclass(frozen=True)
class Manifest(Thresholded):
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
    data, want = summed_manifest(directory, MANIFEST)
    if want is None:
        version = _format_version(data)
        if version != FORMAT_VERSION:  # written before artefacts carried sums
            raise _format_error(path, version)
        raise ArtefactError(f"model artefact {directory} has no sha256 of {MANIFEST} in {SUMS}: it is incomplete "
                            "(a copy cut short?) or was edited; copy it again or refit")
    got = sha256_bytes(data)
    if got != want:
        raise mismatch_error(path, got, want, SUMS)
    return data


def read_manifest(directory: Path) -> Manifest:
    """The manifest, checked against SHA256SUMS (the other files are checked as they are read: verify_artefact)."""
    path = directory / MANIFEST
    raw = json_object(path, _checked_manifest_bytes(directory))
    if raw.get("kind") == RUNTIME_KIND:
        raise ArtefactError(
            f"{directory} is a runtime artefact (kind {RUNTIME_KIND!r}, exported from "
            f"{raw.get('exported_from', {}).get('folder')}), not a model artefact: `stream-ad run` serves it; fit, "
            "calibrate, eval, predict and export need the model artefact it was exported from")
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
    return checked_read(path, want, MANIFEST)


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
    method = fitted.scorer.method
    # The weights' location is never compared: the weights are checked by sha256 once loaded.
    found = conflicts(fitted, given, _params(fitted, method), _params(given, method),
                      scorer_class(method).Params.not_scoring)
    if found:
        raise ArtefactError(f"model artefact {directory} computes otherwise than these settings say: "
                            + "; ".join(found) + " (leave them out: the artefact carries its own)")
    return served(fitted, given)


def fit_differences(directory: Path, settings: Settings) -> list[str]:
    """Each model setting, training-only ones too, that `settings` would fit otherwise than this artefact was
    fitted: a cache of fitted models (the demo's) refits on any."""
    fitted = _fitted(read_manifest(directory), directory)
    method = fitted.scorer.method
    if settings.scorer.method != method:
        return [difference("scorer.method", method, settings.scorer.method)]
    have, want = (model_values(s, _params(s, method), explicit_only=False) for s in (fitted, settings))
    return [difference(key, have[key], value) for key, value in want.items() if value != have[key]]


def load_model(directory: Path, settings: Settings | None = None, *, max_batch: int | None = None,
               streams: int = 1) -> AnomalyModel:
    """Load an artefact to run with `settings` (serving_settings: what it computes is its own). `max_batch`: the
    largest batch it will score, `streams`: requests side by side on it (AnomalyModel)."""
    manifest = read_manifest(directory)
    run = _serving(manifest, directory, settings)
    model = AnomalyModel(run, max_batch=max_batch, calibration_images=fitted_images(manifest, run.data.root),
                         max_image_pixels=run.pipeline.source.max_image_pixels, streams=streams)
    now_id = model.scorer.backbone_identity()
    if manifest.backbone != now_id:
        raise ArtefactError(
            f"model artefact {directory} was fitted with backbone {manifest.backbone} but these settings load "
            f"{now_id}: other weights give other features, so this model would silently mis-score; refit or fix the "
            "weights"
        )
    if manifest.preprocessing != model.preprocessor.describe():
        # No "resampling": fitted before frames were resampled antialiased (geometry.resize).
        older = "" if "resampling" in manifest.preprocessing else ": its inputs were resampled otherwise; refit it"
        raise ArtefactError(
            f"model artefact {directory} expects preprocessing {manifest.preprocessing}, "
            f"got {model.preprocessor.describe()}{older}"
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


def fitted_images(manifest: Manifest, data_root: Path, part: str = "fitted") -> list[Path]:
    """The good images the artefact was fitted on (`part` "held_out": held out of fitting) that exist here."""
    split = manifest.data_split
    if not split:
        return []
    root = split_root(split, data_root)
    return [p for p in (root / entry["path"] for entry in split.get(part, [])) if p.is_file()]


def describe(manifest: Manifest) -> str:
    """What an artefact computes, in one line: method and params, backbone, preprocessing."""
    params = ", ".join(f"{k}={v}" for k, v in manifest.scorer_params.items())
    backbone = ", ".join(f"{k} {v}" for k, v in manifest.backbone.items()) if manifest.backbone else "none"
    pre = manifest.preprocessing
    size = pre["tile_size"] if pre["mode"] == "tile" else pre["image_size"]
    return (f"{manifest.method} ({params}); backbone {backbone}; preprocess {pre['mode']} {size} px; frame score "
            f"{describe_frame_score(pre.get('map_score_fraction'))}")


def _params(settings: Settings, method: str) -> dict[str, Any]:
    """The params of `settings`, read as `method` reads them (defaults filled in), as JSON values."""
    return scorer_params(ScorerSettings(method=method, params=settings.scorer.params)).model_dump(mode="json")
