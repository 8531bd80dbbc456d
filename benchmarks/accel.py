"""`python -m benchmarks accel`: the backbone execution paths (runtime.accelerate) measured side by side, in one call.

Per model and per path available on the device (CPU: eager, openvino; CUDA: eager, torch_compile, tensorrt), each in
its own child process through the bench harness (benchmarks.harness: same fit, same images, same timing): images/s
at each batch size and batch-1 latency p50/p99. Models: PatchCore on the shared MobileNetV2 (the side-by-side
settings of `python -m benchmarks patchcore`), PatchCore on wide_resnet50_2 with random weights (speed only), and
the PDN scorer (`efficientad` at the paper's S size, 256 px, trained one step: speed only) when that method is
registered, and PaDiM (`padim`, its default params) on the same backbone and input as the first. On the
CPU also the peer: anomalib's OpenVINO export of the same PatchCore (benchmarks.anomalib_openvino), and the
score differences of each path against eager on the same images. Last, the whole pipeline's end-to-end latency with
a 100 fps camera (benchmarks.pipeline).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.harness import Job
from benchmarks.patchcore import BenchError, describe, measure_in_child, side_by_side_settings, spread
from stream_ad.data import MVTecCategory
from stream_ad.runtime.accelerate import unavailable
from stream_ad.runtime.device import resolve_device
from stream_ad.scorers import available_scorers
from stream_ad.settings import BackboneSettings, PreprocessSettings, ScorerSettings, Settings

PATHS = {"cpu": ("eager", "openvino"), "cuda": ("eager", "torch_compile", "tensorrt")}
PEER = "anomalib_openvino"
PDN = "efficientad"
PDN_SIZE = 256  # EfficientAD's input size
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CAMERA_FPS = 100.0


@dataclass(frozen=True)
class AccelBenchOptions:
    batch_sizes: tuple[int, ...] = (1, 8, 32)  # inference batch sizes
    ratio: float = 0.03  # coreset ratio of the PatchCore rows
    limit_train: int = 64  # fit on N train/good images
    limit_test: int = 96  # score N test images
    models: str = "mobilenet_v2,wide_resnet50_2,pdn,padim"  # comma-separated, of these four
    skip_peer: bool = False  # no anomalib OpenVINO row
    pipeline_duration: float = 20.0  # seconds of the pipeline run at a 100 fps camera (0 skips it)
    skip_line: bool = False  # no line runtime rows (bare backbone vs runtime artefacts fp32 / INT8, benchmarks.line)
    json: Path | None = None  # figures file; None: OUTPUT_DIR/bench/accel.json


@dataclass(frozen=True)
class Run:
    model: str  # mobilenet_v2 | wide_resnet50_2 | pdn | padim
    path: str  # runtime.accelerate, or the peer
    system: str  # harness system name
    settings: Settings

    @property
    def name(self) -> str:
        return f"{self.model}/{self.path}"


def with_runtime(settings: Settings, path: str, max_batch: int) -> Settings:
    """`settings` served through `path`, every batch size up to max_batch served whole."""
    runtime = settings.runtime.model_copy(update={"accelerate": path})
    infer = settings.pipeline.infer.model_copy(update={"max_batch": max_batch})
    pipeline = settings.pipeline.model_copy(update={"infer": infer})
    return settings.model_copy(update={"runtime": runtime, "pipeline": pipeline})


def model_settings(settings: Settings, ratio: float) -> dict[str, Settings | None]:
    """The measured models' settings (None: not available here)."""
    mobilenet = side_by_side_settings(settings, ratio)
    wrn = BackboneSettings(name="wide_resnet50_2", weights="random", weights_path=None, layers=["layer2", "layer3"],
                           mean=IMAGENET[0], std=IMAGENET[1])
    pdn = None
    if PDN in available_scorers():  # another method; looked up by name at run time
        # The paper's EfficientAD-S size (full PDN width, 256 px); one training step each: weights do not change
        # the speed, and the bench measures nothing else of it.
        pdn = settings.model_copy(update={
            "scorer": ScorerSettings(method=PDN, params={"width": 1.0, "teacher_steps": 1, "steps": 1,
                                                         "checkpoint_every": 1}),
            "preprocess": PreprocessSettings(mode="resize", image_size=PDN_SIZE),
        })
    padim = mobilenet.model_copy(update={"scorer": ScorerSettings(method="padim")})
    return {"mobilenet_v2": mobilenet, "wide_resnet50_2": mobilenet.model_copy(update={"backbone": wrn}), "pdn": pdn,
            "padim": padim}


