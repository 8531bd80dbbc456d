"""`stream-ad demo`, the embedded default job: a short `stream-ad tune` step on the shared data, then fit (or load)
PatchCore on it, calibrate it on the fit's hold-out, and stream its test images as a camera through every stage
process."""

from __future__ import annotations

import json
import logging
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from stream_ad.artefact import ArtefactError, fit_differences, has_artefact, load_model, model_dir_name, save_threshold
from stream_ad.calibration.calibrate import METHOD, calibrate_fit
from stream_ad.commands.fit import fit_and_save
from stream_ad.commands.run import write_summary
from stream_ad.commands.tune import Tuned, tune_line
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.run import run_pipeline
from stream_ad.pipeline.served import serve_one
from stream_ad.settings import CalibrationSettings, JsonlSinkSettings, Settings
from stream_ad.tuning import Candidate, default_candidate

log = logging.getLogger(__name__)

# The demo's tune step: the default against one candidate on a sample of the good images, with synthetic defects (a
# new line has no defect pictures), so it adds seconds, not the minutes of a full `stream-ad tune`.
TUNE_GOOD = 40
TUNE_SIZE = 320
# The demo cross-fits its calibration unless calibration.folds is set: it fits 5 models instead of one (about a
# minute more on 2 cores) and catches more defects at the same false-alarm bound (calibration/README.md).
DEMO_FOLDS = 4


def _calibrated_as_asked(threshold: Any, settings: Settings) -> bool:
    cfg = settings.calibration
    return isinstance(threshold, dict) and threshold.get("method") == METHOD and "good_scores" in threshold and all(
        threshold.get(key) == getattr(cfg, key) for key in ("target_fpr", "confidence")
    ) and (threshold.get("pixel") or {}).get("target_fpr") == cfg.pixel_target_fpr


def _split_as_asked(split: dict[str, Any] | None, cfg: CalibrationSettings) -> bool:
    if split is None or split["seed"] != cfg.seed:
        return False
    if cfg.folds:
        return split.get("cross_fit", {}).get("folds") == cfg.folds
    return "cross_fit" not in split and split["holdout_fraction"] == cfg.holdout_fraction


def demo_model(settings: Settings, model_dir: Path) -> tuple[dict[str, Any], bool]:
    """A PatchCore fitted and calibrated as `stream-ad fit` + `stream-ad calibrate` make it (cached in model_dir):
    on train/good minus the calibration hold-out and on that hold-out, or cross-fitted (calibration.folds). Returns
    (threshold record, cached)."""
    model = None
    if has_artefact(model_dir):
        try:
            changed = fit_differences(model_dir, settings)  # a cache: training-only settings count too
            if changed:
                log.info("refitting the demo model: %s", "; ".join(changed))
            else:
                model = load_model(model_dir, settings)
        except ArtefactError as exc:
            log.info("refitting the demo model: %s", exc)
    same_split = model is not None and _split_as_asked(model.data_split, settings.calibration)
    if model is not None and same_split and _calibrated_as_asked(model.threshold, settings):
        return model.threshold, True  # type: ignore[return-value] - _calibrated_as_asked: a record
    if model is None or not same_split:
        cfg = settings.calibration
        how = (f"all of them, {cfg.folds} folds cross-fitted for calibration (fits {cfg.folds + 1} models)"
               if cfg.folds else f"but the {cfg.holdout_fraction:.0%} held out for calibration")
        print(f"fitting {settings.scorer.method} on the good images of {settings.data.root}, {how} ...",
              file=sys.stderr, flush=True)
        start = time.perf_counter()
        model = fit_and_save(settings, model_dir)
        print(f"fitted in {time.perf_counter() - start:.1f} s: {model_dir}", file=sys.stderr, flush=True)
    # The demo's test images are what it streams: recall is shown from the verdicts, not from a calibration report.
    record = calibrate_fit(model, settings, defects=False)
    save_threshold(model, model_dir)
    return record, False


def demo_tune(settings: Settings, out: Path, config: Path | None) -> Tuned:
    """A short tune: the settings' own configuration against resize TUNE_SIZE at their coreset ratio, on TUNE_GOOD
    good images and synthetic defects. It shows what `stream-ad tune` writes; the demo streams the settings as
    given, whatever it chose."""
    default = default_candidate(settings)
    print(f"tuning (short demo step: {default.name} against resize {TUNE_SIZE} on {TUNE_GOOD} good images and "
          f"synthetic defects) ...", file=sys.stderr, flush=True)
    tuned = tune_line(settings, out, config=config, synthetic=True, max_good=TUNE_GOOD,
                      candidates=[Candidate("resize", TUNE_SIZE, default.coreset_ratio)])
    print(f"tuned in {tuned.seconds:.1f} s: {tuned.chosen.name} ({tuned.why})", file=sys.stderr, flush=True)
    return tuned


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
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def demo(
    settings: Settings,
    *,
    fps: float | None = None,
    duration_s: float | None = None,
    metrics_port: int | None = None,
    summary_json: Path | None = None,
    verbose: bool = False,
    config: Path | None = None,
) -> int:
    """`config`: the settings file `settings` were read from, which the tune step's pipeline.yaml extends."""
    if "folds" not in settings.calibration.model_fields_set:
        settings = settings.model_copy(update={"calibration": settings.calibration.model_copy(
            update={"folds": DEMO_FOLDS})})
    demo_dir = settings.output_dir / "demo"
    model_dir = demo_dir / model_dir_name(settings)
    verdicts = demo_dir / "verdicts.jsonl"
    tuned = demo_tune(settings, demo_dir / "tune", config)
    try:
        calibration, cached = demo_model(settings, model_dir)
        threshold = float(calibration["value"])
        print(f"decision threshold {threshold:.4f}, calibrated: {calibration['description']}"
              f"{' [cached model]' if cached else ''}", file=sys.stderr, flush=True)
        pipe = settings.pipeline.model_copy(deep=True)
        pipe.model = model_dir
        if fps:
            pipe.source.fps = fps
        if duration_s:
            pipe.duration_s = duration_s
        # The start-up check assumes a line of mostly good parts; the demo's camera streams data.root/test, mostly
        # defective (test/<defect> first), which it cannot tell from a camera that changes the images.
        pipe.calibration_check.enabled = False
        if metrics_port is not None:
            pipe.metrics.port = metrics_port
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
        summary = run_pipeline(run_settings, serve_one(run_settings, model_dir, threshold), verbose=verbose)
    except PipelineError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    print(summary.table())
    quality = verdicts_against_labels(verdicts)
    if quality:
        print(quality)
    print(f"decision threshold {threshold:.4f}: {calibration['description']}")
    print(f"verdicts: {verdicts}")
    print(f"tune (short demo step, {tuned.seconds:.0f} s): {tuned.chosen.name}; settings {tuned.pipeline}, report "
          f"{tuned.report_md} (`stream-ad tune --out DIR` tries the whole grid)")
    write_summary(summary, summary_json, {"calibration": calibration})
    return 0 if summary.unaccounted == 0 else 1
