"""`python -m benchmarks int8-accuracy`: what `stream-ad export --int8` costs in accuracy, set by set (issue 20).

For magnetic_tile and each PIPED category (`--sets` to choose): the settings given (the defaults: PatchCore, 224 px)
fitted on the set's train/good as `stream-ad fit` fits (a model artefact cached under `--models`, reused when there),
exported as fp32 and as INT8 runtime artefacts as `stream-ad export` writes them, and both scored through the line
runtime (LineModel) on the same test images: image AUROC, pixel AUROC and PRO of each (binned, as `stream-ad eval`
computes them), their differences, how far the INT8 image scores lie from fp32's (median relative change), and how
far the maps (the share of pixels that moved, the largest change relative to the fp32 map's scale). The figure to
judge a quantisation rule by is the worst difference; the maps show what a quantised search matmul changes
(runtime.quantise: `--scope search` quantises it alone), since PatchCore's image score comes from an exact search of
the worst patch.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stream_ad.artefact import has_artefact
from stream_ad.commands.export import export
from stream_ad.commands.fit import fit_and_save
from stream_ad.data import MVTecCategory, Sample, read_image, read_mask
from stream_ad.evaluation import image_auroc
from stream_ad.evaluation.accuracy import PRO_MAX_FPR, PixelCounts, PixelTally
from stream_ad.line.model import LineModel
from stream_ad.runtime.quantise import Int8Scope
from stream_ad.settings import Settings

CHUNK = 32  # test images read and scored at a time


@dataclass(frozen=True)
class Int8AccuracyOptions:
    sets: str | None = None  # comma-separated set names; None: magnetic_tile and every PIPED category
    models: Path | None = None  # fitted model artefacts, one folder per set, reused; None: OUTPUT_DIR/bench/int8_models
    scope: Int8Scope = Int8Scope.ALL  # what INT8 quantises (`export --int8 SCOPE`)
    json: Path | None = None  # figures file; None: OUTPUT_DIR/bench/int8_accuracy.json


def set_roots(settings: Settings, names: str | None) -> dict[str, Path]:
    """The data set folders by name: magnetic_tile and datasets/piped/PA_*, or those named."""
    datasets = settings.shared_dir / "datasets"
    roots = {"magnetic_tile": datasets / "magnetic_tile"}
    roots |= {p.name: p for p in sorted((datasets / "piped").glob("PA_*"))}
    if names is None:
        return roots
    wanted = names.split(",")
    unknown = [n for n in wanted if n not in roots]
    if unknown:
        raise SystemExit(f"int8-accuracy: unknown set(s) {', '.join(unknown)}; known: {', '.join(roots)}")
    return {n: roots[n] for n in wanted}


def fitted(settings: Settings, model_dir: Path) -> Path:
    """`model_dir`, fitted on settings.data.root first unless an artefact is there already."""
    if not has_artefact(model_dir):
        fit_and_save(settings, model_dir)
    return model_dir


@dataclass(frozen=True)
class Scored:
    scores: np.ndarray  # image scores of the test images
    pixels: PixelCounts  # their maps' pixels counted against the masks


@dataclass
class MapChange:
    """How far INT8 maps lie from fp32's, pixel by pixel: the share of pixels that differ and the largest
    difference relative to its fp32 map's largest value."""

    pixels: int = 0
    moved: int = 0
    largest: float = 0.0

    def add(self, int8: np.ndarray, fp32: np.ndarray) -> None:
        self.pixels += fp32.size
        self.moved += int(np.count_nonzero(int8 != fp32))
        self.largest = max(self.largest, float(np.abs(int8 - fp32).max() / max(np.abs(fp32).max(), 1e-12)))


def score_test(lines: dict[str, LineModel], samples: list[Sample]) -> tuple[dict[str, Scored], MapChange]:
    """The test images scored by each of `lines` ("fp32", "int8"); their maps tallied and compared as they come
    (bounded memory)."""
    tallies, scores = {p: PixelTally() for p in lines}, {p: [] for p in lines}
    change = MapChange()
    for i in range(0, len(samples), CHUNK):
        chunk = samples[i : i + CHUNK]
        frames = [read_image(s.path) for s in chunk]
        preds = {p: line.predict(frames) for p, line in lines.items()}
        for p, pred in preds.items():
            scores[p].append(pred.scores)
            for sample, amap in zip(chunk, pred.maps, strict=True):
                tallies[p].add("all", amap.astype(np.float32), read_mask(sample, amap.shape), sample.path)
        for int8, fp32 in zip(preds["int8"].maps, preds["fp32"].maps, strict=True):
            change.add(int8.astype(np.float32), fp32.astype(np.float32))
    return {p: Scored(np.concatenate(scores[p]), tallies[p].counts(["all"])) for p in lines}, change


