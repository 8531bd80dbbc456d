"""`python -m benchmarks cameras`: many cameras in ONE pipeline against a pipeline per camera (issue 18).

For each N of --cameras, N folder cameras stream data.root/test (preloaded, looped), all at the same rate, judged by
one artefact (the demo's 224 px PatchCore unless --model):

  one        ONE pipeline with the N cameras (pipeline.cameras): one infer process batches frames of all of them;
  separate   N single-camera pipelines at the same time, each its own supervisor, stages and run folder.

For both: the highest per-camera rate with no drops (a short search of runs), then a run at a common per-camera rate
(--fps, else the lower of the two sustained rates): p50/p99 latency, mean infer batch, frames/s scored, and the
memory of the whole service (the supervisors and every stage process).

Each pipeline runs in a child process of its own (`python -m benchmarks.cameras SETTINGS MODEL THRESHOLD SUMMARY`)
whose sources start only when the parent says so, once every pipeline's model stages are up: the separate pipelines
then stream at the same time and none streams while another still loads its model (which would count drops against
the start-up, not the steady state).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from benchmarks.figures import machine as figures_machine
from benchmarks.pipeline import (
    bench_model,
    folder_camera,
    frame_folder,
    highest_sustained,
    load_frames,
    scoring_model,
    streaming_settings,
    summary_figures,
    sustained,
    throughput,
)
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.supervisor import Supervisor
from stream_ad.settings import Settings, SourceSettings

MODES = ("one", "separate")
SAMPLE_EVERY_S = 0.5
GO = "go\n"
READY = "ready"
STREAMING = "streaming"


@dataclass(frozen=True)
class CamerasBenchOptions:
    cameras: tuple[int, ...] = (1, 2, 4, 8)  # numbers of cameras measured
    fps: float | None = None  # per-camera rate of the latency and memory run; None: the lower sustained rate
    duration: float = 15.0  # seconds of the run at the common rate
    search_duration: float = 10.0  # seconds per run of the rate search
    search_runs: int = 3  # runs of each search
    search_precision: float = 0.1  # a search stops once its bracket is within this fraction of its top
    # A search run holds only with no drops and its p99 at most this (both modes at equal p99); None: no drops only.
    max_p99_ms: float | None = None
    model: Path | None = None  # model artefact; None: the demo's, fitted and cached if missing
    json: Path | None = None  # figures file; None: OUTPUT_DIR/bench/cameras.json
    plot: Path | None = None  # plot; None: next to the figures file, cameras.png


@dataclass(frozen=True)
class Served:
    """What every pipeline of the benchmark serves."""

    model_dir: Path
    threshold: float


@dataclass(frozen=True)
class Memory:
    """The service's memory: its processes' VmRSS summed, the highest such sum over the samples, and their PSS
    (smaps_rollup) summed once, mid-run: reading smaps_rollup costs tens of milliseconds of CPU per process here, so
    sampling it as often as RSS would load the machine being measured."""

    rss_mb: float
    pss_mb: float
    processes: int


@dataclass(frozen=True)
class FleetRun:
    """N cameras at one per-camera rate, as one pipeline or separate ones: the figures of all pipelines together."""

    mode: str
    cameras: int
    fps: float
    seconds: float
    frames_in: int
    scored: int
    dropped: int
    unaccounted: int
    p50_ms: float
    p99_ms: float
    batch_mean: float | None
    memory: Memory | None
    load_avg: float
    pipelines: tuple[dict[str, Any], ...]  # summary_figures of each pipeline
    # Each stage's CPU per frame scored, ms, over the run's steady part (all its processes and pipelines summed; the
    # per-frame figure assumes frames were scored at the run's mean rate throughout).
    stage_cpu_ms: dict[str, float]

    @property
    def sustained(self) -> bool:
        return sustained(asdict(self))

    @property
    def scored_fps(self) -> float:
        return self.scored / self.seconds


# ---- the child: one pipeline whose sources wait for the parent ----


class GatedSupervisor(Supervisor):
    """Starts the model stages, says READY on stdout, and starts the sources when a line comes on stdin (handling
    the stages' notices meanwhile, so that none is taken for hung); says STREAMING once every source is up (its
    frames read and preloaded: the camera's first frame follows)."""

    def start(self, cancelled: Callable[[], bool], labels: list[str] | None = None) -> None:
        labels = list(self.stages) if labels is None else labels
        super().start(cancelled, [label for label in labels if label not in self.sources])
        print(READY, flush=True)
        while not select.select([sys.stdin], [], [], 0)[0]:
            self.pump(0.1)
            if cancelled():  # SIGTERM from the benchmark giving up
                raise PipelineError("stopped while the sources waited to start")
        if not sys.stdin.readline():
            raise PipelineError("the benchmark is gone")
        super().start(cancelled, [label for label in labels if label in self.sources])
        print(STREAMING, flush=True)


def child_main(argv: list[str]) -> int:
    """SETTINGS.json MODEL_DIR THRESHOLD SUMMARY.json: run one pipeline, write its summary."""
    import stream_ad.pipeline.run as run
    from stream_ad.pipeline.served import serve_one

    settings_path, model_dir, threshold, summary_path = argv
    settings = Settings.model_validate_json(Path(settings_path).read_text())
    # PipelineRun makes its Supervisor itself: this child process is the only place where the gate applies.
    run.Supervisor = GatedSupervisor  # type: ignore[misc]
    summary = run.run_pipeline(settings, serve_one(settings, Path(model_dir), float(threshold)))
    Path(summary_path).write_text(json.dumps(summary.to_json()))
    return 0


# ---- the parent: start the pipelines, let them stream together, watch their memory ----


def pipeline_cameras(mode: str, n: int) -> list[list[str]]:
    """The camera names of each pipeline: all in one, or one per pipeline."""
    names = [f"cam{i}" for i in range(n)]
    return [names] if mode == "one" else [[name] for name in names]


CameraFactory = Callable[[Settings, float, str], SourceSettings]  # (settings, fps, name) -> the camera's settings


def pipeline_settings(settings: Settings, model_dir: Path, cameras: list[str], fps: float, seconds: float,
                      verdicts: Path, mode: str, camera: CameraFactory = folder_camera) -> Settings:
    """One pipeline of the fleet: its cameras as pipeline.cameras (one pipeline) or pipeline.source (separate)."""
    sources = [camera(settings, fps, name) for name in cameras]
    if mode == "one":
        return streaming_settings(settings, model_dir, seconds, verdicts, cameras=sources)
    return streaming_settings(settings, model_dir, seconds, verdicts, source=sources[0])


@dataclass(frozen=True)
class Child:
    proc: subprocess.Popen[str]
    summary: Path
    verdicts: Path
    log: Path


def launch(settings: Settings, served: Served, work: Path, name: str, verdicts: Path) -> Child:
    paths = {kind: work / f"{name}.{kind}" for kind in ("settings.json", "summary.json", "log")}
    paths["settings.json"].write_text(settings.model_dump_json())
    paths["summary.json"].unlink(missing_ok=True)
    with paths["log"].open("w") as log:
        # A session of its own: what is left of it after a failure is killed as one process group.
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.cameras", str(paths["settings.json"]), str(served.model_dir),
             repr(served.threshold), str(paths["summary.json"])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
        )
    return Child(proc, paths["summary.json"], verdicts, paths["log"])


