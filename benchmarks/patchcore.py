"""`python -m benchmarks patchcore`: stream_ad's PatchCore side by side with anomalib's, and stream_ad's configured
method.

Up to three measurements on one MVTec-layout category, each in its own child process so its peak RSS is its own:
- stream_ad with the side-by-side settings (224 plain resize, the shared MobileNetV2 weights with mean/std 0.5,
  taps features.6 + features.13, coreset ratio --ratio, 9 neighbours);
- anomalib's PatchCore with the same settings (benchmarks.anomalib_peer);
- stream_ad with the settings it was given (its default configuration unless -c/STREAM_AD_* say otherwise).
The first two are PatchCore's side-by-side: when the settings name another method, only that method is measured
(its fit time is its training time). Every system's scores and maps are evaluated by stream_ad.evaluation, in this
process.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import multiprocessing
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from benchmarks.harness import Job, read_results, run_job
from stream_ad.data import MVTecCategory, Sample
from stream_ad.evaluation import TestPredictions, metrics_for
from stream_ad.evaluation.report import OVERALL
from stream_ad.runtime.device import resolve_device
from stream_ad.scorers import scorer_params
from stream_ad.scorers.patchcore import PatchCoreParams
from stream_ad.settings import BackboneSettings, PreprocessSettings, ScorerSettings, Settings

SIDE_BY_SIDE_SIZE = 224
SIDE_BY_SIDE_TAPS = ["features.6", "features.13"]  # stride 8 and 16; timm's blocks.2 and blocks.4
WEIGHTS_FILE = Path("weights") / "mobilenet_v2_imagenet_tflite.pth"
NUM_NEIGHBORS = 9
PEER = "anomalib"
RATIO = "stream_ad/anomalib"
TIMED = (
    "fit: everything the method does before it can score (PatchCore: feature extraction + coreset + faiss index; "
    "trained methods: training), on preprocessed tensors; "
    "inference: the method's scoring (PatchCore: forward + nearest-neighbour search) + image score + anomaly map "
    "at input size + copy to host, "
    "on preprocessed tensors, after one warm-up batch; decoding, resizing and mapping back to frame size untimed"
)
T = TypeVar("T")


@dataclass(frozen=True)
class PatchcoreBenchOptions:
    ratio: float = 0.0025  # coreset ratio of the side-by-side
    skip_peer: bool = False  # measure stream_ad only
    json: Path | None = None  # figures file; None: OUTPUT_DIR/bench/patchcore_peer.json (METHOD.json alone)
    limit_train: int | None = None  # fit on N images spread over train/good
    limit_test: int | None = None  # score N images spread over test/
    batch_sizes: tuple[int, ...] = (1, 16)  # inference batch sizes


class BenchError(RuntimeError):
    pass


def side_by_side_settings(settings: Settings, ratio: float) -> Settings:
    """`settings` (data, runtime) with the backbone, preprocessing and PatchCore settings anomalib can share."""
    backbone = BackboneSettings(
        name="mobilenet_v2",
        weights_path=settings.shared_dir / WEIGHTS_FILE,
        layers=SIDE_BY_SIDE_TAPS,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    # anomalib's PatchCore hard-codes 3x3 neighbourhood pooling, all channels kept and a sigma-4 map blur, and scores an
    # image by its worst patch as the paper does: stream_ad's own image score (map_score_fraction None), not the map's.
    params = PatchCoreParams(
        coreset_ratio=ratio, num_neighbors=NUM_NEIGHBORS, patch_size=3, embedding_dim=None, blur_sigma=4.0
    )
    return settings.model_copy(
        update={
            "backbone": backbone,
            "preprocess": PreprocessSettings(mode="resize", image_size=SIDE_BY_SIDE_SIZE, map_score_fraction=None),
            "scorer": ScorerSettings(method="patchcore", params=params.model_dump()),
        }
    )


def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """`limit` items evenly spaced over `items` (so every defect folder keeps a share), or all of them."""
    if limit is None or limit >= len(items):
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit).round()]


def describe(settings: Settings) -> dict[str, Any]:
    """The settings that decide what a run computes."""
    backbone = settings.backbone
    return {
        "backbone": backbone.name,
        "weights": str(backbone.weights_path or backbone.weights),
        "mean": backbone.mean,
        "std": backbone.std,
        "taps": list(backbone.layers),
        "preprocess": settings.preprocess.model_dump(mode="json"),
        "method": settings.scorer.method,
        "params": scorer_params(settings.scorer).model_dump(mode="json"),
    }


def measure_in_child(job: Job) -> tuple[dict[str, Any], np.ndarray, list[np.ndarray]]:
    # spawn, not fork: the child starts with a fresh heap, so its peak RSS (VmHWM, harness.peak_rss_mb) is its own.
    process = multiprocessing.get_context("spawn").Process(target=run_job, args=(job,), name=f"bench-{job.system}")
    process.start()
    process.join()
    if process.exitcode != 0:
        raise BenchError(f"the {job.system} measurement failed (child exit code {process.exitcode}); see above")
    return read_results(job.out)


def figures_for(child: dict[str, Any], rows: dict[str, dict[str, Any]], images: int) -> dict[str, Any]:
    """One flat row of figures per system: accuracy, fit time, throughput and latency per batch size, memory."""
    overall = rows[OVERALL]
    out: dict[str, Any] = {k: overall[k] for k in ("image_auroc", "pixel_auroc", "pro")}
    out["fit_s"] = child["fit_s"]
    out["memory_bank"] = child["memory_bank"]
    for batch_size, seconds in child["batch_seconds"].items():
        out[f"images_per_s_b{batch_size}"] = images / sum(seconds)
    for batch_size, seconds in child["batch_seconds"].items():
        p50, p95 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95])
        out[f"p50_ms_b{batch_size}"], out[f"p95_ms_b{batch_size}"] = float(p50), float(p95)
    out["peak_rss_mb"] = child["peak_rss_mb"]
    out["rss_before_fit_mb"] = child["rss_before_fit_mb"]
    return out


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    """ours / theirs per figure; None where either is missing or theirs is 0."""
    return {k: ours[k] / theirs[k] if ours[k] is not None and theirs.get(k) else None for k in ours}


def _label(key: str) -> str:
    fixed = {
        "image_auroc": "image AUROC",
        "pixel_auroc": "pixel AUROC",
        "pro": "PRO (FPR <= 0.3)",
        "fit_s": "fit s",
        "memory_bank": "memory bank (patches)",
        "peak_rss_mb": "peak RSS MB",
        "rss_before_fit_mb": "RSS before fit MB (data+model)",
    }
    if key in fixed:
        return fixed[key]
    name, _, batch = key.rpartition("_b")
    what = {"images_per_s": "images/s", "p50_ms": "latency p50 ms", "p95_ms": "latency p95 ms"}[name]
    return f"{what}, batch {batch}"


def _cell(key: str, value: Any, ratio: bool) -> str:
    if value is None:
        return "-"
    if ratio:
        return f"{value:.2f}x"
    if key in ("image_auroc", "pixel_auroc", "pro"):
        return f"{value:.4f}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}"


def format_table(columns: dict[str, dict[str, Any]], ratio_column: str) -> str:
    """Rows = figures, columns = systems; the column named `ratio_column`, if any, holds ratios, not figures."""
    keys = list(next(iter(columns.values())))
    width = max(len(_label(k)) for k in keys) + 2
    widths = [max(len(name), 9) + 2 for name in columns]
    lines = [f"{'':<{width}}" + "".join(f"{name:>{w}}" for name, w in zip(columns, widths))]
    for key in keys:
        cells = [_cell(key, col.get(key), name == ratio_column) for name, col in columns.items()]
        lines.append(f"{_label(key):<{width}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)


def _versions(with_peer: bool) -> dict[str, str]:
    names = ["stream-ad", "torch", "torchvision", "faiss-cpu"] + (["anomalib", "timm"] if with_peer else [])
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _check_test_split(test: list[Sample]) -> None:
    if len({s.label for s in test}) < 2:
        raise BenchError("the test subset needs good and defective images: raise --limit-test")


def measure_all(
    runs: dict[str, tuple[str, Settings]],
    train: list[Path],
    test: list[Sample],
    has_masks: bool,
    batch_sizes: Sequence[int],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Each run in its own child, one after the other; returns the figures and the per-defect metrics per run."""
    figures: dict[str, dict[str, Any]] = {}
    per_defect: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="stream-ad-bench-") as tmp:
        for name, (system, settings) in runs.items():
            job = Job(system, settings, train, [s.path for s in test], tuple(batch_sizes), Path(tmp) / f"{name}.npz")
            child, scores, maps = measure_in_child(job)
            per_defect[name] = metrics_for(TestPredictions(test, scores, maps), has_masks)
            figures[name] = figures_for(child, per_defect[name], len(test))
    return figures, per_defect