def runtime_artefacts(settings: Settings, model_dir: Path, out: Path, scope: Int8Scope) -> dict[str, Path]:
    """`model_dir` exported into `out` as fp32 and INT8 (`scope`) runtime artefacts by `stream-ad export` itself."""
    outs = {"fp32": out / "fp32", "int8": out / "int8"}
    for precision, folder in outs.items():
        export(settings, model_dir, folder, int8=scope if precision == "int8" else None)
    return outs


def measure(settings: Settings, model_dir: Path, threads: int, scope: Int8Scope) -> dict[str, Any]:
    """fp32 and INT8 runtime artefacts of `model_dir`, scored on settings.data.root's test images."""
    samples = MVTecCategory(settings.data.root).test()
    labels = [s.label for s in samples]
    with tempfile.TemporaryDirectory(prefix="stream-ad-int8-accuracy-") as tmp:
        outs = runtime_artefacts(settings, model_dir, Path(tmp), scope)
        scored, maps = score_test({precision: LineModel(out, threads) for precision, out in outs.items()}, samples)
    fp32, int8 = (scored[p] for p in ("fp32", "int8"))
    figures = {f"{p}_{metric}": value for p, run in scored.items() for metric, value in (
        ("auroc", image_auroc(labels, run.scores)), ("pixel_auroc", run.pixels.pixel_auroc().value),
        ("pro", run.pixels.pro_auc(PRO_MAX_FPR).value))}
    change = np.abs(int8.scores - fp32.scores) / np.maximum(np.abs(fp32.scores), 1e-12)
    return {"test_images": len(samples), **figures, "difference": figures["int8_auroc"] - figures["fp32_auroc"],
            "pixel_difference": figures["int8_pixel_auroc"] - figures["fp32_pixel_auroc"],
            "pro_difference": figures["int8_pro"] - figures["fp32_pro"],
            "median_relative_score_change": float(np.median(change)),
            "map_pixels_moved": maps.moved / maps.pixels, "map_largest_relative_change": maps.largest}


def table(rows: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'set':<15}{'images':>7}{'fp32 AUROC':>12}{'INT8 AUROC':>12}{'INT8-fp32':>11}{'median rel. change':>20}"
             f"{'pixel AUROC fp32 / INT8':>25}{'PRO fp32 / INT8':>18}{'map pixels moved':>18}{'largest':>9}"]
    for name, r in rows.items():
        lines.append(f"{name:<15}{r['test_images']:>7}{r['fp32_auroc']:>12.4f}{r['int8_auroc']:>12.4f}"
                     f"{r['difference']:>+11.4f}{r['median_relative_score_change']:>20.2%}"
                     f"{r['fp32_pixel_auroc']:>16.4f} / {r['int8_pixel_auroc']:.4f}"
                     f"{r['fp32_pro']:>9.4f} / {r['int8_pro']:.4f}"
                     f"{r['map_pixels_moved']:>18.2%}{r['map_largest_relative_change']:>9.1e}")
    worst = min(rows, key=lambda n: rows[n]["difference"])
    farthest = max(rows, key=lambda n: abs(rows[n]["difference"]))  # "within" a tolerance: a gain counts too
    lines.append(f"worst difference: {rows[worst]['difference']:+.4f} ({worst}); largest |difference|: "
                 f"{abs(rows[farthest]['difference']):.4f} ({farthest})")
    for key, what in (("pixel_difference", "pixel AUROC"), ("pro_difference", "PRO")):
        low = min(rows, key=lambda n: rows[n][key])
        lines.append(f"worst {what} difference: {rows[low][key]:+.4f} ({low})")
    return "\n".join(lines)


def run_bench(settings: Settings, options: Int8AccuracyOptions) -> int:
    threads = settings.runtime.threads or torch.get_num_threads()
    models = options.models or settings.output_dir / "bench" / "int8_models"
    rows = {}
    for name, root in set_roots(settings, options.sets).items():
        at = settings.model_copy(update={"data": settings.data.model_copy(update={"root": root})})
        rows[name] = measure(at, fitted(at, models / name), threads, options.scope)
        print(f"{name}: fp32 {rows[name]['fp32_auroc']:.4f}, INT8 {rows[name]['int8_auroc']:.4f}", flush=True)
    print(f"\nimage AUROC of the runtime artefact, fp32 vs INT8 of scope {options.scope.value} "
          f"({settings.scorer.method}, {settings.preprocess.image_size} px, {threads} threads; models: {models})")
    print(table(rows))
    out = options.json or settings.output_dir / "bench" / "int8_accuracy.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": threads, "models": str(models), "scope": options.scope.value, "sets": rows},
                              indent=2) + "\n")
    print(f"figures: {out}")
    return 0
