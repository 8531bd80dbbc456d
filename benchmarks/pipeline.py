"""`python -m benchmarks pipeline`: what the multi-process pipeline costs against scoring in-process.

One model, one set of frames (data.root/test, decoded once), one run:

1. Latency at a camera rate the CPU sustains: frames released on a camera schedule and scored in-process one by
   one (capture -> score), then the same schedule through every stage process (capture timestamp -> verdict
   written). p50/p99 of both, their ratio, and the frames unaccounted for.
2. The highest camera rate the pipeline sustains with no drops (a short search of runs), then a camera at twice that
   rate: the drops, the p99, and the rate the camera reader kept (it must not slow down).
3. Transport: one ZeroMQ hop between two processes (serialise, send, receive, parse) for a 224 px and a 1024 px
   frame, and the serialisation alone.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.figures import machine, write_figures
from stream_ad.settings import MAX_IMAGE_PIXELS, JsonlSinkSettings, Settings, SourceSettings

log = logging.getLogger("benchmarks.pipeline")


@dataclass(frozen=True)
class PipelineBenchOptions:
    model: Path | None = None  # model artefact; None: the demo's, fitted and cached if missing
    fps: float | None = None  # camera rate of the latency comparison; None: half what one core scores in-process
    duration: float = 30.0  # seconds per measured run
    search_duration: float = 12.0  # seconds per run of the rate search
    search_runs: int = 4  # runs of the highest-rate search
    skip_search: bool = False  # latency comparison and transport only
    skip_transport: bool = False
    transport_only: bool = False  # only the ZeroMQ hop figures (no model)
    json: Path | None = None  # figures file; None: OUTPUT_DIR/bench/pipeline.json


# ---- transport ----

ECHO = """
import sys, zmq
from stream_ad.pipeline.wire import decode, encode
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.bind(sys.argv[1])
push = ctx.socket(zmq.PUSH); push.connect(sys.argv[2])
print("ready", flush=True)
while True:
    parts = pull.recv_multipart(copy=False)
    if len(parts) == 1 and parts[0].bytes == b"stop":
        break
    push.send_multipart(encode(decode(parts)), copy=False)
