"""`stream-ad calibrate`: set the artefact's threshold from good images it never saw (by default its fit's hold-out,
else a folder given with --good)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from stream_ad.artefact import serving_model_dir
from stream_ad.calibration.calibrate import calibrate_artefact, report
from stream_ad.settings import CalibrationSettings, ConfigError, Settings, format_errors


def calibrate(
    settings: Settings,
    *,
    model: Path | None = None,
    good: Path | None = None,
    target_fpr: float | None = None,
    confidence: float | None = None,
    pixel_target_fpr: float | None = None,
    json_out: Path | None = None,
) -> int:
    flags = {"target_fpr": target_fpr, "confidence": confidence, "pixel_target_fpr": pixel_target_fpr}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if overrides:  # flags win over the file and the environment; validated, so a bad value names its setting
        try:
            # exclude_unset: only what was given counts as given (the rest stays the artefact's)
            calibration = CalibrationSettings.model_validate(
                {**settings.calibration.model_dump(exclude_unset=True), **overrides})
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, "command line", prefix="calibration.")) from None
        settings = settings.model_copy(update={"calibration": calibration})
    model_dir = model or serving_model_dir(settings)
    record = calibrate_artefact(settings, model_dir, good)
    print(f"calibrated {model_dir}: {report(record)}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(record, indent=2) + "\n")
    return 0
