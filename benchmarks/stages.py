"""`python -m benchmarks stages`: where a frame's CPU goes in the pipeline: decoding and preprocessing against the
scoring.

One camera through one pipeline at a fixed rate, once per camera kind:
  images   the frame folder's image files (data.root/test), decoded as the camera reads them (no preload);
  h264     an H.264 video of the same frames (made here with PyAV, --video-size), decoded frame by frame.
Over the steady part of each run (from CPU_WARMUP_S after the camera starts), each stage process's CPU time (/proc)
per frame scored: the source's is the decoding, the preprocess stage's the resize and normalisation (and its
messages), the infer stage's the scoring. Then, in this process on the same frames, the preprocessing split into its
two steps (geometry.place_frames's resize, geometry.normalise), and the decoding alone, per frame.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cameras import FleetRun, Served, run_fleet, stage_cpu_line
from benchmarks.figures import machine, write_figures
from benchmarks.pipeline import bench_model, folder_camera, frame_folder, load_frames, scoring_model
from stream_ad.geometry import as_rgb, normalise, place_frames, resize
from stream_ad.pipeline.errors import PipelineError
from stream_ad.settings import Settings, SourceSettings

KINDS = ("images", "h264")
DECODING_STAGE, PREPROCESS_STAGE, SCORING_STAGE = "source", "preprocess", "infer"


@dataclass(frozen=True)
class StagesBenchOptions:
    kinds: tuple[str, ...] = KINDS  # camera kinds measured
    fps: float = 20.0  # the camera's rate
    duration: float = 20.0  # seconds per run
    video_size: tuple[int, int] = (640, 480)  # width, height of the H.264 video
    model: Path | None = None  # model artefact; None: the demo's, fitted and cached if missing
    json: Path | None = None  # figures file; None: OUTPUT_DIR/bench/stages.json


def h264_video(frames: list[np.ndarray], size: tuple[int, int], fps: float, path: Path) -> Path:
    """The frames, resized to `size` (width, height), as an H.264 MP4 at `fps` (libx264, yuv420p: what IP cameras
    send)."""
    import av

    width, height = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(frames):
            rgb = np.clip(np.rint(resize(as_rgb(i, frame), height, width)), 0, 255).astype(np.uint8)
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            out.mux(stream.encode(picture))
        out.mux(stream.encode())
    return path


def camera_of(kind: str, video: Path | None) -> Callable[[Settings, float, str], SourceSettings]:
    """The camera factory of run_fleet for a camera kind."""
    if kind == "images":
        return lambda settings, fps, name: folder_camera(settings, fps, name).model_copy(update={"preload": False})
    return lambda settings, fps, name: settings.pipeline.source.model_copy(
        update={"kind": "video", "camera": name, "path": video, "fps": fps, "loop": True})


def per_frame_ms(step: Callable[[Any], Any], items: list[Any], rounds: int = 3) -> float:
    """The median over rounds of one step's mean time per item, in ms."""
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            step(item)
        means.append(1000 * (time.perf_counter() - start) / len(items))
    return float(np.median(means))


def video_frames(path: Path) -> Iterator[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def in_process_steps(settings: Settings, paths: list[Path], frames: list[np.ndarray], video: Path | None,
                     model_dir: Path) -> dict[str, float]:
    """Per frame in this process, ms: decoding each camera kind; the preprocessing's resize and normalisation (the
    model's geometry and normalisation, as the line's preprocessing computes them) of the decoded image files; and
    scoring them one at a time with the infer stage's threads."""
    from stream_ad.data import read_image

    steps = {"decode image file": per_frame_ms(read_image, paths)}
    if video is not None:
        count = max(1, sum(1 for _ in video_frames(video)))
        steps["decode H.264 frame"] = per_frame_ms(lambda v: sum(1 for _ in video_frames(v)), [video]) / count
    model, _ = scoring_model(settings, model_dir)
    pre = model.preprocessor
    mean255, std255 = (t.flatten().numpy() for t in (pre.mean, pre.std))
    placed = [place_frames(pre.geometry, [frame])[0] for frame in frames]
    steps["resize (place_frames)"] = per_frame_ms(lambda f: place_frames(pre.geometry, [f]), frames)
    steps["normalise"] = per_frame_ms(lambda pixels: normalise(pixels, mean255, std255), placed)
    steps["score (batch 1)"] = per_frame_ms(lambda f: model.predict([f]), frames[:100])
    return steps


def run_bench(settings: Settings, options: StagesBenchOptions) -> int:
    out_json = options.json or settings.output_dir / "bench" / "stages.json"
    work = out_json.parent / "stages_runs"
    work.mkdir(parents=True, exist_ok=True)
    try:
        model_dir, threshold, origin = bench_model(settings, options.model)
    except PipelineError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    figures: dict[str, Any] = {
        "machine": machine(),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "setup": {"model": str(model_dir), "threshold_from": origin, "frame_folder": str(frame_folder(settings)),
                  "fps": options.fps, "duration_s": options.duration, "video_size": list(options.video_size)},
    }
    paths, frames = load_frames(frame_folder(settings))
    video = (h264_video(frames, options.video_size, options.fps, work / "frames.mp4")
             if "h264" in options.kinds else None)
    runs: dict[str, FleetRun] = {}
    for kind in options.kinds:
        run = run_fleet(settings, Served(model_dir, threshold), "one", 1, options.fps, options.duration,
                        work / kind, camera=camera_of(kind, video))
        print(f"{kind}: scored {run.scored}, dropped {run.dropped}, p99 {run.p99_ms:.0f} ms, load "
              f"{run.load_avg:.1f}\n  {stage_cpu_line(run)}", file=sys.stderr, flush=True)
        runs[kind] = run
    figures["runs"] = {kind: asdict(run) for kind, run in runs.items()}
    figures["in_process_ms"] = in_process_steps(settings, paths, frames, video, model_dir)
    return write_figures(figures, out_json, report)


def report(f: dict[str, Any]) -> str:
    m, setup = f["machine"], f["setup"]
    lines = [f"bench-stages on {m['cpus']} CPUs, load average at start {m['load_avg_at_start'][0]:.1f}, at end "
             f"{m['load_avg_at_end'][0]:.1f}; one camera at {setup['fps']:g} fps, {setup['duration_s']:g} s a run",
             "CPU per frame scored, ms, by stage process:",
             f"{'camera':>8s}{'scored':>8s}{'dropped':>8s}{'decode':>9s}{'prepro':>9s}{'infer':>9s}{'rest':>9s}"
             f"{'total':>9s}{'(decode+prepro)/infer':>24s}"]
    for kind, run in f["runs"].items():
        cpu = run["stage_cpu_ms"]
        decode, pre, infer = (cpu.get(stage, 0.0) for stage in (DECODING_STAGE, PREPROCESS_STAGE, SCORING_STAGE))
        total = sum(cpu.values())
        lines.append(f"{kind:>8s}{run['scored']:8d}{run['dropped']:8d}{decode:9.2f}{pre:9.2f}{infer:9.2f}"
                     f"{total - decode - pre - infer:9.2f}{total:9.2f}"
                     f"{(decode + pre) / infer if infer else float('nan'):24.2f}")
    lines.append("in this process, per frame: " + ", ".join(f"{step} {ms:.2f} ms"
                                                            for step, ms in f["in_process_ms"].items()))
    return "\n".join(lines)
