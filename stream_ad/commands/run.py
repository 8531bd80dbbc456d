"""`stream-ad run PIPELINE.yaml`: the pipeline in the foreground until its source ends or SIGTERM / Ctrl-C.

pipeline.model names a model artefact (served with torch) or a runtime artefact (`stream-ad export`: served with
OpenVINO alone). With a runtime artefact nothing on this path imports torch (tests/integration/pipeline/test_line.py
runs it with torch made unimportable); the model artefact's modules are imported only for a model artefact."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stream_ad.calibration.shift import GoodScores
from stream_ad.calibration.thresholds import checked_threshold
from stream_ad.errors import ArtefactError
from stream_ad.line.artefact import (
    describe_runtime,
    is_runtime_artefact,
    read_runtime_manifest,
    runtime_serving_settings,
    threshold_value,
)
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.run import run_pipeline
from stream_ad.pipeline.summary import RunSummary
from stream_ad.settings import ConfigError, Settings, load_settings
from stream_ad.settings.serving import serving_model_dir


def _threshold_record(model_dir: Path) -> tuple[dict[str, Any] | float | None, bool]:
    """The artefact's calibration record, and whether its method's scores are never negative."""
    if is_runtime_artefact(model_dir):
        runtime = read_runtime_manifest(model_dir)
        return runtime.threshold, runtime.nonnegative_scores
    from stream_ad.artefact import read_manifest
    from stream_ad.scorers import scorer_class

    manifest = read_manifest(model_dir)
    return manifest.threshold, scorer_class(manifest.method).nonnegative_scores


def resolve_threshold(settings: Settings, model_dir: Path) -> tuple[float, str]:
    """The decide stage's threshold: the model artefact's, else pipeline.decide.threshold, else an error; refused
    (CalibrationError) where it cannot decide (checked_threshold: not finite, negative for a method whose scores are
    not, far outside its calibration's good scores)."""
    try:
        record, nonnegative = _threshold_record(model_dir)
    except ArtefactError as exc:
        raise PipelineError(
            f"no model artefact at {model_dir} ({exc}): fit one with "
            f"`stream-ad -c PIPELINE.yaml fit --out {model_dir}` or set pipeline.model"
        ) from None
    value = threshold_value(record)
    if value is not None:
        origin = f"{'runtime' if is_runtime_artefact(model_dir) else 'model'} artefact {model_dir}"
        return checked_threshold(value, origin, GoodScores.from_record(record), nonnegative), origin
    if settings.pipeline.decide.threshold is not None:
        origin = "setting pipeline.decide.threshold"
        return checked_threshold(settings.pipeline.decide.threshold, origin, None, nonnegative), origin
    raise ConfigError(
        f"no decision threshold: the artefact {model_dir} has no 'threshold' (manifest.json) and "
        "pipeline.decide.threshold is not set; calibrate the model or set pipeline.decide.threshold"
    )


def _serving(model_dir: Path, given: Settings) -> tuple[Settings, str, dict[str, Any] | float | None]:
    """The settings the artefact runs with, what it computes and how it runs (one line), its calibration record."""
    if is_runtime_artefact(model_dir):
        runtime = read_runtime_manifest(model_dir)
        what = f"{describe_runtime(runtime)}; runs on the CPU with OpenVINO, without torch"
        return runtime_serving_settings(model_dir, runtime, given), what, runtime.threshold
    from stream_ad.artefact import describe, read_manifest, serving_settings
    from stream_ad.scorers import scorer_params

    scorer_params(given.scorer)  # ConfigError naming scorer.method or scorer.params.KEY
    settings = serving_settings(model_dir, given)
    manifest = read_manifest(model_dir)
    rt = settings.runtime
    what = f"{describe(manifest)}; runs on device {rt.device}, accelerate {rt.accelerate}, precision {rt.precision}"
    return settings, what, manifest.threshold


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
    settings = load_settings(pipeline_file, **({"pipeline": pipe} if pipe else {}))
    try:
        link = serving_model_dir(settings)
        # Resolved once: a symlink switched while the line runs takes effect at the next start, for every stage at
        # once (a stage restarted meanwhile still loads the artefact whose threshold decide uses).
        model_dir = link.resolve()
        threshold, origin = resolve_threshold(settings, model_dir)
        settings, what, record = _serving(model_dir, settings)
        print(f"model {link}{f' -> {model_dir}' if model_dir != link.absolute() else ''}: {what}",
              file=sys.stderr, flush=True)
        print(f"decision threshold {threshold:.4f} (from {origin})", file=sys.stderr, flush=True)
        # The good scores the artefact's threshold was calibrated on, for the start-up check (none with a set one).
        good_scores = GoodScores.from_record(record)
        # The operator's console runs beside the stages, as a module the pipeline only starts (stream_ad.console).
        console = ("stream_ad.console",) if settings.pipeline.console.enabled else ()
        if console and is_runtime_artefact(model_dir):
            # Its page reads the model artefact (calibration, teaching): not yet a runtime artefact's.
            raise PipelineError(f"pipeline.console is not available with a runtime artefact ({model_dir}) yet: "
                                "serve the model artefact it was exported from, or set pipeline.console.enabled: "
                                "false")
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