def plan(settings: Settings, args: AccelBenchOptions, device: torch.device,
         max_batch: int) -> tuple[list[Run], list[str]]:
    """The runs to measure, and a line for each one that cannot run here."""
    runs: list[Run] = []
    notes: list[str] = []
    models = model_settings(settings, args.ratio)
    for model in args.models.split(","):
        if model not in models:
            raise BenchError(f"unknown model {model!r}; choose from {', '.join(models)}")
        chosen = models[model]
        if chosen is None:
            notes.append(f"{model}: not available (no scorer method {PDN!r} registered)")
            continue
        for path in PATHS[device.type]:
            why = unavailable(path, device)
            if why is not None:
                notes.append(f"{model}/{path}: not available: {why}")
                continue
            runs.append(Run(model, path, "stream_ad", with_runtime(chosen, path, max_batch)))
    peer_ok = device.type == "cpu" and not args.skip_peer and "mobilenet_v2" in args.models.split(",")
    if peer_ok:
        missing = [m for m in ("anomalib", "openvino") if importlib.util.find_spec(m) is None]
        if missing:
            notes.append(f"mobilenet_v2/{PEER}: not available: {', '.join(missing)} not installed "
                         "(EXTRAS=bench,openvino bash scripts/setup.sh)")
        else:
            runs.append(Run("mobilenet_v2", PEER, PEER, models["mobilenet_v2"]))  # type: ignore[arg-type]
    return runs, notes


def speed(batch_seconds: dict[str, list[float]], images: int) -> dict[str, float]:
    """images/s per batch size (all images, timed calls only) and batch-1 latency p50/p99."""
    out = {f"images_per_s_b{b}": images / sum(s) for b, s in batch_seconds.items()}
    if "1" in batch_seconds:
        p50, p99 = np.percentile(np.asarray(batch_seconds["1"]) * 1000.0, [50, 99])
        out.update(p50_ms_b1=float(p50), p99_ms_b1=float(p99))
    return out


def score_difference(scores: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    diff = np.abs(scores - reference)
    return {"max_abs": float(diff.max()), "max_rel": float((diff / np.maximum(np.abs(reference), 1e-12)).max())}


def measure(runs: list[Run], train: list[Path], test: list[Path],
            batch_sizes: tuple[int, ...]) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    figures: dict[str, dict[str, Any]] = {}
    scores: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="stream-ad-bench-accel-") as tmp:
        for run in runs:
            print(f"measuring {run.name} ...", file=sys.stderr, flush=True)
            job = Job(run.system, run.settings, train, test, batch_sizes, Path(tmp) / f"{len(figures)}.npz")
            try:
                child, scores[run.name], _ = measure_in_child(job)
            except BenchError as exc:  # one path failing must not lose the others' figures: reported as failed
                figures[run.name] = {"failed": str(exc)}
                continue
            figures[run.name] = {"fit_s": child["fit_s"], "memory_bank": child["memory_bank"],
                                 **speed(child["batch_seconds"], len(test))}
    for run in runs:  # every path's scores against eager's on the same images (and the peer's, for reference)
        eager = f"{run.model}/eager"
        if run.path != "eager" and eager in scores and run.name in scores:
            figures[run.name]["scores_vs_eager"] = score_difference(scores[run.name], scores[eager])
    return figures, scores


def demo_artefact(settings: Settings) -> Path:
    """The demo's calibrated model artefact (fitted and cached if missing)."""
    from stream_ad.artefact import model_dir_name
    from stream_ad.commands.demo import demo_model

    model_dir = settings.output_dir / "demo" / model_dir_name(settings)
    demo_model(settings, model_dir)
    return model_dir