"""


def transport_overhead(sides: tuple[int, ...] = (224, 1024), rounds: int = 300) -> dict[str, Any]:
    """Per frame: serialise + parse alone, and one ZeroMQ hop (ipc) between processes, half an echo round trip."""
    import zmq

    from stream_ad.frames import Frame
    from stream_ad.pipeline.wire import decode, encode

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stream-ad-hop-") as tmp:
        there, back = f"ipc://{tmp}/there.sock", f"ipc://{tmp}/back.sock"
        ctx = zmq.Context.instance()
        pull = ctx.socket(zmq.PULL)
        pull.bind(back)
        echo = subprocess.Popen([sys.executable, "-c", ECHO, there, back], stdout=subprocess.PIPE, text=True)
        try:
            assert echo.stdout is not None and echo.stdout.readline().startswith("ready")
            push = ctx.socket(zmq.PUSH)
            push.connect(there)
            for side in sides:
                rng = np.random.default_rng(side)
                frame = Frame(frame_id=1, camera="bench", t_capture=time.time(),
                              image=rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
                ser = []
                for _ in range(rounds):
                    t = time.perf_counter()
                    decode([bytes(memoryview(p).cast("B")) if not isinstance(p, bytes) else p for p in encode(frame)])
                    ser.append(time.perf_counter() - t)
                hop = []
                for i in range(rounds + 20):
                    t = time.perf_counter()
                    push.send_multipart(encode(frame), copy=False)
                    got = decode(pull.recv_multipart(copy=False))
                    if i >= 20:  # warm-up
                        hop.append((time.perf_counter() - t) / 2)
                assert got.image is not None and got.image.shape == (side, side, 3)
                out[f"{side}px"] = {
                    "bytes": int(frame.image.nbytes),
                    "hop_us_p50": float(np.percentile(hop, 50) * 1e6),
                    "hop_us_p99": float(np.percentile(hop, 99) * 1e6),
                    "serialise_parse_us_p50": float(np.percentile(ser, 50) * 1e6),
                }
            push.send(b"stop")
            push.close()
        finally:
            try:
                echo.wait(timeout=10)
            except subprocess.TimeoutExpired:
                echo.kill()
            pull.close()
    return out


# ---- in-process ----


def frame_folder(settings: Settings) -> Path:
    """What the benchmarks stream: pipeline.source.path, else the test images of data.root."""
    return settings.pipeline.source.path or settings.data.root / "test"


def load_frames(folder: Path) -> tuple[list[Path], list[np.ndarray]]:
    from stream_ad.sources.folder import _read, list_images

    paths = list_images(folder)
    frames = []
    for p in paths:
        img, err = _read(p, MAX_IMAGE_PIXELS)
        if img is not None:
            frames.append(img)
    return paths, frames


def in_process_latency(model: Any, frames: list[np.ndarray], fps: float, seconds: float) -> dict[str, Any]:
    """A camera schedule (frame k due at t0 + k/fps), each frame scored as it comes: capture -> score."""
    n = max(1, int(fps * seconds))
    lat = np.empty(n)
    work = np.empty(n)
    t0 = time.perf_counter() + 0.05
    for k in range(n):
        due = t0 + k / fps
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        start = time.perf_counter()
        model.predict([frames[k % len(frames)]])
        end = time.perf_counter()
        lat[k] = end - due
        work[k] = end - start
    return {"frames": n, "fps": fps, **_pcts(lat), "scoring_ms_mean": float(work.mean() * 1000)}


def _pcts(seconds: np.ndarray) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def scoring_model(settings: Settings, model_dir: Path) -> tuple[Any, int]:
    """The model loaded in this process with the torch threads its infer stage would run with, and their number."""
    import torch

    from stream_ad.artefact import load_model
    from stream_ad.pipeline.stages.infer import default_infer_threads

    threads = settings.pipeline.infer.threads or settings.runtime.threads or default_infer_threads()
    torch.set_num_threads(threads)
    return load_model(model_dir, settings), threads


def throughput(model: Any, frames: list[np.ndarray], batch: int, count: int = 32) -> float:
    """Frames per second scored in-process at this batch size (over `count` frames spread over the set)."""
    step = max(1, len(frames) // count)
    sample = frames[::step][:count]
    model.predict(sample[:batch])
    start = time.perf_counter()
    for i in range(0, len(sample), batch):
        model.predict(sample[i : i + batch])
    return len(sample) / (time.perf_counter() - start)


# ---- pipeline runs ----


def folder_camera(settings: Settings, fps: float, name: str = "cam0") -> SourceSettings:
    """A simulated camera as pipeline.source sets it up: the frame folder's images looped at `fps`, decoded once at
    its start (so decoding does not slow the camera)."""
    return settings.pipeline.source.model_copy(update={
        "kind": "folder", "camera": name, "path": frame_folder(settings), "fps": fps, "loop": True, "preload": True})


def streaming_settings(settings: Settings, model_dir: Path, seconds: float, verdicts: Path, *,
                       source: SourceSettings | None = None, cameras: list[SourceSettings] | None = None) -> Settings:
    """The settings of one benchmark run: this model, `seconds` long, no progress line and no /metrics (runs side by
    side would share its port), verdicts to a JSONL file; one camera as pipeline.source or many as
    pipeline.cameras."""
    pipe = settings.pipeline.model_copy(deep=True)
    pipe.model = model_dir
    pipe.duration_s = seconds
    pipe.progress = False
    pipe.metrics.enabled = False
    pipe.source = source or SourceSettings()
    pipe.cameras = cameras or []
    verdicts.unlink(missing_ok=True)
    pipe.sink.outputs = [JsonlSinkSettings(path=verdicts)]
    return settings.model_copy(update={"pipeline": pipe})


def summary_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """What the benchmarks keep of a run's summary (RunSummary.to_json())."""
    lat = summary["latency_ms"]
    return {
        "frames_in": summary["frames_in"],
        "camera_read_fps": summary["source_fps"],
        "scored": summary["scored"],
        "dropped": summary["dropped_total"],
        "dropped_by_reason": summary["dropped"],
        "unaccounted": summary["unaccounted"],
        "p50_ms": lat.get("p50", float("nan")),
        "p99_ms": lat.get("p99", float("nan")),
        "max_ms": lat.get("max", float("nan")),
        "infer_batch_mean": summary["batch_size_mean"],
    }


def sustained(figures: dict[str, Any]) -> bool:
    """A run without drops: every frame the camera gave reached a verdict."""
    return figures["dropped"] == 0 and figures["unaccounted"] == 0


