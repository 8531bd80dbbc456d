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

from stream_ad.config import ConfigError, Settings, load_settings
from stream_ad.pipeline.supervisor import PipelineError, RunSummary, Supervisor

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


def run_pipeline(settings: Settings, threshold: float, model_dir: Path, *, verbose: bool = False,
                 out: Any = None) -> RunSummary:
    sup = Supervisor(settings, threshold=threshold, model_dir=model_dir, verbose=verbose, out=out)
    sup.preflight()
    sup.install_signals()
    return sup.run()


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

HOLD_OUT_EVERY = 5  # every 5th good training image is kept out of fitting to set the demo's provisional threshold


def demo_model(settings: Settings, model_dir: Path) -> tuple[float, int, bool]:
    """A PatchCore fitted on 4/5 of train/good and a provisional threshold from the other 1/5 (cached in model_dir).

    Returns (threshold, held-out images, loaded from cache)."""
    from stream_ad.data import MVTecCategory
    from stream_ad.model import AnomalyModel, ArtefactError

    if (model_dir / "manifest.json").is_file():
        try:
            model = AnomalyModel.load(model_dir, settings)
            t = model.threshold
            if isinstance(t, dict) and t.get("provisional") and threshold_value(t) is not None:
                return float(t["value"]), int(t.get("held_out", 0)), True
        except ArtefactError as exc:
            log.info("refitting the demo model: %s", exc)
    train = [s.path for s in MVTecCategory(settings.data.root).train()]
    held_out = train[HOLD_OUT_EVERY - 1 :: HOLD_OUT_EVERY]
    fit_on = [p for p in train if p not in set(held_out)]
    print(f"fitting {settings.scorer.method} on {len(fit_on)} good images of {settings.data.root} "
          f"({len(held_out)} held out for the threshold) ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    model = AnomalyModel(settings)
    model.fit(fit_on)
    scores = [float(s) for pred in model.predict_files(held_out) for s in pred.scores]
    threshold = max(scores)
    model.threshold = {
        "value": threshold,
        "method": f"max score of {len(held_out)} good training images held out of fitting",
        "provisional": True,
        "held_out": len(held_out),
    }
    model.save(model_dir)
    print(f"fitted in {time.perf_counter() - start:.1f} s: {model_dir}", file=sys.stderr, flush=True)
    return threshold, len(held_out), False


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
    from stream_ad.config import SinkSettings

    demo_dir = settings.output_dir / "demo"
    model_dir = demo_dir / f"{settings.data.root.name}-{settings.scorer.method}"
    verdicts = demo_dir / "verdicts.jsonl"
    try:
        threshold, held_out, cached = demo_model(settings, model_dir)
        print(
            f"decision threshold {threshold:.4f}: PROVISIONAL, the highest score of {held_out} good training images "
            f"held out of fitting (no calibration yet){' [cached model]' if cached else ''}",
            file=sys.stderr, flush=True,
        )
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
        pipe.sink.outputs = [SinkSettings(kind="jsonl", path=verdicts)] + [
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
        print(quality + f" (provisional threshold {threshold:.4f})")
    print(f"verdicts: {verdicts}")
    _write_summary(summary, getattr(args, "json", None), {"provisional_threshold": threshold})
    return 0 if summary.unaccounted == 0 else 1
