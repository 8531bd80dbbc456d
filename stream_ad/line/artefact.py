"""A runtime artefact: what a line PC needs to score frames without torch, in one checked folder.

    manifest.json   kind "runtime", format version, what it was exported from (the model artefact's folder and the
                    sha256 of its manifest), the method and its params, the backbone's identity, the preprocessing
                    the graph does not contain as plain data (geometry, mean and std on 0..255), the graph's input and
                    outputs, its precision, the threshold (the model artefact's calibration record), the settings the
                    model was fitted with, and the sha256 of every other file
    scoring.xml     the whole scoring path as one OpenVINO graph: "images" (B, 3, S, S) float32, normalised ->
    scoring.bin     "image_scores" (B,), "maps" (B, S, S); PatchCore's memory bank is the constant "memory_bank"
    SHA256SUMS      the manifest's sha256, written last (`sha256sum -c SHA256SUMS` checks it by hand)

Every file is checked against its sum as it is read, and what is checked is what is used (the IR is compiled from the
checked bytes). A model artefact (no kind, or kind "model") read here, or a runtime artefact read as a model
artefact, is an ArtefactError naming the kind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

import stream_ad
from stream_ad.errors import ArtefactError
from stream_ad.frames import ModelInfo
from stream_ad.geometry import MODES, Geometry, describe_frame_score
from stream_ad.runtime.checksums import SUMS, checked_read, mismatch_error, sha256_bytes, summed_manifest, write_sums
from stream_ad.settings import Settings, format_errors, settings_from_record
from stream_ad.settings.serving import conflicts, served

KIND = "runtime"
# 2: frames resampled antialiased (geometry.RESAMPLING); a format 1 graph saw OpenCV's. 3: preprocess mode aspect,
# which a format 2 reader would cut as native tiles; format 2 artefacts are read as they were.
FORMAT_VERSION = 3
READ_VERSIONS = (2, 3)
MANIFEST = "manifest.json"
GRAPH_XML = "scoring.xml"
GRAPH_BIN = "scoring.bin"
INPUT = "images"
OUTPUTS = ("image_scores", "maps")


@dataclass(frozen=True)
class Preprocessing:
    """The preprocessing the graph does not contain, as plain data: the geometry (resize / letterbox / aspect / tiles)
    and the normalisation, mean and std on 0..255 as the float32 values the fitting path subtracts and divides by."""

    mode: str
    image_size: int
    tile_size: int
    tile_overlap: float
    pad_value: int
    mean255: tuple[float, float, float]
    std255: tuple[float, float, float]
    map_score_fraction: float | None = None  # preprocess.map_score_fraction; None in artefacts from before it

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.mode, self.image_size, self.tile_size, self.tile_overlap, self.pad_value)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.mean255, dtype=np.float32), np.asarray(self.std255, dtype=np.float32)


def _number(raw: object) -> float | None:
    return None if isinstance(raw, bool) or not isinstance(raw, (int, float)) else float(raw)


def threshold_value(record: dict[str, Any] | float | None) -> float | None:
    """The decision threshold of a calibration record (its "value"), or a bare number; None when not calibrated."""
    return _number(record.get("value") if isinstance(record, dict) else record)


def pixel_threshold_value(record: dict[str, Any] | float | None) -> float | None:
    """The map's pixel threshold of a calibration record (`calibrate --pixel-target-fpr`); None without."""
    pixel = record.get("pixel") if isinstance(record, dict) else None
    return _number(pixel.get("value")) if isinstance(pixel, dict) else None


class Thresholded:
    """The threshold values of a manifest's calibration record (`threshold`): both kinds of artefact carry one."""

    threshold: dict[str, Any] | float | None

    @property
    def threshold_value(self) -> float | None:
        return threshold_value(self.threshold)

    @property
    def pixel_threshold_value(self) -> float | None:
        return pixel_threshold_value(self.threshold)


