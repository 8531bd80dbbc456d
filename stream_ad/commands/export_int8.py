"""`stream-ad export MODEL --out DIR --int8`: the checked float32 scoring graph quantised to INT8 (runtime.quantise,
NNCF) on good images, then written as the runtime artefact in its place.

INT8 scores are not the float32 scores (a median 0.5 % apart on PIPED), so the model artefact's threshold does not
carry over: it is set again, by the calibration's own rule (stream_ad.calibration), from the INT8 graph's scores of
the very images and with the very target and confidence the model artefact was calibrated with, scored as the line
scores them (LineModel on a draft of the artefact). The manifest records the precision, what was quantised and on
which images (paths and sha256), and how far the INT8 scores moved from float32 on them.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream_ad.artefact import fitted_images, read_manifest
from stream_ad.calibration.calibrate import GoodImages, threshold_record
from stream_ad.calibration.holdout import describe_images
from stream_ad.commands.errors import CommandError
from stream_ad.data import read_image
from stream_ad.data.folders import image_files
from stream_ad.line.artefact import INPUT, OUTPUTS, RuntimeManifest, write_runtime_artefact
from stream_ad.line.model import LineModel
from stream_ad.model import AnomalyModel
from stream_ad.runtime.openvino import compile_for_cpu, save_ir
from stream_ad.runtime.quantise import Int8Scope, quantise_int8

CHUNK = 16  # images read, preprocessed and scored at a time


def calibration_inputs(model: AnomalyModel, model_dir: Path, folder: Path | None) -> tuple[np.ndarray, dict[str, Any]]:
    """The normalised good images to quantise on (`folder`, recursively, else the model's held-out images found
    here, or its fitted ones where it held none out: cross-fitted) and how the manifest names them."""
    root = model.settings.data.root
    manifest = read_manifest(model_dir)
    if folder is not None:
        paths, source = image_files(folder, "--calibration-images"), str(folder.resolve())
    elif manifest.data_split and "cross_fit" in manifest.data_split:
        paths, source = fitted_images(manifest, root), "the model's good images (cross-fitted: none held out)"
    else:
        paths, source = fitted_images(manifest, root, "held_out"), "the model's held-out good images"
    if not paths:
        raise CommandError(f"cannot export {model_dir} as INT8: none of its good images is found here "
                           f"(data.root {root}); give good images with --calibration-images DIR")
    inputs = np.concatenate([model.preprocessor([read_image(p) for p in paths[i : i + CHUNK]]).inputs.numpy()
                             for i in range(0, len(paths), CHUNK)])
    return inputs, {"source": source, "count": len(paths), "images": describe_images(paths, root)}


def score_change(fp32: Any, line: LineModel, inputs: np.ndarray) -> dict[str, float]:
    """How far the INT8 image scores lie from the float32 graph's on `inputs`, relative to each score."""
    compiled = compile_for_cpu(fp32, torch.get_num_threads())
    request = compiled.create_infer_request()
    step = line.images_per_call or len(inputs)
    want = np.concatenate([request.infer({INPUT: inputs[i : i + step]})[compiled.output(OUTPUTS[0])]
                           for i in range(0, len(inputs), step)])
    got, _ = line.scores(inputs)
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-12)
    return {"median_relative": float(np.median(rel)), "max_relative": float(rel.max())}


def int8_threshold(threshold: dict[str, Any] | float | None, model: AnomalyModel, model_dir: Path,
                   line: LineModel) -> dict[str, Any] | None:
    """The model artefact's threshold record set again from the INT8 graph's scores (None: not calibrated)."""
    if threshold is None:
        return None
    if not isinstance(threshold, dict) or "images" not in threshold:
        raise CommandError(f"cannot export {model_dir} as INT8: its threshold names no calibration images to set it "
                           "again on with INT8 scores; calibrate the model artefact (`stream-ad calibrate`) first")
    if "cross_fit_folds" in threshold:
        raise CommandError(f"cannot export {model_dir} as INT8: its threshold comes from cross-fitting "
                           f"(calibration.folds {threshold['cross_fit_folds']}), whose fold models are not kept to "
                           "score its good images again with INT8 scores; calibrate it on good images it was not "
                           "fitted on first (`stream-ad calibrate --good DIR`)")
    settings = model.settings
    paths = [settings.data.root / p for p in threshold["images"]["paths"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise CommandError(f"cannot export {model_dir} as INT8: {len(missing)} of the images its threshold was "
                           f"calibrated on are not found here, e.g. {missing[0]}: the INT8 threshold is set again on "
                           "them; export where they are (data.root)")
    pixel = threshold.get("pixel")
    calibration = settings.calibration.model_copy(update={
        "target_fpr": threshold["target_fpr"], "confidence": threshold["confidence"],
        "pixel_target_fpr": pixel["target_fpr"] if pixel else None})

    def score(images: list[Path], keep_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        preds = [line.predict([read_image(p) for p in images[i : i + CHUNK]]) for i in range(0, len(images), CHUNK)]
        return (np.concatenate([p.scores for p in preds]),
                [m.astype(np.float32) for p in preds for m in p.maps] if keep_maps else [])

    record = threshold_record(score, settings.model_copy(update={"calibration": calibration}),
                              GoodImages(paths, threshold["images"]["source"]),
                              defects=threshold.get("defects") is not None)
    return {**record, "scored_by": "this runtime artefact's INT8 graph"}


def write_int8(model: AnomalyModel, model_dir: Path, fp32: Any, manifest: RuntimeManifest, out: Path,
               calibration_images: Path | None, scope: Int8Scope) -> RuntimeManifest:
    """Quantise `fp32` (the checked graph) within `scope`, set its threshold again, write the INT8 runtime artefact
    into `out`."""
    searches = model.scorer.int8_search_constants()
    if scope is Int8Scope.SEARCH and not searches:
        raise CommandError(f"cannot export {model_dir} with --int8 search: {model.settings.scorer.method} offers no "
                           "nearest-neighbour search to quantise; --int8 quantises its networks")
    inputs, calibration = calibration_inputs(model, model_dir, calibration_images)
    quantised = quantise_int8(fp32, inputs, model.preprocessor.input_size, scope, searches)
    graph = {**manifest.graph, "precision": "int8", "quantisation": quantised.record(calibration)}

    def save(xml: Path) -> None:
        save_ir(quantised.model, xml)

    with tempfile.TemporaryDirectory(prefix="stream-ad-int8-") as tmp:
        draft = write_runtime_artefact(Path(tmp) / "draft", dataclasses.replace(manifest, graph=graph), save)
        line = LineModel(draft, torch.get_num_threads())
        graph["quantisation"]["score_change_vs_fp32"] = score_change(fp32, line, inputs)
        threshold = int8_threshold(manifest.threshold, model, model_dir, line)
    final = dataclasses.replace(manifest, graph=graph, threshold=threshold)
    write_runtime_artefact(out, final, save)
    return final
