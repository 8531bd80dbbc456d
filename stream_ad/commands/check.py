"""`stream-ad check PIPELINE.yaml`: validate a pipeline without starting it. One line per finding: the settings
(the method's params included), each camera's model artefact (present, intact by its sha256 sums, fitted with
settings these agree with, a threshold within its calibration's range), each camera's source, the endpoints the stages
bind, their CURVE keys, the paths the run writes."""

from __future__ import annotations

from pathlib import Path

from stream_ad.artefact import ArtefactError, serving_model_dir, serving_settings, verify_artefact
from stream_ad.calibration import CalibrationError
from stream_ad.commands.checked_settings import load_checked_settings
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.preflight import (
    Finding,
    check_endpoints,
    check_keys,
    check_paths,
    check_sources,
)
from stream_ad.pipeline.served import resolve_threshold
from stream_ad.settings import ConfigError, Settings


def check_models(settings: Settings) -> list[Finding]:
    """One finding per artefact the cameras name (pipeline.model for those that name none)."""
    named = [cam.model or serving_model_dir(settings) for _, cam in settings.pipeline.camera_sections()]
    return [check_model(settings, model_dir) for model_dir in dict.fromkeys(named)]


def check_model(settings: Settings, model_dir: Path) -> Finding:
    try:
        serving_settings(model_dir, settings)  # the model settings it names agree with the artefact's
        verify_artefact(model_dir)  # every file against its sum, no NaN in its tensors
        threshold, origin = resolve_threshold(settings, model_dir)
    except (ArtefactError, CalibrationError, ConfigError, PipelineError) as exc:
        return Finding("model", False, str(exc))
    return Finding("model", True,
                   f"{model_dir} is intact and agrees with these settings; threshold {threshold:.4g} from {origin}")


def pipeline_findings(pipeline_file: Path) -> list[Finding]:
    try:
        settings = load_checked_settings(pipeline_file)
    except ConfigError as exc:  # nothing else can be checked without settings
        return [Finding("settings", False, " ".join(line.strip() for line in str(exc).splitlines()))]
    return [Finding("settings", True, f"{pipeline_file} is valid (method {settings.scorer.method})"),
            *check_models(settings), *check_sources(settings), *check_endpoints(settings), *check_keys(settings),
            *check_paths(settings)]


def check(pipeline_file: Path) -> int:
    """Print the findings; 0 when all are good, 2 otherwise."""
    findings = pipeline_findings(pipeline_file)
    for finding in findings:
        print(finding.line())
    return 0 if all(f.ok for f in findings) else 2