def pipeline_run(settings: Settings, model_dir: Path, threshold: float, fps: float, seconds: float,
                 out_dir: Path) -> dict[str, Any]:
    from stream_ad.pipeline.run import run_pipeline
    from stream_ad.pipeline.served import serve_one

    run_settings = streaming_settings(settings, model_dir, seconds, out_dir / f"verdicts_{fps:.1f}.jsonl",
                                      source=folder_camera(settings, fps))
    s = run_pipeline(run_settings, serve_one(run_settings, model_dir, threshold))
    return {"fps": fps, "seconds": seconds, **summary_figures(s.to_json())}


def highest_sustained(sustains: Callable[[float], bool], start: float, runs: int, precision: float = 0.1) -> float:
    """The highest rate at which `sustains(rate)` (one run) held, in at most `runs` runs: up by half from `start`
    while it holds, then bisection until the bracket is within `precision` (a fraction of its top); 0.0 if it never
    held."""
    lo, hi = 0.0, None
    rate = start
    for _ in range(runs):
        if sustains(rate):
            lo = max(lo, rate)
        else:
            hi = rate if hi is None else min(hi, rate)
        rate = round((lo + hi) / 2, 1) if hi is not None else round(rate * 1.5, 1)
        if hi is not None and hi - lo < precision * hi:
            break
    return lo


def bench_model(settings: Settings, model: Path | None) -> tuple[Path, float, str]:
    """The artefact a benchmark serves, its threshold and where that comes from: `model` as `stream-ad run` would
    serve it (PipelineError, ConfigError, CalibrationError), else the demo's, fitted and cached if missing."""
    from stream_ad.artefact import model_dir_name
    from stream_ad.commands.demo import demo_model
    from stream_ad.pipeline.served import resolve_threshold

    if model is not None:
        return (model, *resolve_threshold(settings, model))
    model_dir = settings.output_dir / "demo" / model_dir_name(settings)
    record, _ = demo_model(settings, model_dir)
    return model_dir, float(record["value"]), "provisional (demo)"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_bench(settings: Settings, args: PipelineBenchOptions) -> int:
    from stream_ad.pipeline.errors import PipelineError

    out_json = args.json or settings.output_dir / "bench" / "pipeline.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {
        "machine": machine(),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
    }
    if not args.transport_only:
        try:
            model_dir, threshold, origin = bench_model(settings, args.model)
        except PipelineError as exc:
            print(f"stream-ad: {exc}", file=sys.stderr)
            return 2
        model, threads = scoring_model(settings, model_dir)
        folder = frame_folder(settings)
        paths, frames = load_frames(folder)
        sizes = sorted({f.shape[:2] for f in frames})
        figures["setup"] = {
            "model": str(model_dir), "threshold": threshold, "threshold_from": origin, "frames": len(frames),
            "frame_folder": str(folder), "frame_sizes": f"{sizes[0]}..{sizes[-1]}", "torch_threads": threads,
            "infer": settings.pipeline.infer.model_dump(mode="json"),
        }
        _say(f"model {model_dir} ({len(frames)} frames from {folder}, torch threads {threads})")
        one = throughput(model, frames, 1)
        batched = throughput(model, frames, settings.pipeline.infer.max_batch)
        figures["in_process_throughput_fps"] = {"batch_1": one, f"batch_{settings.pipeline.infer.max_batch}": batched}
        fps = args.fps or round(one / 2, 1)
        _say(f"in-process: {one:.1f} frames/s one at a time, {batched:.1f} batched; camera for the comparison: "
             f"{fps} fps")

        # 1. the same frames on the same schedule, in-process and through the pipeline. In-process runs before and
        # after the pipeline (the machine's other load drifts); the ratio is taken against the better of the two.
        inproc = in_process_latency(model, frames, fps, args.duration)
        inproc["load_avg"] = os.getloadavg()[0]
        _say(f"in-process at {fps} fps: p50 {inproc['p50_ms']:.1f} ms, p99 {inproc['p99_ms']:.1f} ms")
        work = out_json.parent / "pipeline_runs"
        work.mkdir(exist_ok=True)
        piped = pipeline_run(settings, model_dir, threshold, fps, args.duration, work)
        piped["load_avg"] = os.getloadavg()[0]
        _say(f"pipeline at {fps} fps: p50 {piped['p50_ms']:.1f} ms, p99 {piped['p99_ms']:.1f} ms, "
             f"dropped {piped['dropped']}, unaccounted {piped['unaccounted']}")
        again = in_process_latency(model, frames, fps, args.duration)
        again["load_avg"] = os.getloadavg()[0]
        _say(f"in-process again: p50 {again['p50_ms']:.1f} ms, p99 {again['p99_ms']:.1f} ms")
        del model
        ref = min((inproc, again), key=lambda r: r["p99_ms"])
        figures["latency"] = {
            "camera_fps": fps,
            "in_process": ref,
            "in_process_runs": [inproc, again],
            "pipeline": piped,
            "ratio_p50": piped["p50_ms"] / ref["p50_ms"],
            "ratio_p99": piped["p99_ms"] / ref["p99_ms"],
        }

        # 2. the highest rate with no drops, then twice that
        if not args.skip_search:
            runs = []

            def sustains(rate: float) -> bool:
                r = pipeline_run(settings, model_dir, threshold, rate, args.search_duration, work)
                runs.append(r)
                _say(f"  search {rate:.1f} fps: dropped {r['dropped']}, p99 {r['p99_ms']:.0f} ms -> "
                     f"{'sustained' if sustained(r) else 'drops'}")
                return sustained(r)

            best = highest_sustained(sustains, max(fps, round(batched * 0.8, 1)), args.search_runs) or fps
            over = pipeline_run(settings, model_dir, threshold, 2 * best, args.duration, work)
            _say(f"at 2x ({2 * best:.1f} fps): dropped {over['dropped']} of {over['frames_in']}, p99 "
                 f"{over['p99_ms']:.0f} ms, camera read {over['camera_read_fps']:.1f} fps")
            figures["capacity"] = {"max_fps_no_drops": best, "search": runs, "at_2x": over}

    if not args.skip_transport:
        figures["transport"] = transport_overhead()
        for k, v in figures["transport"].items():
            _say(f"transport {k}: hop p50 {v['hop_us_p50']:.0f} us (p99 {v['hop_us_p99']:.0f}), serialise+parse "
                 f"{v['serialise_parse_us_p50']:.0f} us")
    return write_figures(figures, out_json, report)


