"""`stream-ad run PIPELINE.yaml`: the pipeline in the foreground until its sources end or SIGTERM / Ctrl-C; SIGHUP
reloads the file (cameras added, removed or given another model while the others run on).

pipeline.model (or a camera's own `model`) names a model artefact (served with torch) or a runtime artefact
(`stream-ad export`: served with OpenVINO alone). With a runtime artefact nothing on this path imports torch
(tests/integration/pipeline/test_line.py runs it with torch made unimportable); the model artefact's modules are
imported only for a model artefact."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.run import run_pipeline
from stream_ad.pipeline.served import check_console_models, serve_cameras
from stream_ad.pipeline.summary import RunSummary
from stream_ad.settings import ConfigError, Settings, load_settings


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

    def load() -> Settings:
        # Also what a reload (SIGHUP) reads: the file as it is now, with the same command-line overrides.
        if fps is not None and load_settings(pipeline_file).pipeline.cameras:
            raise ConfigError("--fps sets pipeline.source.fps; with pipeline.cameras set the fps of each camera")
        return load_settings(pipeline_file, **({"pipeline": pipe} if pipe else {}))

    settings = load()
    try:
        served = serve_cameras(settings)
        for model in served.models:
            spec = model.spec
            cameras = ", ".join(cam for cam, key in served.camera_models.items() if key == spec.key)
            shown = f"{model.link}{f' -> {spec.model_dir}' if spec.model_dir != model.link.absolute() else ''}"
            prefix = f"model {spec.key} (cameras {cameras})" if len(served.models) > 1 else "model"
            print(f"{prefix} {shown}: {model.what}", file=sys.stderr, flush=True)
            print(f"{prefix} decision threshold {spec.threshold:.4f} (from {model.threshold_origin})",
                  file=sys.stderr, flush=True)
        # The operator's console runs beside the stages, as a module the pipeline only starts (stream_ad.console).
        console = ("stream_ad.console",) if settings.pipeline.console.enabled else ()
        check_console_models(settings, served)
        summary = run_pipeline(settings, served, verbose=verbose, services=console, reload=load)
    except PipelineError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    write_summary(summary, summary_json)
    if summary.failure is not None:  # non-zero: systemd's Restart=on-failure starts it again
        print(f"stream-ad: {summary.failure}", file=sys.stderr)
        return 2
    return 0 if summary.unaccounted == 0 else 1