def await_line(children: list[Child], line: str, timeout_s: float) -> None:
    """Every child's next stdout line, `line` (READY: its model stages up; STREAMING: its sources up); RuntimeError
    naming the log of one that failed."""
    deadline = time.monotonic() + timeout_s
    for child in children:
        out: IO[str] = child.proc.stdout  # type: ignore[assignment]
        while not select.select([out], [], [], 0.5)[0]:
            if child.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"a pipeline did not say {line}: see {child.log}")
        if out.readline().strip() != line:
            raise RuntimeError(f"a pipeline failed: see {child.log}")


def stop(children: list[Child]) -> None:
    """Whatever still runs: SIGTERM (an orderly stop), then SIGKILL to each child's process group."""
    for child in children:
        if child.proc.poll() is None:
            child.proc.terminate()
    for child in children:
        try:
            child.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)  # stage processes left behind, if any
        except ProcessLookupError:
            pass


def _descendants(roots: list[int]) -> list[int]:
    """The roots and every process under them (from the parent ids in /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _kb(path: str, key: str) -> int:
    """A `Key:   N kB` line of a /proc file (0 for a process that is gone)."""
    try:
        with open(path) as f:
            return next((int(line.split()[1]) for line in f if line.startswith(key)), 0)
    except OSError:
        return 0


WORKER = "stream_ad.pipeline.worker"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The stage CPU window opens this long after every source is up: their start-up and preloading (583 frames decoded
# per camera, seconds on a slow CPU) left out.
CPU_WARMUP_S = 2.0


def _stage_of(pid: int) -> str | None:
    """What a process of the service runs: its stage (the worker's label up to the camera and model suffix),
    "supervisor" for the pipeline's own process; None once it is gone."""
    try:
        args = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return None
    if WORKER in args:
        return args[args.index(WORKER) + 2].split("-")[0]
    return "supervisor" if "benchmarks.cameras" in args else "other"


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class ServiceSampler:
    """Every SAMPLE_EVERY_S in a thread: VmRSS of the process trees summed (the highest sum kept), each process's
    CPU time from `cpu_from` (monotonic) on, by stage; PSS once, at `pss_at` (None: never)."""

    def __init__(self, roots: list[int], cpu_from: float, pss_at: float | None) -> None:
        self.roots, self.cpu_from, self.pss_at = roots, cpu_from, pss_at
        self.rss_kb = self.pss_kb = self.processes = 0
        self.cpu_start: dict[int, tuple[str, float]] = {}  # pid -> (stage, CPU s) when the window opened
        self.cpu_last: dict[int, float] = {}
        self.window: tuple[float, float] | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def measure_from(self, cpu_from: float, pss_at: float | None) -> None:
        """Open the CPU window at `cpu_from` and read PSS at `pss_at` (set once the sources stream; RSS is sampled
        from the start)."""
        self.cpu_from, self.pss_at = cpu_from, pss_at

    def _sample(self) -> None:
        while not self.done.wait(SAMPLE_EVERY_S):
            pids = _descendants(self.roots)
            rss = sum(_kb(f"/proc/{pid}/status", "VmRSS:") for pid in pids)
            if rss > self.rss_kb:
                self.rss_kb, self.processes = rss, len(pids)
            if self.pss_at is not None and not self.pss_kb and time.monotonic() >= self.pss_at:
                self.pss_kb = sum(_kb(f"/proc/{pid}/smaps_rollup", "Pss:") for pid in pids)
            self._sample_cpu(pids)

    def _sample_cpu(self, pids: list[int]) -> None:
        now = time.monotonic()
        if now < self.cpu_from:
            return
        opening = self.window is None
        for pid in pids:
            cpu, stage = _cpu_s(pid), _stage_of(pid)
            if cpu is None or stage is None:
                continue
            if opening:
                self.cpu_start[pid] = (stage, cpu)
            elif pid in self.cpu_start:
                self.cpu_last[pid] = cpu
        self.window = (now, now) if opening else (self.window[0], now)  # type: ignore[index]

    def stop(self) -> tuple[Memory, dict[str, float]]:
        """The service's memory, and each stage's CPU over the window in cores (CPU seconds per second), summed over
        its processes (a process that ended within the window counts up to its last sample)."""
        self.done.set()
        self.thread.join()
        cores: dict[str, float] = {}
        if self.window is not None and self.window[1] > self.window[0]:
            seconds = self.window[1] - self.window[0]
            for pid, (stage, start) in self.cpu_start.items():
                cores[stage] = cores.get(stage, 0.0) + (self.cpu_last.get(pid, start) - start) / seconds
        return Memory(self.rss_kb / 1024, self.pss_kb / 1024, self.processes), cores


def verdict_latencies(paths: list[Path]) -> np.ndarray:
    """Capture -> verdict of every verdict the pipelines wrote (their sinks' JSONL), in ms: pooled, so that the
    percentiles of separate pipelines mean the same as those of one."""
    return np.array([json.loads(line)["latency_ms"] for path in paths if path.exists()
                     for line in path.read_text().splitlines() if line])


def pooled_batch_mean(pipelines: list[dict[str, Any]]) -> float | None:
    """The mean infer batch over all pipelines: frames / batches (each pipeline's batches = scored / its mean)."""
    means = [(p["scored"], p["infer_batch_mean"]) for p in pipelines if p["infer_batch_mean"]]
    batches = sum(scored / mean for scored, mean in means)
    return sum(scored for scored, _ in means) / batches if batches else None


def run_fleet(settings: Settings, served: Served, mode: str, n: int, fps: float, seconds: float, work: Path, *,
              memory: bool = False, camera: CameraFactory = folder_camera) -> FleetRun:
    """N cameras at `fps` each for `seconds`, as one pipeline or N; `memory`: report the service's memory;
    `camera`: what each camera is (default the frame folder, preloaded)."""
    work.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    try:
        for i, cameras in enumerate(pipeline_cameras(mode, n)):
            verdicts = work / f"p{i}.verdicts.jsonl"
            child_settings = pipeline_settings(settings, served.model_dir, cameras, fps, seconds, verdicts, mode,
                                               camera)
            children.append(launch(child_settings, served, work, f"p{i}", verdicts))
        startup_s = settings.pipeline.supervisor.startup_timeout_s
        await_line(children, READY, startup_s)
        sampler = ServiceSampler([c.proc.pid for c in children], float("inf"), None)
        for child in children:
            assert child.proc.stdin is not None
            child.proc.stdin.write(GO)
            child.proc.stdin.flush()
        await_line(children, STREAMING, startup_s)
        now = time.monotonic()
        sampler.measure_from(now + CPU_WARMUP_S, now + seconds / 2 if memory else None)
        sup = settings.pipeline.supervisor
        deadline = time.monotonic() + seconds + sup.drain_timeout_s + sup.stop_timeout_s + 60
        for child in children:
            child.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        mem, cores = sampler.stop()
    finally:
        stop(children)
    pipelines = [summary_figures(json.loads(c.summary.read_text())) for c in children]
    lat = verdict_latencies([c.verdicts for c in children])
    scored_fps = sum(p["scored"] for p in pipelines) / seconds
    return FleetRun(
        mode=mode, cameras=n, fps=fps, seconds=seconds,
        frames_in=sum(p["frames_in"] for p in pipelines), scored=sum(p["scored"] for p in pipelines),
        dropped=sum(p["dropped"] for p in pipelines), unaccounted=sum(p["unaccounted"] for p in pipelines),
        p50_ms=float(np.percentile(lat, 50)) if lat.size else float("nan"),
        p99_ms=float(np.percentile(lat, 99)) if lat.size else float("nan"),
        batch_mean=pooled_batch_mean(pipelines), memory=mem if memory else None, load_avg=os.getloadavg()[0],
        pipelines=tuple(pipelines),
        stage_cpu_ms={stage: 1000 * busy / scored_fps for stage, busy in cores.items()} if scored_fps else {},
    )


# ---- the benchmark ----


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _describe(r: FleetRun) -> str:
    mem = f", RSS {r.memory.rss_mb:.0f} MB, PSS {r.memory.pss_mb:.0f} MB" if r.memory else ""
    return (f"{r.cameras} x {r.fps:.1f} fps {r.mode}: scored {r.scored}, dropped {r.dropped}, unaccounted "
            f"{r.unaccounted}, p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms{mem}, load {r.load_avg:.1f}")


def stage_cpu_line(r: FleetRun) -> str:
    """Each stage's CPU per frame scored, the busiest first, and their total."""
    parts = sorted(r.stage_cpu_ms.items(), key=lambda kv: -kv[1])
    return ("CPU per frame scored: " + ", ".join(f"{stage} {ms:.2f}" for stage, ms in parts)
            + f"; total {sum(r.stage_cpu_ms.values()):.2f} ms")


def search(settings: Settings, served: Served, mode: str, n: int, start: float, options: CamerasBenchOptions,
           work: Path) -> tuple[float, list[FleetRun]]:
    """The highest per-camera rate N cameras sustain without drops (and within options.max_p99_ms) in this mode, and
    the search's runs."""
    runs: list[FleetRun] = []

    def sustains(fps: float) -> bool:
        r = run_fleet(settings, served, mode, n, fps, options.search_duration, work / f"{mode}{n}-search{len(runs)}")
        runs.append(r)
        slow = options.max_p99_ms is not None and r.p99_ms > options.max_p99_ms
        _say(f"  search {_describe(r)} -> {'drops' if not r.sustained else 'p99 over' if slow else 'sustained'}")
        return r.sustained and not slow

    return highest_sustained(sustains, start, options.search_runs, options.search_precision), runs


@dataclass(frozen=True)
class Row:
    """One line of the table: N cameras in one mode."""

    cameras: int
    mode: str
    sustained_fps: float  # per camera
    search: tuple[FleetRun, ...]
    measured: FleetRun  # at the common rate

    @property
    def sustained_total_fps(self) -> float:
        return self.sustained_fps * self.cameras


def measure(settings: Settings, served: Served, n: int, guess: float, options: CamerasBenchOptions,
            work: Path) -> list[Row]:
    """Both modes at N cameras: the searches (from `guess` frames/s in total), then the common rate."""
    start = round(guess / n, 1)
    found = {mode: search(settings, served, mode, n, start, options, work) for mode in MODES}
    # A common rate both modes sustained (or, where one sustained none, half the start): latency and memory compare
    # at the same load.
    common = options.fps or min(best for best, _ in found.values()) or round(start / 2, 1)
    rows = []
    for mode, (best, runs) in found.items():
        measured = run_fleet(settings, served, mode, n, common, options.duration, work / f"{mode}{n}", memory=True)
        _say(f"measured {_describe(measured)}\n  {stage_cpu_line(measured)}")
        rows.append(Row(n, mode, best, tuple(runs), measured))
    return rows


def target(rows: list[Row], n: int = 4) -> dict[str, Any] | None:
    """The issue's target at N cameras: one pipeline >= 1.5x the frames/s of N separate ones (sustained), at most
    0.5x their RSS; None without both rows."""
    by_mode = {r.mode: r for r in rows if r.cameras == n}
    if set(by_mode) != set(MODES):
        return None
    one, sep = by_mode["one"], by_mode["separate"]
    assert one.measured.memory and sep.measured.memory
    fps_ratio = one.sustained_total_fps / sep.sustained_total_fps if sep.sustained_total_fps else float("inf")
    rss_ratio = one.measured.memory.rss_mb / sep.measured.memory.rss_mb
    return {"cameras": n, "fps_ratio": fps_ratio, "fps_reached": fps_ratio >= 1.5,
            "p99_ms_one": one.measured.p99_ms, "p99_ms_separate": sep.measured.p99_ms,
            "rss_ratio": rss_ratio, "rss_reached": rss_ratio <= 0.5,
            "pss_ratio": one.measured.memory.pss_mb / sep.measured.memory.pss_mb}


def run_bench(settings: Settings, options: CamerasBenchOptions) -> int:
    out_json = options.json or settings.output_dir / "bench" / "cameras.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    machine = figures_machine()
    try:
        model_dir, threshold, origin = bench_model(settings, options.model)
    except PipelineError as exc:
        print(f"stream-ad: {exc}", file=sys.stderr)
        return 2
    served = Served(model_dir, threshold)
    _say(f"model {model_dir} (threshold {threshold:.4f}, {origin}); cameras stream {frame_folder(settings)}")
    work = out_json.parent / "cameras_runs"
    # The first searches start a little below what one process scores in-process in batches; each next N's from the
    # most the previous N sustained in total (both modes from the same rate: noise in one search does not narrow
    # the range of the next).
    batched = batched_throughput(settings, model_dir)
    _say(f"in-process, batches of {settings.pipeline.infer.max_batch}: {batched:.1f} frames/s")
    guess = round(0.8 * batched, 1)
    figures: dict[str, Any] = {
        "machine": machine,
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "setup": {"model": str(model_dir), "threshold": threshold, "threshold_from": origin,
                  "in_process_batched_fps": batched,
                  "frame_folder": str(frame_folder(settings)), "infer": settings.pipeline.infer.model_dump(mode="json"),
                  "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}},
    }
    rows: list[Row] = []
    for n in options.cameras:
        rows += measure(settings, served, n, guess, options, work)
        guess = max([r.sustained_total_fps for r in rows if r.cameras == n] + [guess])
        # Written after each N: a long benchmark that fails later keeps what it measured.
        machine["load_avg_at_end"] = list(os.getloadavg())
        figures.update(rows=[_row_json(r) for r in rows], target_4_cameras=target(rows))
        out_json.write_text(json.dumps(figures, indent=2) + "\n")
    plot_path = options.plot or out_json.with_suffix(".png")
    plot(rows, plot_path)
    print(report(figures))
    print(f"figures: {out_json}\nplot: {plot_path}")
    return 0


def batched_throughput(settings: Settings, model_dir: Path) -> float:
    """Frames/s the model scores in this process in batches of pipeline.infer.max_batch."""
    model, _ = scoring_model(settings, model_dir)
    _, frames = load_frames(frame_folder(settings))
    return throughput(model, frames, settings.pipeline.infer.max_batch)


def _row_json(row: Row) -> dict[str, Any]:
    return {"cameras": row.cameras, "mode": row.mode, "sustained_fps_per_camera": row.sustained_fps,
            "sustained_total_fps": row.sustained_total_fps, "search": [asdict(r) for r in row.search],
            "measured": {**asdict(row.measured), "scored_fps": row.measured.scored_fps}}


def _table_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    head = ("N", "mode", "sust/cam", "sust total", "at fps/cam", "scored/s", "dropped", "p50 ms", "p99 ms", "batch",
            "RSS MB", "PSS MB", "load")
    yield "".join(f"{h:>11s}" for h in head)
    for r in rows:
        m = r["measured"]
        cells = (str(r["cameras"]), r["mode"], f"{r['sustained_fps_per_camera']:.1f}",
                 f"{r['sustained_total_fps']:.1f}", f"{m['fps']:.1f}", f"{m['scored_fps']:.1f}", str(m["dropped"]),
                 f"{m['p50_ms']:.0f}",
                 f"{m['p99_ms']:.0f}", f"{m['batch_mean']:.2f}" if m["batch_mean"] else "-",
                 f"{m['memory']['rss_mb']:.0f}", f"{m['memory']['pss_mb']:.0f}", f"{m['load_avg']:.1f}")
        yield "".join(f"{c:>11s}" for c in cells)


def report(f: dict[str, Any]) -> str:
    m = f["machine"]
    bound = f["setup"]["options"]["max_p99_ms"]
    within = "" if bound is None else f" and with p99 <= {bound:g} ms"
    lines = [f"bench-cameras on {m['cpus']} CPUs, load average at start {m['load_avg_at_start'][0]:.1f}, at end "
             f"{m['load_avg_at_end'][0]:.1f}",
             f"sust: the highest per-camera rate without drops{within} (search runs); the rest at the common rate "
             "'at fps/cam'",
             *_table_lines(f["rows"])]
    t = f["target_4_cameras"]
    if t is not None:
        lines += [
            f"4 cameras, one pipeline / 4 separate: sustained frames/s x{t['fps_ratio']:.3f} (target >= 1.5: "
            f"{'reached' if t['fps_reached'] else 'NOT reached'}; p99 at the common rate {t['p99_ms_one']:.0f} vs "
            f"{t['p99_ms_separate']:.0f} ms)",
            f"4 cameras, one pipeline / 4 separate: RSS x{t['rss_ratio']:.2f} (target <= 0.5: "
            f"{'reached' if t['rss_reached'] else 'NOT reached'}), PSS x{t['pss_ratio']:.2f}",
        ]
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    """Sustained frames/s and the service's memory against the number of cameras, one pipeline vs separate ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (fps_ax, mem_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for colour, (mode, label) in enumerate((("one", "one pipeline"), ("separate", "a pipeline per camera"))):
        mine = [r for r in rows if r.mode == mode]
        ns = [r.cameras for r in mine]
        fps_ax.plot(ns, [r.sustained_total_fps for r in mine], "o-", color=f"C{colour}", label=label)
        memory = [r.measured.memory for r in mine]
        mem_ax.plot(ns, [m.rss_mb / 1024 for m in memory if m], "o-", color=f"C{colour}", label=f"{label}, RSS")
        mem_ax.plot(ns, [m.pss_mb / 1024 for m in memory if m], "o--", color=f"C{colour}", label=f"{label}, PSS")
    fps_ax.set(xlabel="cameras", ylabel="frames/s scored, all cameras (no drops)", title="Throughput")
    mem_ax.set(xlabel="cameras", ylabel="GB, all processes of the service", title="Memory")
    for ax in (fps_ax, mem_ax):
        ax.set_xticks(sorted({r.cameras for r in rows}))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