def pipeline_latency(settings: Settings, seconds: float, out_dir: Path) -> dict[str, Any]:
    """The demo model through every stage process, camera at CAMERA_FPS, runtime.accelerate as configured."""
    from benchmarks.pipeline import pipeline_run
    from stream_ad.pipeline.served import resolve_threshold

    model_dir = demo_artefact(settings)
    threshold, _ = resolve_threshold(settings, model_dir)
    folder = settings.pipeline.source.path or settings.data.root / "test"
    out_dir.mkdir(parents=True, exist_ok=True)
    return pipeline_run(settings, model_dir, threshold, folder, CAMERA_FPS, seconds, out_dir)


def table(figures: dict[str, dict[str, Any]], batch_sizes: tuple[int, ...]) -> str:
    cols = [f"img/s b{b}" for b in batch_sizes] + ["p50 ms b1", "p99 ms b1", "max |d score|", "max rel d"]
    width = max(len(n) for n in figures) + 2
    lines = [f"{'model/path':<{width}}" + "".join(f"{c:>14}" for c in cols)]
    for name, f in figures.items():
        if "failed" in f:
            lines.append(f"{name:<{width}}  failed: {f['failed']}")
            continue
        diff = f.get("scores_vs_eager", {})
        cells = [f.get(f"images_per_s_b{b}") for b in batch_sizes] + [f.get("p50_ms_b1"), f.get("p99_ms_b1")]
        text = ["-" if v is None else f"{v:.1f}" for v in cells]
        text += [f"{diff[k]:.2e}" if k in diff else "-" for k in ("max_abs", "max_rel")]
        lines.append(f"{name:<{width}}" + "".join(f"{c:>14}" for c in text))
    return "\n".join(lines)


def run_bench(settings: Settings, args: AccelBenchOptions) -> int:
    batch_sizes = tuple(args.batch_sizes)
    device = resolve_device(settings.runtime.device)
    category = MVTecCategory(settings.data.root)
    train = spread([s.path for s in category.train()], args.limit_train)
    test = spread([s.path for s in category.test()], args.limit_test)
    try:
        runs, notes = plan(settings, args, device, max(batch_sizes))
        figures, _ = measure(runs, train, test, batch_sizes)
    except BenchError as exc:
        print(f"python -m benchmarks accel: {exc}", file=sys.stderr)
        return 1
    out = args.json or settings.output_dir / "bench" / "accel.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": list(os.getloadavg())},
        "torch_threads": settings.runtime.threads or torch.get_num_threads(),
        "category": category.name, "train_images": len(train), "test_images": len(test),
        "configs": {run.name: describe(run.settings) for run in runs}, "not_available": notes, "figures": figures,
    }
    if not args.skip_line and device.type == "cpu" and unavailable("openvino", device) is None:
        from benchmarks.line import line_bench

        print("line runtime: bare backbone vs runtime artefacts fp32 / INT8 ...", file=sys.stderr, flush=True)
        report["line"] = line_bench(settings, demo_artefact(settings), test, batch_sizes, report["torch_threads"])
    if args.pipeline_duration > 0:
        print(f"pipeline at {CAMERA_FPS:.0f} fps for {args.pipeline_duration:.0f} s ...", file=sys.stderr, flush=True)
        report["pipeline"] = pipeline_latency(settings, args.pipeline_duration, out.parent / "accel_pipeline")
    out.write_text(json.dumps(report, indent=2) + "\n")
    failed = [name for name, f in figures.items() if "failed" in f]

    print(f"\n{category.name}: fit on {len(train)}, scored {len(test)} images; {report['device']}, "
          f"{report['torch_threads']} torch threads, load average {report['machine']['load_avg'][0]:.1f}")
    print(table(figures, batch_sizes))
    if "line" in report:
        from benchmarks.line import line_table

        print(line_table(report["line"], batch_sizes))
    for line in notes:
        print(line)
    if "pipeline" in report:
        p = report["pipeline"]
        print(f"pipeline end to end at a {CAMERA_FPS:.0f} fps camera "
              f"(runtime.accelerate {settings.runtime.accelerate}): p50 {p['p50_ms']:.1f} ms, "
              f"p99 {p['p99_ms']:.1f} ms; {p['frames_in']} frames in, {p['scored']} scored, {p['dropped']} dropped")
    print(f"figures: {out}")
    return 1 if failed else 0
