"""stream-ad: fit, calibrate, evaluate and run anomaly detectors for production-line cameras; score pictures with them.

Every command reads one settings model: the built-in defaults, a YAML file (-c), then STREAM_AD_* variables. This
module only parses arguments into the use cases of stream_ad.commands. The benchmarks are apart: `python -m
benchmarks --help` in a checkout.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from stream_ad.runtime.logs import configure_logging
from stream_ad.runtime.quantise import Int8Scope
from stream_ad.settings import ConfigError, Settings, load_settings

log = logging.getLogger("stream_ad")

Command = Callable[[argparse.Namespace, Settings], int]
# What the `fit` extra installs and the torch-free `line` install lacks.
FIT_ONLY = frozenset({"torch", "torchvision", "faiss", "sklearn", "safetensors", "tqdm"})


def _fit(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.fit import fit

    return fit(settings, args.out, good=args.good)


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names, blanks dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _tune(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.tune import tune

    return tune(settings, args.out, config=args.config, good=args.good, defects=args.defects, masks=args.masks,
                synthetic=args.synthetic, budget_min=args.budget_min, confidence=args.confidence,
                max_good=args.max_good, max_frame_ms=args.max_frame_ms, synthetic_kinds=args.synthetic_kinds)


def _calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.calibrate import calibrate

    return calibrate(settings, model=args.model, good=args.good, target_fpr=args.target_fpr,
                     confidence=args.confidence, pixel_target_fpr=args.pixel_target_fpr, json_out=args.json)


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.evaluate import evaluate

    return evaluate(settings, model=args.model, json_out=args.json, good=args.good, defects=args.defects,
                    masks=args.masks)


def _predict(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.predict import predict

    return predict(settings, args.paths, model=args.model, out=args.out)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.demo import demo

    return demo(settings, fps=args.fps, duration_s=args.duration, metrics_port=args.metrics_port,
                summary_json=args.json, verbose=args.verbose, config=args.config)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.export import export

    return export(settings, args.model, args.out, int8=None if args.int8 is None else Int8Scope(args.int8),
                  calibration_images=args.calibration_images)


def _pipeline_file(args: argparse.Namespace) -> Path:
    if args.config is not None and Path(args.config).resolve() != Path(args.pipeline).resolve():
        raise ConfigError(f"`stream-ad {args.command}` takes its settings from PIPELINE.yaml; leave out -c/--config")
    return args.pipeline


def _run(args: argparse.Namespace, _: Settings) -> int:
    from stream_ad.commands.run import run

    return run(_pipeline_file(args), duration_s=args.duration, metrics_port=args.metrics_port, fps=args.fps,
               progress=not args.no_progress, summary_json=args.summary, verbose=args.verbose)


def _teach(args: argparse.Namespace, _: Settings) -> int:
    from stream_ad.commands.teach import teach_list, teach_rollback

    return teach_list(args.model) if args.action == "list" else teach_rollback(args.model, args.to)


def _global_options(parser: argparse.ArgumentParser, config: object, verbose: object) -> argparse.ArgumentParser:
    parser.add_argument("-c", "--config", type=Path, default=config,
                        help="pipeline/settings YAML (default: built-in demo settings)")
    parser.add_argument("-v", "--verbose", action="store_true", default=verbose, help="debug logging")
    return parser


def _check(args: argparse.Namespace, _: Settings) -> int:
    from stream_ad.commands.check import check

    return check(_pipeline_file(args))


def _config_show(args: argparse.Namespace, settings: Settings) -> int:
    from stream_ad.commands.config_show import config_show

    return config_show(settings, args.config)


def _record(args: argparse.Namespace, _: Settings) -> int:
    from stream_ad.commands.record import record

    return record(_pipeline_file(args), frames=args.frames, out=args.out, timeout_s=args.timeout)


def _keys(args: argparse.Namespace, _: Settings) -> int:
    from stream_ad.commands.keys import keys

    return keys(args.folder)


def build_parser() -> argparse.ArgumentParser:
    parser = _global_options(argparse.ArgumentParser(
        prog="stream-ad", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter), None, False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a model on a folder of good images (or data.root/train/good), save it")
    p.add_argument("--good", type=Path, help="a folder of good images, searched recursively (default: "
                   "data.root/train/good)")
    p.add_argument("--out", type=Path, help="artefact folder (default: OUTPUT_DIR/CATEGORY-METHOD; CATEGORY: the "
                   "--good folder's name or data.root's)")
    p.set_defaults(func=_fit)

    p = sub.add_parser(
        "tune", help="choose preprocessing, method, coreset ratio and feature taps from the line's good images (held "
        "out) and labelled or synthetic defects; write the best as a pipeline YAML and a report of every candidate")
    p.add_argument("--good", type=Path, help="a folder of good images, searched recursively (default: "
                   "data.root/train/good)")
    p.add_argument("--defects", type=Path, help="labelled defective images, a subfolder per type (default: "
                   "data.root/test/<defect> without --good; none: synthetic defects)")
    p.add_argument("--masks", type=Path, help="their masks, at the same places (NAME_mask.png or NAME.png): pixel "
                   "AUROC in the report")
    p.add_argument("--synthetic", action="store_true", help="rank on synthetic defects even where labelled ones "
                   "exist")
    p.add_argument("--synthetic-kinds", type=_names, metavar="KIND[,KIND]", help="the synthetic defects' kinds, "
                   "made in turn (default: all: cut_paste,scratch,perlin; README, \"Tuning to a line\")")
    p.add_argument("--budget-min", type=float, default=20.0, help="launch no candidate expected to end after this "
                   "many minutes (default 20; the first, the settings' own configuration, always runs)")
    p.add_argument("--confidence", type=float, default=0.95, help="leave the settings' own configuration only for a "
                   "candidate whose image AUROC (pixel AUROC where image AUROC saturates) beats it at this confidence "
                   "(a paired bootstrap; default 0.95)")
    p.add_argument("--max-frame-ms", type=float, help="choose no candidate that took longer than this to score a "
                   "frame (the line's frame interval; default: no limit; the settings' own configuration stays "
                   "eligible)")
    p.add_argument("--max-good", type=int, help="tune on at most this many of the good images, a seeded sample "
                   "(default: all)")
    p.add_argument("--out", type=Path, required=True, help="folder for pipeline.yaml and tune_report.json/.md")
    p.set_defaults(func=_tune)

    p = sub.add_parser(
        "calibrate", help="set the model's decision threshold from held-out good images for a target false-alarm rate"
    )
    p.add_argument("--model", type=Path, help="the artefact to calibrate (default: pipeline.model or what fit wrote)")
    p.add_argument("--good", "--images", dest="good", type=Path,
                   help="a folder of good images not fitted on (default: the fit's hold-out)")
    p.add_argument("--target-fpr", type=float, help="false-alarm rate to bound (calibration.target_fpr)")
    p.add_argument("--confidence", type=float, help="confidence of the bound (calibration.confidence)")
    p.add_argument("--pixel-target-fpr", type=float, help="also a pixel threshold (calibration.pixel_target_fpr)")
    p.add_argument("--json", type=Path, help="also write the threshold record here")
    p.set_defaults(func=_calibrate)

    p = sub.add_parser(
        "eval", help="image AUROC, pixel AUROC, PRO on --good/--defects folders or data.root/test (fits first "
        "without --model)"
    )
    p.add_argument("--model", type=Path, help="a saved model artefact to evaluate")
    p.add_argument("--good", type=Path, help="a folder of good test images (with --defects and --model)")
    p.add_argument("--defects", type=Path, help="a folder of defective test images, a subfolder per defect type")
    p.add_argument("--masks", type=Path, help="their masks, at the same places (NAME_mask.png or NAME.png): pixel "
                   "AUROC and PRO; without them image AUROC only")
    p.add_argument("--json", type=Path, help="where to write the JSON report (default: in the model folder)")
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        "predict", help="score image files or folders with a saved model: a line per image, overlays and a CSV"
    )
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="an image file or a folder (recursively)")
    p.add_argument("--model", type=Path, help="the artefact (default: pipeline.model or what fit wrote)")
    p.add_argument("--out", type=Path, help="a new folder for the overlays and predictions.csv "
                   "(default: OUTPUT_DIR/predict/TIMESTAMP)")
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "export", help="write a runtime artefact: the model's whole scoring path as one OpenVINO graph, served by "
        "`stream-ad run` without torch (the `line` install)")
    p.add_argument("model", type=Path, help="the model artefact to export")
    p.add_argument("--out", type=Path, required=True, help="a new (or empty) folder for the runtime artefact")
    p.add_argument("--int8", nargs="?", const=Int8Scope.ALL.value, choices=[s.value for s in Int8Scope],
                   metavar="SCOPE",
                   help="quantise the graph to INT8 (NNCF, the `fit` install) on good images; the threshold is set "
                   "again on INT8 scores. SCOPE all (the default): the networks and PatchCore's search; search: "
                   "PatchCore's search alone, scores and maps staying float32's but where its candidates miss")
    p.add_argument("--calibration-images", type=Path, metavar="DIR", help="good images to quantise on (recursively; "
                   "default: the model's held-out images)")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "demo", help="the embedded default job: the test images as a camera through the pipeline (no camera, no GPU)"
    )
    p.add_argument("--json", type=Path, help="where to write the run summary as JSON")
    p.add_argument("--fps", type=float, help="camera rate (default pipeline.source.fps)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: all test images once)")
    p.add_argument("--metrics-port", type=int, help="port of /metrics on 127.0.0.1 (0: any free port)")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "run", help="run a streaming pipeline (camera -> stages as processes -> verdicts) in the foreground"
    )
    p.add_argument("pipeline", type=Path, help="pipeline YAML (settings with a pipeline: section)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--metrics-port", type=int, help="port of /metrics (0: any free port)")
    p.add_argument("--fps", type=float, help="camera rate of a folder/video source (pipeline.source.fps)")
    p.add_argument("--no-progress", action="store_true", help="no live progress line")
    p.add_argument("--summary", type=Path, help="write the run summary as JSON here")
    p.set_defaults(func=_run, own_settings=True)

    p = sub.add_parser("check", help="validate a pipeline file without starting it: settings, model, endpoints, paths")
    p.add_argument("pipeline", type=Path, help="pipeline YAML")
    p.set_defaults(func=_check, own_settings=True)

    config = sub.add_parser("config", help="inspect the settings").add_subparsers(dest="action", required=True)
    p = config.add_parser("show", help="the effective settings as YAML, each key with where its value came from")
    p.set_defaults(func=_config_show)

    p = sub.add_parser(
        "record", help="save frames as the pipeline's camera delivers them (lossless PNG + index.json), to calibrate on"
    )
    p.add_argument("pipeline", type=Path, help="pipeline YAML whose pipeline.source is recorded")
    p.add_argument("--frames", type=int, required=True, help="how many frames to record")
    p.add_argument("--out", type=Path, required=True, help="a new (or empty) folder for the frames")
    p.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)")
    p.set_defaults(func=_record, own_settings=True)

    p = sub.add_parser("keys", help="make the CURVE key pairs a tcp pipeline needs (pipeline.keys_dir), readable by "
                       "this user only")
    p.add_argument("folder", type=Path, metavar="DIR", help="where to write them (made 0700 if missing)")
    p.set_defaults(func=_keys)

    teach = sub.add_parser("teach", help="the frames operators taught a model (the console's \"good\" button)"
                           ).add_subparsers(dest="action", required=True)
    p = teach.add_parser("list", help="the artefact's versions: who taught which frame when")
    p.add_argument("model", type=Path, help="model artefact folder")
    p.set_defaults(func=_teach)
    p = teach.add_parser("rollback", help="undo teachings (the last one, or back to --to VERSION; 0: as fitted)")
    p.add_argument("model", type=Path, help="model artefact folder")
    p.add_argument("--to", type=int, help="the version to go back to (default: the one before the last teaching)")
    p.set_defaults(func=_teach)

    # -c and -v after any subcommand too; SUPPRESS there keeps a subparser from overwriting a value given before it.
    for action in (sub, config, teach):
        for subparser in action.choices.values():
            _global_options(subparser, argparse.SUPPRESS, argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, "%(asctime)s %(levelname)s %(name)s: %(message)s")
    from stream_ad.commands.checked_settings import load_checked_settings
    from stream_ad.commands.errors import USER_ERRORS

    # A command on PIPELINE.yaml reads and checks its settings itself (`run` of a runtime artefact without the scorer
    # registry, so without torch); the others get them checked here.
    load = load_settings if getattr(args, "own_settings", False) else load_checked_settings
    try:
        return args.func(args, load(args.config))
    except (ConfigError, *USER_ERRORS) as exc:  # known failure kinds print one line, not a traceback
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] not in FIT_ONLY:
            raise
        print(f"stream-ad: `stream-ad {args.command}` needs the fit install ({exc.name} is not installed): pip install "
              "'stream-ad[fit]'; the line install serves runtime artefacts (`stream-ad export`) with `stream-ad run`",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