def report(f: dict[str, Any]) -> str:
    lines = [f"bench-pipeline on {f['machine']['cpus']} CPUs (load average at start "
             f"{f['machine']['load_avg_at_start'][0]:.1f})"]
    if "latency" in f:
        lat = f["latency"]
        ip, pp = lat["in_process"], lat["pipeline"]
        lines += [
            f"camera {lat['camera_fps']} fps, {f['setup']['frames']} frames {f['setup']['frame_sizes']}",
            f"{'':24s}{'p50 ms':>10s}{'p99 ms':>10s}{'max ms':>10s}",
            *(f"{'in-process' + (' (ref)' if r is ip else ''):24s}{r['p50_ms']:10.1f}{r['p99_ms']:10.1f}"
              f"{r['max_ms']:10.1f}   load {r['load_avg']:.1f}" for r in lat["in_process_runs"]),
            f"{'pipeline (5 processes)':24s}{pp['p50_ms']:10.1f}{pp['p99_ms']:10.1f}{pp['max_ms']:10.1f}   load "
            f"{pp['load_avg']:.1f}",
            f"{'ratio pipeline / ref':24s}{lat['ratio_p50']:10.2f}{lat['ratio_p99']:10.2f}",
            f"pipeline frames: in {pp['frames_in']}, scored {pp['scored']}, dropped {pp['dropped']}, "
            f"unaccounted {pp['unaccounted']}",
        ]
    if "capacity" in f:
        c = f["capacity"]
        o = c["at_2x"]
        lines += [
            f"highest camera rate with no drops: {c['max_fps_no_drops']:.1f} fps",
            f"at 2x ({o['fps']:.1f} fps): camera read {o['camera_read_fps']:.1f} fps, in {o['frames_in']}, dropped "
            f"{o['dropped']} {o['dropped_by_reason']}, p99 {o['p99_ms']:.0f} ms, unaccounted {o['unaccounted']}",
        ]
    if "transport" in f:
        for k, v in f["transport"].items():
            lines.append(f"transport {k} ({v['bytes'] / 1e6:.2f} MB): ZeroMQ ipc hop p50 {v['hop_us_p50']:.0f} us, "
                         f"p99 {v['hop_us_p99']:.0f} us; serialise+parse {v['serialise_parse_us_p50']:.0f} us")
    return "\n".join(lines)
