"""`stream-ad export MODEL --out DIR`: a model artefact -> a runtime artefact (stream_ad.line.artefact) that a line PC
serves without torch: the method's whole scoring path as one OpenVINO graph, the preprocessing around it as data,
the threshold, checked sums.

The graph is the scorer's own scoring_graph() (PatchCore: the graph runtime.accelerate openvino compiles), converted
by runtime.accelerate.to_openvino; before anything is written, it scores a few of the model's good images (or test
patterns) against torch and is refused if any score or map differs by more than RTOL of its scale.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream_ad.artefact import fitted_images, load_model, read_manifest
from stream_ad.commands.errors import CommandError
from stream_ad.data import read_image
from stream_ad.line.artefact import INPUT, OUTPUTS, RuntimeManifest, describe_runtime, write_runtime_artefact
from stream_ad.model import AnomalyModel
from stream_ad.runtime.accelerate import to_openvino
from stream_ad.runtime.checksums import sha256_file
from stream_ad.runtime.openvino import compile_for_cpu, save_ir
from stream_ad.runtime.quantise import Int8Scope
from stream_ad.scorers import NotExportable, scorer_class
from stream_ad.settings import Settings

log = logging.getLogger(__name__)

RTOL = 1e-4  # largest difference of the exported graph's scores and maps from torch's, relative to their scale
CHECK_IMAGES = 3  # images the exported graph is checked on, as one batch (the batch dimension is dynamic)


def export(settings: Settings, model_dir: Path, out: Path, *, int8: Int8Scope | None = None,
           calibration_images: Path | None = None) -> int:
    """Export the model artefact `model_dir` into the new folder `out`, its graph quantised to INT8 within `int8`
    (on `calibration_images`, else the model's held-out images: stream_ad.commands.export_int8); 0 when written."""
    if calibration_images is not None and int8 is None:
        raise CommandError("--calibration-images is for --int8: a float32 export is not calibrated on images")
    model, graph, ov_model = scoring_graph(settings, model_dir, quantised=int8 is not None)
    inputs = check_inputs(model, model_dir)
    worst = graph_difference(ov_model, graph, inputs)
    if worst > RTOL:
        raise CommandError(f"cannot export {model_dir}: the converted graph's scores differ from torch's by "
                           f"{worst:.2e} of their scale (allowed {RTOL:.0e}); serve the model artefact instead")
    manifest = runtime_manifest(model, model_dir)
    checked = f"graph checked on {len(inputs)} images (largest difference {worst:.1e} of the scale)"
    if int8 is not None:
        from stream_ad.commands.export_int8 import write_int8  # nncf: only where INT8 is asked for

        manifest = write_int8(model, model_dir, ov_model, manifest, out, calibration_images, int8)
        quantisation = manifest.graph["quantisation"]
        checked = (f"float32 {checked}; quantised (scope {int8.value}) on {quantisation['calibration']['count']} "
                   "good images, INT8 scores "
                   f"a median {quantisation['score_change_vs_fp32']['median_relative']:.2%} from float32"
                   + ("; threshold set again on INT8 scores" if manifest.threshold is not None else ""))
    else:
        write_runtime_artefact(out, manifest, lambda xml: save_ir(ov_model, xml))
    print(f"exported {model_dir} -> {out}: {describe_runtime(manifest)}; {checked}")
    if manifest.threshold_value is None:
        print(f"note: {model_dir} is not calibrated: the runtime artefact has no threshold; calibrate the model "
              "artefact and export again, or set pipeline.decide.threshold")
    return 0


def scoring_graph(settings: Settings, model_dir: Path, quantised: bool = False
                  ) -> tuple[AnomalyModel, torch.nn.Module, Any]:
    """The model artefact `model_dir` loaded, its scoring graph (built to be quantised, or not), and that graph
    converted to OpenVINO (unchecked)."""
    # Built eagerly on the CPU: the scorer's score() and scoring graph are plain torch, as the converter traces them.
    runtime = settings.runtime.model_copy(update={"device": "cpu", "accelerate": "eager"})
    model = load_model(model_dir, settings.model_copy(update={"runtime": runtime}))
    try:
        graph = model.scorer.scoring_graph(quantised).eval()
    except NotExportable as exc:
        raise CommandError(f"cannot export {model_dir}: {exc}") from None
    ov_model = named_ports(to_openvino(graph, model.preprocessor.input_size))
    unnamed = sorted(model.scorer.graph_constants().keys() - {op.get_friendly_name() for op in ov_model.get_ops()})
    if unnamed:  # the manifest documents them by these names: they must be there to be found
        raise CommandError(f"cannot export {model_dir}: the converted graph has no constant {', '.join(unnamed)}")
    return model, graph, ov_model


def named_ports(ov_model: Any) -> Any:
    """The graph's input and outputs named as the line runtime addresses them (line.artefact.INPUT, OUTPUTS)."""
    ov_model.inputs[0].get_tensor().set_names({INPUT})
    for port, name in zip(ov_model.outputs, OUTPUTS, strict=True):
        port.get_tensor().set_names({name})
    return ov_model


def check_inputs(model: AnomalyModel, model_dir: Path) -> torch.Tensor:
    """Normalised inputs to check the graph on: good images the model was not fitted on (its calibration hold-out)
    found on this machine, else test patterns (grey, seeded noise). Not fitted images: their patches are in the
    bank, at distances near 0 where float32 rounding is all there is to compare."""
    paths = fitted_images(read_manifest(model_dir), model.settings.data.root, "held_out")[:CHECK_IMAGES]
    side = model.preprocessor.input_size
    frames = [read_image(p) for p in paths] or [
        np.full((side, side, 3), 127, np.uint8),
        *np.random.default_rng(0).integers(0, 256, (CHECK_IMAGES - 1, side, side, 3), dtype=np.uint8),
    ]
    return model.preprocessor(frames).inputs


def graph_difference(ov_model: Any, graph: torch.nn.Module, inputs: torch.Tensor) -> float:
    """The largest difference between OpenVINO's and torch's outputs of `graph` on `inputs`, relative to the
    largest magnitude of each output."""
    compiled = compile_for_cpu(ov_model, torch.get_num_threads())
    result = compiled.create_infer_request().infer({INPUT: inputs.numpy()})
    with torch.inference_mode():
        want = [t.numpy() for t in graph(inputs)]
    got = [result[compiled.output(name)] for name in OUTPUTS]
    return max(float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-12)) for g, w in zip(got, want, strict=True))


def runtime_manifest(model: AnomalyModel, model_dir: Path) -> RuntimeManifest:
    """The runtime artefact's manifest (files, versions and kind are filled in as it is written)."""
    source = read_manifest(model_dir)
    method = scorer_class(source.method)
    pre = model.preprocessor
    preprocessing = {**pre.cfg.model_dump(mode="json"), "mean255": pre.mean.flatten().tolist(),
                     "std255": pre.std.flatten().tolist()}
    return RuntimeManifest(
        kind="", format_version=0, stream_ad_version="", python="", files={},
        exported_from={"folder": str(model_dir.resolve()), "manifest_sha256": sha256_file(model_dir / "manifest.json"),
                       "state_sha256": source.files.get("state.safetensors", "")},
        method=source.method,
        nonnegative_scores=method.nonnegative_scores,
        scorer_params=source.scorer_params,
        not_scoring=sorted(method.Params.not_scoring),
        backbone=source.backbone,
        preprocessing=preprocessing,
        graph={"input": INPUT, "outputs": list(OUTPUTS), "precision": "fp32",
               "images_per_call": model.scorer.images_per_call(), "constants": model.scorer.graph_constants()},
        threshold=source.threshold,
        settings=source.settings,
    )
