"""stream-ad: fit, evaluate and benchmark anomaly detectors on MVTec-AD-layout data.

Every command reads one settings model: the built-in defaults, a YAML file (-c), then STREAM_AD_* variables.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stream_ad.settings import ConfigError, Settings, load_settings

log = logging.getLogger("stream_ad")


def _model_dir(settings: Settings) -> Path:
    return settings.output_dir / f"{settings.data.root.name}-{settings.scorer.method}"


def cmd_fit(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.fitting import fit_and_save

    out = args.out or _model_dir(settings)
    model = fit_and_save(settings, out)
    assert model.data_split is not None
    print(f"model artefact: {out} (fitted on {len(model.data_split['fitted'])} good images, "
          f"{len(model.data_split['held_out'])} held out for `stream-ad calibrate`)")
    return 0


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    """Set the artefact's threshold from good images it never saw (by default the ones its fit held out)."""
    import json

    from pydantic import ValidationError

    from stream_ad.calibration.calibrate import calibrate_artefact, report
    from stream_ad.settings import CalibrationSettings, format_errors  # the settings loader's own wording
    from stream_ad.pipeline.commands import model_dir_of

    flags = {"target_fpr": args.target_fpr, "confidence": args.confidence, "pixel_target_fpr": args.pixel_target_fpr}
    overrides = {k: v for k, v in flags.items() if v is not None}
    if overrides:  # flags win over the file and the environment; validated, so a bad value names its setting
        try:
            calibration = CalibrationSettings.model_validate({**settings.calibration.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, "command line", prefix="calibration.")) from None
        settings = settings.model_copy(update={"calibration": calibration})
    model_dir = args.model or model_dir_of(settings)
    record = calibrate_artefact(settings, model_dir, args.images)
    print(f"calibrated {model_dir}: {report(record)}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.data import MVTecCategory
    from stream_ad.evaluation import evaluate
    from stream_ad.model import AnomalyModel

    if args.model is not None:
        model = AnomalyModel.load(args.model, settings)
        model_dir = args.model
    else:
        from stream_ad.fitting import fit_and_save

        model_dir = _model_dir(settings)
        model = fit_and_save(settings, model_dir)
    category = MVTecCategory(settings.data.root)
    out_json = args.json or model_dir / "evaluation.json"
    report = evaluate(model, category, out_json)
    print(f"\n{category.name} ({settings.scorer.method}, {report.extra['test_images']} test images)")
    print(report.table())
    print(f"report: {out_json}")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """The embedded default job: fit (or load) PatchCore on the shared data and stream its test images as a camera
    through the multi-process pipeline (stream_ad.pipeline.commands)."""
    from stream_ad.pipeline.commands import cmd_demo as streaming_demo

    return streaming_demo(args, settings)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.pipeline.commands import cmd_run as run_pipeline

    return run_pipeline(args, settings)


def cmd_bench_pipeline(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.pipeline.bench import run_bench as run_pipeline_bench

    return run_pipeline_bench(settings, args)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.bench.patchcore_peer import run_bench

    return run_bench(settings, args)


def cmd_bench_accel(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.bench.accel import run_bench

    return run_bench(settings, args)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive_int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-ad", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, help="pipeline/settings YAML (default: built-in demo settings)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a model on data.root/train/good and save its artefact")
    p.add_argument("--out", type=Path, help="artefact folder (default: OUTPUT_DIR/CATEGORY-METHOD)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser(
        "calibrate", help="set the model's decision threshold from held-out good images for a target false-alarm rate"
    )
    p.add_argument("--model", type=Path, help="the artefact to calibrate (default: pipeline.model or what fit wrote)")
    p.add_argument("--images", type=Path, help="a folder of good images not fitted on (default: the fit's hold-out)")
    p.add_argument("--target-fpr", type=float, help="false-alarm rate to bound (calibration.target_fpr)")
    p.add_argument("--confidence", type=float, help="confidence of the bound (calibration.confidence)")
    p.add_argument("--pixel-target-fpr", type=float, help="also a pixel threshold (calibration.pixel_target_fpr)")
    p.add_argument("--json", type=Path, help="also write the threshold record here")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("eval", help="evaluate on data.root/test: image AUROC, pixel AUROC, PRO (fits first without --model)")
    p.add_argument("--model", type=Path, help="a saved model artefact to evaluate")
    p.add_argument("--json", type=Path, help="where to write the JSON report (default: in the model folder)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "demo", help="the embedded default job: the test images as a camera through the pipeline (no camera, no GPU)"
    )
    p.add_argument("--json", type=Path, help="where to write the run summary as JSON")
    p.add_argument("--fps", type=float, help="camera rate (default pipeline.source.fps)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: all test images once)")
    p.add_argument("--metrics-port", type=int, help="port of /metrics on 127.0.0.1 (0: any free port)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run a streaming pipeline (camera -> stages as processes -> verdicts) in the foreground")
    p.add_argument("pipeline", type=Path, help="pipeline YAML (settings with a pipeline: section)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--metrics-port", type=int, help="port of /metrics (0: any free port)")
    p.add_argument("--fps", type=float, help="camera rate of a folder/video source (pipeline.source.fps)")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    p.add_argument("--summary", type=Path, help="write the run summary as JSON here")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench-pipeline", help="latency of the multi-process pipeline against in-process scoring")
    from stream_ad.pipeline.bench import add_arguments as add_pipeline_bench_arguments

    add_pipeline_bench_arguments(p)
    p.set_defaults(func=cmd_bench_pipeline)

    p = sub.add_parser(
        "bench", help="stream_ad's PatchCore side by side with anomalib's ([bench] extra); other methods alone"
    )
    p.add_argument("--ratio", type=float, default=0.0025, help="coreset ratio of the side-by-side (default 0.0025)")
    p.add_argument("--skip-peer", action="store_true", help="measure stream_ad only")
    p.add_argument("--json", type=Path, help="figures file (default: OUTPUT_DIR/bench/patchcore_peer.json, METHOD.json)")
    p.add_argument("--limit-train", type=_positive_int, metavar="N", help="fit on N images spread over train/good")
    p.add_argument("--limit-test", type=_positive_int, metavar="N", help="score N images spread over test/")
    p.add_argument(
        "--batch-sizes", type=_batch_sizes, default=(1, 16), metavar="B,B", help="inference batch sizes (default 1,16)"
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bench-accel", help="backbone paths (runtime.accelerate) side by side, the anomalib OpenVINO "
                       "peer, and the pipeline at a 100 fps camera")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 8, 32), metavar="B,B",
                   help="inference batch sizes (default 1,8,32)")
    p.add_argument("--ratio", type=float, default=0.03, help="coreset ratio of the PatchCore rows (default 0.03)")
    p.add_argument("--limit-train", type=_positive_int, default=64, metavar="N", help="fit on N train/good images (64)")
    p.add_argument("--limit-test", type=_positive_int, default=96, metavar="N", help="score N test images (96)")
    p.add_argument("--models", default="mobilenet_v2,wide_resnet50_2,pdn",
                   help="comma-separated, of mobilenet_v2, wide_resnet50_2, pdn (default all)")
    p.add_argument("--skip-peer", action="store_true", help="no anomalib OpenVINO row")
    p.add_argument("--pipeline-duration", type=float, default=20.0,
                   help="seconds of the pipeline run at a 100 fps camera (0 skips it; default 20)")
    p.add_argument("--json", type=Path, help="figures file (default: OUTPUT_DIR/bench/accel.json)")
    p.set_defaults(func=cmd_bench_accel)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config)
        return args.func(args, settings)
    except ConfigError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - known failure kinds below print one line, not a traceback
        from stream_ad.backbones import BackboneError
        from stream_ad.calibration import CalibrationError
        from stream_ad.data import DatasetError
        from stream_ad.model import ArtefactError

        if isinstance(exc, (BackboneError, CalibrationError, DatasetError, ArtefactError)):
            print(f"stream-ad: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
