"""`python -m benchmarks`: stream_ad measured against its peers (run from the checkout; the peers come with
`EXTRAS=bench bash scripts/setup.sh`). Each benchmark prints its figures and writes them as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.accel import AccelBenchOptions
from benchmarks.accel import run_bench as run_accel
from benchmarks.cameras import CamerasBenchOptions
from benchmarks.cameras import run_bench as run_cameras
from benchmarks.int8_accuracy import Int8AccuracyOptions
from benchmarks.int8_accuracy import run_bench as run_int8_accuracy
from benchmarks.patchcore import PatchcoreBenchOptions
from benchmarks.patchcore import run_bench as run_patchcore
from benchmarks.pipeline import PipelineBenchOptions
from benchmarks.pipeline import run_bench as run_pipeline
from benchmarks.stages import KINDS, StagesBenchOptions
from benchmarks.stages import run_bench as run_stages
from stream_ad.commands.checked_settings import load_checked_settings
from stream_ad.runtime.quantise import Int8Scope
from stream_ad.settings import ConfigError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return value


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(_positive_int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}") from None


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(text.split(","))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown camera kind {unknown[0]!r}: expected {', '.join(KINDS)}")
    return kinds


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (_positive_int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width % 2 or height % 2:  # H.264 in yuv420p halves both
        raise argparse.ArgumentTypeError(f"expected even sides (H.264's yuv420p), got {text}")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("-c", "--config", type=Path, help="pipeline/settings YAML (default: built-in demo settings)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="benchmark", required=True)

    p = sub.add_parser("patchcore", help="stream_ad's PatchCore side by side with anomalib's; other methods alone")
    p.add_argument("--ratio", type=float, default=0.0025, help="coreset ratio of the side-by-side (default 0.0025)")
    p.add_argument("--skip-peer", action="store_true", help="measure stream_ad only")
    p.add_argument("--json", type=Path,
                   help="figures file (default: OUTPUT_DIR/bench/patchcore_peer.json, METHOD.json)")
    p.add_argument("--limit-train", type=_positive_int, metavar="N", help="fit on N images spread over train/good")
    p.add_argument("--limit-test", type=_positive_int, metavar="N", help="score N images spread over test/")
    p.add_argument("--batch-sizes", type=_positive_ints, default=(1, 16), metavar="B,B",
                   help="inference batch sizes (default 1,16)")
    p.set_defaults(run=run_patchcore, options=PatchcoreBenchOptions)

    p = sub.add_parser("pipeline", help="latency of the multi-process pipeline against in-process scoring")
    p.add_argument("--model", type=Path, help="model artefact (default: the demo's, fitted and cached if missing)")
    p.add_argument("--fps", type=float, help="camera rate of the latency comparison (default: half what one core "
                   "scores in-process, one frame at a time)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per measured run (default 30)")
    p.add_argument("--search-duration", type=float, default=12.0, help="seconds per run of the rate search (12)")
    p.add_argument("--search-runs", type=int, default=4, help="runs of the highest-rate search (default 4)")
    p.add_argument("--skip-search", action="store_true", help="latency comparison and transport only")
    p.add_argument("--skip-transport", action="store_true")
    p.add_argument("--transport-only", action="store_true", help="only the ZeroMQ hop figures (no model)")
    p.add_argument("--json", type=Path, help="figures file (default: OUTPUT_DIR/bench/pipeline.json)")
    p.set_defaults(run=run_pipeline, options=PipelineBenchOptions)

    p = sub.add_parser("accel", help="backbone paths (runtime.accelerate) side by side, the anomalib OpenVINO peer, "
                       "and the pipeline at a 100 fps camera")
    p.add_argument("--batch-sizes", type=_positive_ints, default=(1, 8, 32), metavar="B,B",
                   help="inference batch sizes (default 1,8,32)")
    p.add_argument("--ratio", type=float, default=0.03, help="coreset ratio of the PatchCore rows (default 0.03)")
    p.add_argument("--limit-train", type=_positive_int, default=64, metavar="N", help="fit on N train/good images (64)")
    p.add_argument("--limit-test", type=_positive_int, default=96, metavar="N", help="score N test images (96)")
    p.add_argument("--models", default="mobilenet_v2,wide_resnet50_2,pdn,padim",
                   help="comma-separated, of mobilenet_v2, wide_resnet50_2, pdn, padim (default all)")
    p.add_argument("--skip-peer", action="store_true", help="no anomalib OpenVINO row")
    p.add_argument("--skip-line", action="store_true",
                   help="no line runtime rows (bare backbone vs the demo's runtime artefact, fp32 and INT8)")
    p.add_argument("--pipeline-duration", type=float, default=20.0,
                   help="seconds of the pipeline run at a 100 fps camera (0 skips it; default 20)")
    p.add_argument("--json", type=Path, help="figures file (default: OUTPUT_DIR/bench/accel.json)")
    p.set_defaults(run=run_accel, options=AccelBenchOptions)

    p = sub.add_parser("cameras", help="N cameras in one pipeline against N single-camera pipelines: sustained "
                       "frames/s, latency, memory")
    p.add_argument("--cameras", type=_positive_ints, default=(1, 2, 4, 8), metavar="N,N",
                   help="numbers of cameras (default 1,2,4,8)")
    p.add_argument("--fps", type=float, help="per-camera rate of the latency and memory runs (default: the lower of "
                   "the two sustained rates)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of the run at the common rate (15)")
    p.add_argument("--search-duration", type=float, default=10.0, help="seconds per run of the rate search (10)")
    p.add_argument("--search-runs", type=_positive_int, default=3, help="runs of each rate search (default 3)")
    p.add_argument("--search-precision", type=_fraction, default=0.1, help="a search stops once the highest rate "
                   "that held and the lowest that dropped lie within this fraction of the latter (default 0.1)")
    p.add_argument("--max-p99-ms", type=float, help="a search run holds only if its p99 (capture to verdict) is at "
                   "most this too: both modes compared at equal p99 (default: no drops is enough)")
    p.add_argument("--model", type=Path, help="model artefact (default: the demo's, fitted and cached if missing)")
    p.add_argument("--json", type=Path, help="figures file (default: OUTPUT_DIR/bench/cameras.json)")
    p.add_argument("--plot", type=Path, help="plot (default: the figures file's name, .png)")
    p.set_defaults(run=run_cameras, options=CamerasBenchOptions)

    p = sub.add_parser("stages", help="CPU per frame of each pipeline stage (decoding, preprocessing, scoring) for "
                       "image files and an H.264 camera, and the preprocessing's steps in-process")
    p.add_argument("--kinds", type=_kinds, default=KINDS, metavar="KIND,KIND",
                   help=f"camera kinds, of {', '.join(KINDS)} (default both)")
    p.add_argument("--fps", type=float, default=20.0, help="the camera's rate (default 20)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per run (default 20)")
    p.add_argument("--video-size", type=_size, default=(640, 480), metavar="WxH",
                   help="the H.264 video's frame size (default 640x480)")
    p.add_argument("--model", type=Path, help="model artefact (default: the demo's, fitted and cached if missing)")
    p.add_argument("--json", type=Path, help="figures file (default: OUTPUT_DIR/bench/stages.json)")
    p.set_defaults(run=run_stages, options=StagesBenchOptions)

    p = sub.add_parser("int8-accuracy", help="image AUROC of the runtime artefact, fp32 vs INT8 (`export --int8`), "
                       "on magnetic_tile and each PIPED category")
    p.add_argument("--sets", help="comma-separated set names (default: magnetic_tile and every PIPED category)")
    p.add_argument("--models", type=Path, help="fitted model artefacts, one folder per set, fitted there when missing "
                   "and reused (default: OUTPUT_DIR/bench/int8_models)")
    p.add_argument("--scope", type=Int8Scope, default=Int8Scope.ALL, choices=list(Int8Scope),
                   help="what INT8 quantises, as `export --int8 SCOPE` (default all)")
    p.add_argument("--json", type=Path, help="figures file (default: OUTPUT_DIR/bench/int8_accuracy.json)")
    p.set_defaults(run=run_int8_accuracy, options=Int8AccuracyOptions)
    return parser


def options_of(args: argparse.Namespace, cls: type[Any]) -> Any:
    """The benchmark's typed options from the parsed flags (same names)."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run: Callable[[Any, Any], int] = args.run
    try:
        return run(load_checked_settings(args.config), options_of(args, args.options))
    except ConfigError as exc:
        print(f"python -m benchmarks: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
