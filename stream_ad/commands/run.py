"""`stream-ad run PIPELINE.yaml`: the pipeline in the foreground until its source ends or SIGTERM / Ctrl-C."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stream_ad.artefact import ArtefactError, describe, read_manifest, serving_model_dir, serving_settings
from stream_ad.calibration.shift import GoodScores
from stream_ad.calibration.thresholds import checked_threshold
from stream_ad.commands.checked_settings import load_checked_settings
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.run import run_pipeline
from stream_ad.pipeline.summary import RunSummary
from stream_ad.scorers import scorer_class
from stream_ad.settings import ConfigError, Settings


def resolve_threshold(settings: Settings, model_dir: Path) -> tuple[float, str]:
    """The decide stage's threshold: the model artefact's, else pipeline.decide.threshold, else an error; refused
    (CalibrationError) where it cannot decide (checked_threshold: not finite, negative for a method whose scores are
    not, far outside its calibration's good scores)."""
    try:
        manifest = read_manifest(model_dir)
    except ArtefactError as exc:
        raise PipelineError(
            f"no model artefact at {model_dir} ({exc}): fit one with "
            f"`stream-ad -c PIPELINE.yaml fit --out {model_dir}` or set pipeline.model"
        ) from None
    nonnegative = scorer_class(manifest.method).nonnegative_scores
    if manifest.threshold_value is not None:
        origin = f"model artefact {model_dir}"
        good = GoodScores.from_record(manifest.threshold)
        return checked_threshold(manifest.threshold_value, origin, good, nonnegative), origin
    if settings.pipeline.decide.threshold is not None:
        origin = "setting pipeline.decide.threshold"
        return checked_threshold(settings.pipeline.decide.threshold, origin, None, nonnegative), origin
    raise ConfigError(
        f"no decision threshold: the model artefact {model_dir} has no 'threshold' (manifest.json) and "
        "pipeline.decide.threshold is not set; calibrate the model or set pipeline.decide.threshold"
    )


def write_summary(summary: RunSummary, path: Path | None, extra: dict[str, Any] | None = None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**summary.to_json(), **(extra or {})}, indent=2) + "\n")


def run(
    pipeline_file: Path,
    *,
    duration_s: float | None = None,
    metrics_port: int | None = None,
    fps: float | None = None,
    progress: bool = True,
    summary_json: Path | None = None,
    verbose: bool = False,
) -> int:
    pipe: dict[str, Any] = {}
    if duration_s is not None:
        pipe["duration_s"] = duration_s
    if metrics_port is not None:
        pipe["metrics"] = {"port": metrics_port}
    if not progress:
        pipe["progress"] = False
    if fps is not None:
        pipe["source"] = {"fps": fps}
    settings = load_checked_settings(pipeline_file, **({"pipeline": pipe} if pipe else {}))
    try:
        link = serving_model_dir(settings)
        # Resolved once: a symlink switched while the line runs takes effect at the next start, for every stage at
        # once (a stage restarted meanwhile still loads the artefact whose threshold decide uses).
        model_dir = link.resolve()
        threshold, origin = resolve_threshold(settings, model_dir)
        settings = serving_settings(model_dir, settings)
        manifest = read_manifest(model_dir)
        rt = settings.runtime
        print(f"model {link}{f' -> {model_dir}' if model_dir != link.absolute() else ''}: "
              f"{describe(manifest)}; runs on device {rt.device}, accelerate {rt.accelerate}, "
              f"precision {rt.precision}", file=sys.stderr, flush=True)
        print(f"decision threshold {threshold:.4f} (from {origin})", file=sys.stderr, flush=True)
        # The good scores the artefact's threshold was calibrated on, for the start-up check (none with a set one).
        good_scores = GoodScores.from_record(manifest.threshold)
        # The operator's console runs beside the stages, as a module the pipeline only starts (stream_ad.console).
        console = ("stream_ad.console",) if settings.pipeline.console.enabled else ()
        summary = run_pipeline(settings, threshold, model_dir, good_scores, verbose=verbose, services=console)
    except PipelineError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    write_summary(summary, summary_json)
    if summary.failure is not None:  # non-zero: systemd's Restart=on-failure starts it again
        print(f"stream-ad: {summary.failure}", file=sys.stderr)
        return 2
    return 0 if summary.unaccounted == 0 else 1
