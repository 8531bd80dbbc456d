"""The pipeline's console commands: `stream-ad run PIPELINE.yaml` and the streaming `stream-ad demo`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from stream_ad.settings import ConfigError, Settings, load_settings
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.run import run_pipeline
from stream_ad.pipeline.summary import RunSummary

log = logging.getLogger("stream_ad.pipeline")


def model_dir_of(settings: Settings) -> Path:
    """pipeline.model, or where `stream-ad fit` puts the artefact for these settings."""
    return settings.pipeline.model or settings.output_dir / f"{settings.data.root.name}-{settings.scorer.method}"


def threshold_value(raw: Any) -> float | None:
    """An artefact's threshold: a number, or a mapping with a "value" (the calibration's format)."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        raw = raw.get("value")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    return float(raw)


def resolve_threshold(settings: Settings, model_dir: Path) -> tuple[float, str]:
    """The decide stage's threshold: the model artefact's, else pipeline.decide.threshold, else an error."""
    manifest_path = model_dir / "manifest.json"
    if not manifest_path.is_file():
        raise PipelineError(
            f"no model artefact at {model_dir} ({manifest_path.name} missing): fit one with "
            f"`stream-ad -c PIPELINE.yaml fit --out {model_dir}` or set pipeline.model"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{manifest_path} is not valid JSON: {exc}") from None
    value = threshold_value(manifest.get("threshold"))
    if value is not None:
        return value, f"model artefact {model_dir}"
    if settings.pipeline.decide.threshold is not None:
        return settings.pipeline.decide.threshold, "setting pipeline.decide.threshold"
    raise ConfigError(
        f"no decision threshold: the model artefact {model_dir} has no 'threshold' (manifest.json) and "
        "pipeline.decide.threshold is not set; calibrate the model or set pipeline.decide.threshold"
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    pipe: dict[str, Any] = {}
    if getattr(args, "duration", None) is not None:
        pipe["duration_s"] = args.duration
    if getattr(args, "metrics_port", None) is not None:
        pipe["metrics"] = {"port": args.metrics_port}
    if getattr(args, "no_progress", False):
        pipe["progress"] = False
    if getattr(args, "fps", None) is not None:
        pipe["source"] = {"fps": args.fps}
    return {"pipeline": pipe} if pipe else {}


def _write_summary(summary: RunSummary, path: Path | None, extra: dict[str, Any] | None = None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**summary.to_json(), **(extra or {})}, indent=2) + "\n")


def cmd_run(args: argparse.Namespace, _: Settings) -> int:
    """stream-ad run PIPELINE.yaml: the pipeline in the foreground until its source ends or SIGTERM/Ctrl-C."""
    if args.config is not None and Path(args.config).resolve() != Path(args.pipeline).resolve():
        raise ConfigError("`stream-ad run` takes its settings from PIPELINE.yaml; leave out -c/--config")
    settings = load_settings(args.pipeline, **_overrides(args))
    try:
        model_dir = model_dir_of(settings)
        threshold, origin = resolve_threshold(settings, model_dir)
        print(f"model {model_dir}, decision threshold {threshold:.4f} (from {origin})", file=sys.stderr, flush=True)
        summary = run_pipeline(settings, threshold, model_dir, verbose=args.verbose)
    except PipelineError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    _write_summary(summary, args.summary)
    return 0 if summary.unaccounted == 0 else 1


# ---- the embedded demo ----

def _calibrated_as_asked(threshold: Any, settings: Settings) -> bool:
    from stream_ad.calibration.calibrate import METHOD

    cfg = settings.calibration
    return isinstance(threshold, dict) and threshold.get("method") == METHOD and all(
        threshold.get(key) == getattr(cfg, key) for key in ("target_fpr", "confidence")
    ) and (threshold.get("pixel") or {}).get("target_fpr") == cfg.pixel_target_fpr