def run_bench(settings: Settings, args: PatchcoreBenchOptions) -> int:
    """Measure, print the table, write the JSON; 0 on success, 2 when the peer is missing, 1 on a failed child."""
    method = settings.scorer.method
    side_by_side = method == "patchcore"
    if not side_by_side:
        print(f"python -m benchmarks patchcore: {method} has no side-by-side with {PEER}'s PatchCore; "
              f"measuring {method} alone")
    with_peer = side_by_side and not args.skip_peer
    if with_peer and importlib.util.find_spec(PEER) is None:
        hint = "run `EXTRAS=bench bash scripts/setup.sh`, or pass --skip-peer"
        print(f"python -m benchmarks patchcore: {PEER} is not installed: {hint}", file=sys.stderr)
        return 2
    category = MVTecCategory(settings.data.root)
    train = spread([s.path for s in category.train()], args.limit_train)
    test = spread(category.test(), args.limit_test)
    side = side_by_side_settings(settings, args.ratio)
    runs = {"stream_ad": ("stream_ad", side), PEER: (PEER, side), "stream_ad_default": ("stream_ad", settings)}
    if not with_peer:
        del runs[PEER]
    if not side_by_side:
        del runs["stream_ad"]
    try:
        _check_test_split(test)
        figures, per_defect = measure_all(runs, train, test, category.has_masks, args.batch_sizes)
    except BenchError as exc:
        print(f"python -m benchmarks patchcore: {exc}", file=sys.stderr)
        return 1

    versions = _versions(with_peer)
    ratio = ratios(figures["stream_ad"], figures[PEER]) if with_peer else None
    columns = {"stream_ad": figures["stream_ad"]} if side_by_side else {}
    if ratio is not None:
        columns[f"anomalib {versions['anomalib']}"] = figures[PEER]
        columns[RATIO] = ratio
    columns["stream_ad default" if side_by_side else f"stream_ad {method}"] = figures["stream_ad_default"]
    configs = {"stream_ad_default": describe(settings)}
    if side_by_side:
        configs["side_by_side"] = describe(side)
    device = str(resolve_device(settings.runtime.device))
    # The children run torch's default (one thread per core) unless runtime.threads says otherwise, as here.
    threads = settings.runtime.threads or torch.get_num_threads()

    print(f"\n{category.name}: {len(train)} train, {len(test)} test images; {device}, {threads} torch threads")
    print(format_table(columns, RATIO))
    for name, config in configs.items():
        print(f"{name}: {json.dumps(config)}")
    print(f"timed: {TIMED}")

    report = {
        "category": category.name,
        "data_root": str(category.root),
        "train_images": len(train),
        "test_images": len(test),
        "device": device,
        "torch_threads": threads,
        "timed": TIMED,
        "versions": versions,
        "configs": configs,
        "figures": figures,
        "ratio_stream_ad_over_anomalib": ratio,
        "per_defect": per_defect,
    }
    out = args.json or settings.output_dir / "bench" / ("patchcore_peer.json" if side_by_side else f"{method}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"figures: {out}")
    return 0