def json_object(path: Path, data: bytes) -> dict[str, Any]:
    """A manifest's bytes as the JSON object they must hold; an ArtefactError naming `path` otherwise."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtefactError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ArtefactError(f"{path} must hold a JSON object")
    return raw


@dataclass(frozen=True)
class RuntimeManifest(Thresholded):
    """manifest.json of a runtime artefact, field for field."""

    kind: str
    format_version: int
    stream_ad_version: str
    python: str
    exported_from: dict[str, str]  # the model artefact: folder, sha256 of its manifest and of its state
    method: str
    nonnegative_scores: bool  # whether every score is >= 0 (a negative threshold is refused)
    scorer_params: dict[str, Any]  # every param, defaults filled in
    not_scoring: list[str]  # the params a pipeline file may give any value (training only)
    backbone: dict[str, Any] | None
    preprocessing: dict[str, Any]  # Preprocessing's fields
    graph: dict[str, Any]  # input, outputs, precision, images_per_call (0: any batch), named constants
    threshold: dict[str, Any] | float | None
    settings: dict[str, Any]  # the model's fitted settings (what it computes from)
    files: dict[str, str]

    @property
    def pre(self) -> Preprocessing:
        raw = self.preprocessing
        fraction = raw.get("map_score_fraction")
        return Preprocessing(raw["mode"], int(raw["image_size"]), int(raw["tile_size"]), float(raw["tile_overlap"]),
                             int(raw["pad_value"]), tuple(raw["mean255"]), tuple(raw["std255"]),  # type: ignore[arg-type]
                             None if fraction is None else float(fraction))


def artefact_kind(directory: Path) -> str | None:
    """"runtime" or "model" as the folder's manifest.json states it (unchecked: only which reader to use; the reader
    checks every sum), None when there is no readable manifest."""
    try:
        raw = json.loads((directory / MANIFEST).read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return str(raw.get("kind", "model")) if isinstance(raw, dict) else None


def is_runtime_artefact(directory: Path) -> bool:
    return artefact_kind(directory) == KIND


def wrong_kind(directory: Path, raw: dict[str, Any]) -> ArtefactError:
    """The error for a model artefact read as a runtime artefact."""
    return ArtefactError(
        f"{directory} is a model artefact (kind {raw.get('kind', 'model')!r}, format {raw.get('format_version')}), "
        f"not a runtime artefact (kind {KIND!r}): export one with `stream-ad export {directory} --out DIR`, or serve "
        "it with the full install (torch)")


def read_runtime_manifest(directory: Path) -> RuntimeManifest:
    """The manifest, checked against SHA256SUMS; an ArtefactError naming what is wrong (kind, format, sums)."""
    path = directory / MANIFEST
    data, want = summed_manifest(directory, MANIFEST)
    raw = json_object(path, data)
    if raw.get("kind") != KIND:
        raise wrong_kind(directory, raw)
    if want is None:
        raise ArtefactError(f"runtime artefact {directory} has no sha256 of {MANIFEST} in {SUMS}: it is incomplete "
                            "(a copy cut short?) or was edited; copy it again or export it again")
    got = sha256_bytes(data)
    if got != want:
        raise mismatch_error(path, got, want, SUMS)
    if raw.get("format_version") not in READ_VERSIONS:
        raise ArtefactError(f"{path} has runtime artefact format {raw.get('format_version')}; this stream_ad "
                            f"{stream_ad.__version__} reads formats {', '.join(map(str, READ_VERSIONS))}: export it "
                            "again with this version")
    fields = {f.name for f in dataclasses.fields(RuntimeManifest)}
    missing = sorted(fields - set(raw))
    if missing:
        raise ArtefactError(f"{path} lacks {', '.join(missing)}: not a complete runtime artefact manifest")
    mode = raw["preprocessing"].get("mode") if isinstance(raw["preprocessing"], dict) else None
    if mode not in MODES:
        raise ArtefactError(f"{path}: preprocessing.mode {mode!r} is not one of {', '.join(MODES)}: export it again "
                            "with this version")
    return RuntimeManifest(**{k: v for k, v in raw.items() if k in fields})


def read_graph(directory: Path, manifest: RuntimeManifest) -> tuple[bytes, bytes]:
    """The graph's IR (xml, weights) bytes, each checked against the manifest's sum."""
    out = []
    for name in (GRAPH_XML, GRAPH_BIN):
        want = manifest.files.get(name)
        if want is None:
            raise ArtefactError(f"{directory / MANIFEST} records no sha256 of {name}: not a complete runtime artefact")
        out.append(checked_read(directory / name, want, MANIFEST))
    return out[0], out[1]


def write_runtime_artefact(directory: Path, manifest: RuntimeManifest, write_graph: Callable[[Path], None]) -> Path:
    """A new runtime artefact in `directory` (which must not exist, or be empty): `write_graph(xml_path)` saves the
    IR, the manifest gets its files' sums, SHA256SUMS goes last. Built beside it and renamed into place, so a reader
    sees a complete artefact or none."""
    if directory.exists() and any(directory.iterdir()):
        raise ArtefactError(f"{directory} exists and is not empty: export into a new folder")
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_graph(tmp / GRAPH_XML)
        files = {name: sha256_bytes((tmp / name).read_bytes()) for name in (GRAPH_XML, GRAPH_BIN)}
        full = dataclasses.replace(manifest, files=files, kind=KIND, format_version=FORMAT_VERSION,
                                   stream_ad_version=stream_ad.__version__, python=platform.python_version())
        data = (json.dumps(dataclasses.asdict(full), indent=2) + "\n").encode()
        (tmp / MANIFEST).write_bytes(data)
        write_sums(tmp, {MANIFEST: sha256_bytes(data)})
        if directory.exists():
            directory.rmdir()
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def runtime_serving_settings(directory: Path, manifest: RuntimeManifest, given: Settings) -> Settings:
    """The settings a runtime artefact runs with, as for a model artefact (stream_ad.settings.serving): what it
    computes from its record, how it runs from `given`; a scoring setting `given` names otherwise is an
    ArtefactError naming each (its params are compared with the manifest's record: no scorer registry here)."""
    try:
        fitted = settings_from_record(manifest.settings)
    except ValidationError as exc:
        raise ArtefactError(format_errors(exc, f"{directory / MANIFEST}, settings")) from None
    found = conflicts(fitted, given, manifest.scorer_params, {**manifest.scorer_params, **given.scorer.params},
                      frozenset(manifest.not_scoring))
    if found:
        raise ArtefactError(f"runtime artefact {directory} computes otherwise than these settings say: "
                            + "; ".join(found) + " (leave them out: the artefact carries its own)")
    return served(fitted, given)


def runtime_model_info(directory: Path) -> ModelInfo:
    """Which model judges the frames, for the sinks' records (as stream_ad.artefact.model_info): the folder it
    resolves to, the method, the sha256 of the model artefact's state it was exported from; its pixel threshold."""
    manifest = read_runtime_manifest(directory)
    state = manifest.exported_from.get("state_sha256", "")[:16]
    return ModelInfo(version=f"{directory.resolve().name} {manifest.method} runtime, state sha256:{state}",
                     pixel_threshold=manifest.pixel_threshold_value)


def describe_runtime(manifest: RuntimeManifest) -> str:
    """What a runtime artefact computes, in one line."""
    params = ", ".join(f"{k}={v}" for k, v in manifest.scorer_params.items())
    pre = manifest.pre
    graph = f"{manifest.graph.get('precision', 'fp32')} OpenVINO graph"
    scope = (manifest.graph.get("quantisation") or {}).get("scope")  # none in artefacts exported before scopes
    if scope is not None:
        graph += f", INT8 scope {scope}"
    return (f"runtime artefact ({graph}) of {manifest.method} "
            f"({params}); preprocess {pre.mode} {pre.geometry.input_size} px; frame score "
            f"{describe_frame_score(pre.map_score_fraction)}; exported from "
            f"{manifest.exported_from.get('folder')}")