def demo_model(settings: Settings, model_dir: Path) -> tuple[dict[str, Any], bool]:
    """A PatchCore fitted on train/good minus the calibration hold-out and calibrated on that hold-out, as
    `stream-ad fit` + `stream-ad calibrate` make it (cached in model_dir). Returns (threshold record, cached)."""
    from stream_ad.calibration.calibrate import calibrate, held_out_images
    from stream_ad.fitting import fit_and_save
    from stream_ad.model import AnomalyModel, ArtefactError

    model = None
    if (model_dir / "manifest.json").is_file():
        try:
            model = AnomalyModel.load(model_dir, settings)
        except ArtefactError as exc:
            log.info("refitting the demo model: %s", exc)
    split = model.data_split if model is not None else None
    same_split = split is not None and (split["holdout_fraction"], split["seed"]) == (
        settings.calibration.holdout_fraction, settings.calibration.seed)
    if model is not None and same_split and _calibrated_as_asked(model.threshold, settings):
        return model.threshold, True
    if model is None or not same_split:
        print(f"fitting {settings.scorer.method} on the good images of {settings.data.root} but the "
              f"{settings.calibration.holdout_fraction:.0%} held out for calibration ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        model = fit_and_save(settings, model_dir)
        print(f"fitted in {time.perf_counter() - start:.1f} s: {model_dir}", file=sys.stderr, flush=True)
    # The demo's test images are what it streams: recall is shown from the verdicts, not from a calibration report.
    record = calibrate(model, settings, held_out_images(model.data_split, settings.data.root), defects=False)
    model.save_manifest(model_dir)
    return record, False


def verdicts_against_labels(path: Path) -> str:
    """The demo's test images sit in test/<good|defect>/: how the verdicts compare with those folder labels."""
    counts: Counter[tuple[bool, bool]] = Counter()
    if not path.is_file():
        return ""
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("label"):
            counts[(rec["label"] != "good", rec["verdict"] == "anomaly")] += 1
    defective = counts[(True, True)] + counts[(True, False)]
    good = counts[(False, True)] + counts[(False, False)]
    if not defective and not good:
        return ""
    return (
        f"verdicts against the folder labels: {counts[(True, True)]} of {defective} defective frames alarmed, "
        f"{counts[(False, True)]} false alarms on {good} good frames"
    )


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Fit (or load) PatchCore on the shared data, stream its test images through every stage as a camera."""
    from stream_ad.settings import JsonlSinkSettings

    demo_dir = settings.output_dir / "demo"
    model_dir = demo_dir / f"{settings.data.root.name}-{settings.scorer.method}"
    verdicts = demo_dir / "verdicts.jsonl"
    try:
        calibration, cached = demo_model(settings, model_dir)
        threshold = float(calibration["value"])
        print(f"decision threshold {threshold:.4f}, calibrated: {calibration['description']}"
              f"{' [cached model]' if cached else ''}", file=sys.stderr, flush=True)
        pipe = settings.pipeline.model_copy(deep=True)
        pipe.model = model_dir
        if getattr(args, "fps", None):
            pipe.source.fps = args.fps
        if getattr(args, "duration", None):
            pipe.duration_s = args.duration
        if getattr(args, "metrics_port", None) is not None:
            pipe.metrics.port = args.metrics_port
        elif pipe.metrics.enabled and not _port_free(pipe.metrics.host, pipe.metrics.port):
            print(f"port {pipe.metrics.port} is taken: serving /metrics on a free port instead", file=sys.stderr)
            pipe.metrics.port = 0
        pipe.sink.outputs = [JsonlSinkSettings(path=verdicts)] + [
            s for s in pipe.sink.outputs if s.kind != "jsonl"
        ]
        run_settings = settings.model_copy(update={"pipeline": pipe})
        verdicts.parent.mkdir(parents=True, exist_ok=True)
        verdicts.unlink(missing_ok=True)
        source = pipe.source.path or settings.data.root / "test"
        print(f"streaming {source} as camera {pipe.source.camera} at {pipe.source.fps or 'max'} fps through "
              f"{' -> '.join(pipe.stages)} (one process each)", file=sys.stderr, flush=True)
        summary = run_pipeline(run_settings, threshold, model_dir, verbose=args.verbose)
    except PipelineError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    quality = verdicts_against_labels(verdicts)
    if quality:
        print(quality)
    print(f"decision threshold {threshold:.4f}: {calibration['description']}")
    print(f"verdicts: {verdicts}")
    _write_summary(summary, getattr(args, "json", None), {"calibration": calibration})
    return 0 if summary.unaccounted == 0 else 1
