"""The supervisor: plans the run, starts one process per stage, restarts a stage that dies, accounts for every frame,
serves /metrics, shows progress, and stops the pipeline in order.

Start: every stage but the source starts (last first, so each input is listening), loads what it needs (the infer
stage: the model, warmed up) and reports ready; then the source starts reading the camera. A stage that fails
before it is ready stops the run with its error (a missing model is not fixed by restarting).

Running: a stage that dies (kill -9, a crash) is counted in stream_ad_stage_restarts_total and started again after
a backoff that doubles while it keeps dying (restart_backoff_s .. restart_backoff_max_s); its peers keep running and
reconnect by themselves (ZeroMQ). Frames lost inside it are found by the ledger and counted as stage_restart.

Stop (SIGTERM/SIGINT, duration_s, or the end of a file source): the source stops reading, the frames in flight get
drain_timeout_s to reach a verdict, then each stage gets SIGTERM (stop_timeout_s, then SIGKILL). Whatever is left
is counted as dropped for "shutdown". A second Ctrl-C skips the drain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from stream_ad.settings import Settings
from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.message import read_notice
from stream_ad.pipeline.registry import stage_label
from stream_ad.pipeline.sdnotify import SystemdNotifier, child_environment
from stream_ad.pipeline.stage import StageSpec

log = logging.getLogger("stream_ad.pipeline.supervisor")


class PipelineError(RuntimeError):
    """The pipeline cannot run (a stage failed to start, a port is taken): the message says which and why."""


@dataclass
class _Proc:
    name: str
    spec: StageSpec
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    starts: int = 0
    stopping: bool = False
    finished: bool = False  # a source that reached the end of its file(s)
    restart_at: float | None = None
    failures: int = 0  # consecutive quick deaths (for the backoff)
    started_at: float = 0.0
    fatal: str | None = None


@dataclass
class RunSummary:
    camera: str
    wall_s: float
    frames_in: int
    scored: int
    alarms: int
    dropped: dict[str, int]
    rejected_messages: dict[str, int]  # messages that were not camera frames (injected, unreadable)
    in_flight_at_end: int
    unaccounted: int
    restarts: dict[str, int]
    source_fps: float
    verdict_fps: float
    latency_ms: dict[str, float]
    batch_size_mean: float | None
    threshold: float
    metrics_url: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "dropped_total": self.dropped_total}

    def table(self) -> str:
        lat = self.latency_ms
        rows = [
            ("frames in (camera)", f"{self.frames_in}  ({self.source_fps:.1f} fps read)"),
            ("verdicts", f"{self.scored}  ({self.verdict_fps:.1f} /s)"),
            ("alarms", f"{self.alarms}"),
            ("dropped", f"{self.dropped_total}" + (
                "  (" + ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) + ")" if self.dropped else "")),
            ("unaccounted", f"{self.unaccounted}"),
            ("rejected messages (not camera frames)", ", ".join(f"{k} {v}" for k, v in self.rejected_messages.items())
             or "0"),
            ("latency p50 / p90 / p99 / max",
             " / ".join(f"{lat.get(k, float('nan')):.1f}" for k in ("p50", "p90", "p99", "max")) + " ms"
             if lat else "-"),
            ("infer batch size (mean)", f"{self.batch_size_mean:.2f}" if self.batch_size_mean else "-"),
            ("stage restarts", ", ".join(f"{k} {v}" for k, v in self.restarts.items() if v) or "0"),
            ("decision threshold", f"{self.threshold:.4f}"),
            ("wall time", f"{self.wall_s:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"pipeline summary (camera {self.camera})", "-" * (width + 30)]
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        return "\n".join(lines)


def percentiles(latencies: np.ndarray) -> dict[str, float]:
    if latencies.size == 0:
        return {}
    ms = latencies * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
        "mean": float(ms.mean()),
    }


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        threshold: float,
        model_dir: Path | None,
        verbose: bool = False,
        progress: bool | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.pipeline
        self.threshold = threshold
        self.model_dir = model_dir
        self.verbose = verbose
        self.show_progress = self.cfg.progress if progress is None else progress
        self.out = out or sys.stderr
        self.run_dir: Path | None = None  # the run's own folder (sockets, plan, metrics files), made by start()
        self.metrics_dir = Path()
        self._old_handlers: dict[int, Any] = {}
        self.procs: dict[str, _Proc] = {}
        self.stop_requested = False
        self.hurry = False
        self.source_done = False
        self.metrics_server: Any = None
        self._sock: Any = None
        self._ctx: Any = None
        self._t_start = time.monotonic()
        self._last_progress = 0.0
        from stream_ad.pipeline.metrics import SupervisorMetrics

        self.metrics = SupervisorMetrics(threshold)
        self.ledger = Ledger(self.metrics, lost_after_s=self.cfg.supervisor.lost_after_s)
        self.systemd = SystemdNotifier()

    # ---- the plan ----
    def _endpoint(self, index: int, label: str, explicit: str | None) -> str:
        if explicit:
            return explicit
        if self.cfg.transport == "tcp":
            return f"tcp://127.0.0.1:{self.cfg.tcp_base_port + index}"
        return f"ipc://{self.run_dir}/{label}.sock"

    def plan(self) -> dict[str, StageSpec]:
        from stream_ad.settings import StageSettings
        from stream_ad.sinks import SINKS

        cfg = self.cfg
        notices = self._endpoint(0, "supervisor", cfg.supervisor.endpoint)
        needs_maps = any(SINKS[s.kind].needs_maps for s in cfg.sink.outputs)
        names = cfg.stages
        stage_cfg: dict[str, Any] = {}
        binds: dict[str, str | None] = {}
        connects: dict[str, str | None] = {}
        for i, name in enumerate(names):
            label = stage_label(name)
            sc = getattr(cfg, name, None) if name in ("preprocess", "infer", "decide", "sink") else None
            if name == "source":
                stage_cfg[name] = None
                binds[name] = None
                connects[name] = None
                continue
            sc = sc or StageSettings()
            stage_cfg[name] = sc
            binds[name] = self._endpoint(i, label, sc.endpoint)
            connects[name] = sc.connect or binds[name]
        specs: dict[str, StageSpec] = {}
        for i, name in enumerate(names):
            label = stage_label(name)
            downstream = connects[names[i + 1]] if i + 1 < len(names) else None
            if name == "source":
                downstream = cfg.source.connect or downstream
                spec = StageSpec(name, label, None, downstream, notices, policy=cfg.policy,
                                 camera=cfg.source.camera)
            else:
                sc = stage_cfg[name]
                spec = StageSpec(
                    name, label, binds[name], downstream, notices,
                    queue_size=sc.queue_size, policy=sc.policy or cfg.policy,
                    max_batch=sc.max_batch, max_wait_ms=sc.max_wait_ms, camera=cfg.source.camera,
                )
            if name == "preprocess":
                spec.extra["keep_image"] = needs_maps
            elif name == "infer":
                spec.extra["model_dir"] = str(self.model_dir)
                spec.extra["send_maps"] = needs_maps
            elif name == "decide":
                spec.extra["threshold"] = self.threshold
            specs[name] = spec
        return specs

    def _write_plan(self, specs: dict[str, StageSpec]) -> Path:
        plan = {
            "settings": self.settings.model_dump(mode="json"),
            "stages": {name: asdict(spec) for name, spec in specs.items()},
            "verbose": self.verbose,
        }
        assert self.run_dir is not None, "start() makes the run folder"
        path = self.run_dir / "plan.json"
        path.write_text(json.dumps(plan, indent=1))
        return path

    # ---- processes ----
    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in child_environment(dict(os.environ)).items() if not k.startswith("STREAM_AD_")}
        env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, p: _Proc) -> None:
        cmd = [sys.executable, "-m", "stream_ad.pipeline.worker", str(self.plan_path), p.name]
        if p.name == "source":
            cmd += ["--first-id", str(self.ledger.max_id.get(p.spec.camera, -1) + 1)]
        p.proc = subprocess.Popen(cmd, env=self._child_env(), stdin=subprocess.DEVNULL)
        p.ready = False
        p.starts += 1
        p.started_at = time.monotonic()
        p.restart_at = None
        log.debug("started %s (pid %d)", p.spec.label, p.proc.pid)

    def preflight(self) -> None:
        """Errors worth knowing before any process starts (a stage would find them only after the model loaded)."""
        src = self.cfg.source
        if src.kind == "folder":
            from stream_ad.pipeline.stages import source_folder
            from stream_ad.sources.folder import list_images

            try:
                list_images(source_folder(self.cfg, self.settings.data.root))
            except FileNotFoundError as exc:
                raise PipelineError(str(exc)) from None
        elif src.kind == "video" and src.path is not None and not src.path.is_file():
            raise PipelineError(f"video file not found: {src.path} (setting pipeline.source.path)")

    def start(self) -> None:
        import zmq

        from stream_ad.pipeline.metrics import MetricsServer

        self.preflight()
        self.run_dir = Path(tempfile.mkdtemp(prefix="stream-ad-"))
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        specs = self.plan()
        self.plan_path = self._write_plan(specs)
        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, 0)
        self._sock.setsockopt(zmq.LINGER, 0)
        notices = specs["source"].notices
        try:
            self._sock.bind(notices)
        except zmq.ZMQError as exc:
            raise PipelineError(f"cannot listen for stage notices on {notices}: {exc}") from None
        m = self.cfg.metrics
        if m.enabled:
            try:
                self.metrics_server = MetricsServer(self.metrics.registry, self.metrics_dir, m.host, m.port)
            except OSError as exc:
                raise PipelineError(
                    f"cannot serve /metrics on {m.host}:{m.port}: {exc} (set pipeline.metrics.port, 0 for any free "
                    "port, or pipeline.metrics.enabled: false)"
                ) from None
            print(f"metrics: {self.metrics_server.url}", file=self.out, flush=True)
        self.procs = {name: _Proc(name, spec) for name, spec in specs.items()}
        cam = self.cfg.source.camera
        for spec in specs.values():  # every series exists from the start, at 0
            self.metrics.restarts.labels(spec.label)
            self.metrics.stage_up.labels(spec.label).set(0)
        for child in (self.metrics.frames_in, self.metrics.frames_scored, self.metrics.alarms,
                      self.metrics.camera_reconnects):
            child.labels(cam)
        self.metrics.camera_up.labels(cam).set(0)
        self.metrics.camera_stale.labels(cam).set(0)
        order = [n for n in reversed(self.cfg.stages) if n != "source"]
        for name in order:
            self._spawn(self.procs[name])
        self._await_ready(order, self.cfg.supervisor.startup_timeout_s)
        self._spawn(self.procs["source"])
        self._await_ready(["source"], self.cfg.supervisor.startup_timeout_s)
        self._t_start = time.monotonic()
        self.systemd.ready(f"running: {len(self.procs)} stages up, camera {cam}")

    def _await_ready(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.procs[n].ready for n in names):
            self._pump(0.1)
            for n in names:
                p = self.procs[n]
                if p.fatal or (p.proc is not None and p.proc.poll() is not None and not p.ready):
                    why = p.fatal or f"exited with status {p.proc.returncode if p.proc else '?'} before it was ready"
                    self.shutdown(drain=False)
                    raise PipelineError(f"stage {p.spec.label} failed to start: {why}")
            if self.stop_requested:
                self.shutdown(drain=False)
                raise PipelineError("stopped while the stages were starting")
            if time.monotonic() > deadline:
                waiting = [self.procs[n].spec.label for n in names if not self.procs[n].ready]
                self.shutdown(drain=False)
                raise PipelineError(f"stages not ready after {timeout:.0f} s: {', '.join(waiting)}")

    # ---- notices ----
    def _pump(self, timeout_s: float) -> int:
        """Handle the notices that arrive within timeout_s (all that are queued, at least)."""
        import zmq

        n = 0
        if not self._sock.poll(int(timeout_s * 1000)):
            return 0
        while True:
            try:
                data = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return n
            n += 1
            msg = read_notice(data)
            if msg is not None:
                self._handle(msg)

    def _proc_of(self, msg: dict[str, Any]) -> _Proc | None:
        label = msg.get("stage")
        for p in self.procs.values():
            if p.spec.label == label:
                return p
        return None

    def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        try:
            if kind == "in":
                self.ledger.on_in(msg["cam"], int(msg["id"]), float(msg["ts"]))
            elif kind == "done":
                self.ledger.on_done(msg["cam"], int(msg["id"]), float(msg["ts"]), float(msg["tv"]), msg.get("score"),
                                    msg.get("verdict"))
            elif kind == "drop":
                fid = msg.get("id")
                self.ledger.on_drop(msg.get("cam"), int(fid) if fid is not None else None, str(msg.get("stage")),
                                    str(msg.get("reason")))
            elif kind == "ready":
                p = self._proc_of(msg)
                if p is not None and p.proc is not None and msg.get("pid") == p.proc.pid:
                    p.ready = True
                    self.metrics.stage_up.labels(p.spec.label).set(1)
                    if p.starts > 1:
                        log.info("stage %s is back (pid %d)", p.spec.label, p.proc.pid)
            elif kind == "fatal":
                p = self._proc_of(msg)
                if p is not None:
                    p.fatal = str(msg.get("error"))
            elif kind == "camera":
                cam = msg["cam"]
                self.metrics.camera_up.labels(cam).set(int(msg.get("up", 0)))
                self.metrics.camera_stale.labels(cam).set(int(msg.get("stale", 0)))
                if msg.get("event") == "up" and self.ledger.frames_in:
                    self.metrics.camera_reconnects.labels(cam).inc()
            elif kind == "source_done":
                self.source_done = True
                p = self.procs.get("source")
                if p is not None:
                    p.finished = True
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("malformed notice %s: %s", msg, exc)

    # ---- supervision ----
    def _check_children(self, allow_restart: bool = True) -> None:
        sup = self.cfg.supervisor
        now = time.monotonic()
        for p in self.procs.values():
            if p.proc is None:
                continue
            rc = p.proc.poll()
            if rc is None:
                continue
            if p.restart_at is not None:
                if now >= p.restart_at and allow_restart and not self.stop_requested:
                    self._spawn(p)
                continue
            if p.stopping or p.finished:
                continue
            if p.name == "source" and rc == 0:
                self._pump(0.2)  # its source_done notice may still be in flight
                if p.finished:
                    continue
            if p.fatal:
                raise PipelineError(f"stage {p.spec.label} failed: {p.fatal}")
            self.metrics.stage_up.labels(p.spec.label).set(0)
            self.metrics.restarts.labels(p.spec.label).inc()
            with contextlib.suppress(Exception):
                from stream_ad.pipeline.metrics import mark_stage_dead

                mark_stage_dead(self.metrics_dir, p.proc.pid)
            self.ledger.on_restart(p.spec.label)
            quick = now - p.started_at < 30.0
            p.failures = p.failures + 1 if quick else 1
            delay = min(sup.restart_backoff_s * 2 ** (p.failures - 1), sup.restart_backoff_max_s)
            how = f"signal {-rc}" if rc < 0 else f"status {rc}"
            log.error("stage %s (pid %d) died (%s); restarting in %.1f s", p.spec.label, p.proc.pid, how, delay)
            p.ready = False
            p.restart_at = now + delay

    def _progress(self, final: bool = False) -> None:
        now = time.monotonic()
        if not self.show_progress or (not final and now - self._last_progress < self.cfg.progress_interval_s):
            return
        self._last_progress = now
        lg = self.ledger
        lat = lg.recent_latencies()
        p = percentiles(lat)
        line = (
            f"[{now - self._t_start:6.1f}s] in {lg.frames_in}  scored {lg.scored}  dropped {lg.dropped_total}  "
            f"{lg.recent_fps():5.1f} fps  p50 {p.get('p50', 0):6.1f} ms  p99 {p.get('p99', 0):6.1f} ms  "
            f"alarms {lg.alarms}  in flight {lg.in_flight}"
        )
        if self.out.isatty():
            self.out.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def _watchdog(self) -> None:
        """Called from the main loop only: if that loop hangs, the pings stop and systemd restarts the unit."""
        lg = self.ledger
        self.systemd.watchdog(f"{lg.scored} verdicts, {lg.alarms} alarms, {lg.dropped_total} dropped, "
                              f"{lg.in_flight} in flight")

    def request_stop(self) -> None:
        if self.stop_requested:
            self.hurry = True
        self.stop_requested = True

    def install_signals(self) -> None:
        """SIGTERM and Ctrl-C stop the run in order (restored when it is over)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, lambda *_: self.request_stop())

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def run(self, duration_s: float | None = None) -> RunSummary:
        """Start (unless started), supervise until the source ends, duration_s passes or a stop is requested."""
        duration_s = duration_s if duration_s is not None else self.cfg.duration_s
        try:
            if self._sock is None:
                self.start()
            while not self.stop_requested and not self.source_done:
                if duration_s is not None and time.monotonic() - self._t_start >= duration_s:
                    break
                self._pump(0.05)
                self._check_children()
                self.ledger.sweep()
                self._progress()
                self._watchdog()
        finally:
            self.shutdown(drain=not self.hurry)
        return self.summary()

    def _stop_procs(self, procs: list[_Proc], timeout: float) -> None:
        """SIGTERM them all, wait up to timeout (handling notices meanwhile), SIGKILL what is left."""
        running = [p for p in procs if p.proc is not None and p.proc.poll() is None]
        for p in procs:
            p.stopping = True
            p.restart_at = None
        for p in running:
            # A stage still starting holds no frames: no drain to wait for.
            p.proc.send_signal(signal.SIGTERM if p.ready else signal.SIGKILL)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while any(p.proc.poll() is None for p in running) and time.monotonic() < deadline:  # type: ignore[union-attr]
            self._pump(0.05)
        for p in running:
            assert p.proc is not None
            if p.proc.poll() is None:
                log.warning("stage %s did not stop within %.1f s: killing it", p.spec.label, timeout)
                p.proc.kill()
                p.proc.wait()
        for p in procs:
            self.metrics.stage_up.labels(p.spec.label).set(0)

    def shutdown(self, drain: bool = True) -> None:
        if getattr(self, "_shut", False):
            return
        if self._sock is None:  # start() failed early: nothing runs, only its folder may exist
            self._shut = True
            self._remove_run_dir()
            self._restore_signals()
            return
        self._shut = True
        self.systemd.stopping()
        sup = self.cfg.supervisor
        t0 = time.monotonic()
        if "source" in self.procs:
            self._stop_procs([self.procs["source"]], sup.stop_timeout_s)
        if drain:
            deadline = time.monotonic() + sup.drain_timeout_s
            while self.ledger.in_flight and time.monotonic() < deadline and not self.hurry:
                self._pump(0.05)
                self._check_children()
                self.ledger.sweep()
                self._progress()
                self._watchdog()
        # The queues are empty now (or the drain ran out of time): the stages stop together.
        self._stop_procs([p for name, p in self.procs.items() if name != "source"], sup.stop_timeout_s)
        self._pump(0.2)
        left = self.ledger.close_all("shutdown")
        if left:
            log.warning("%d frame(s) still in flight at shutdown: counted as dropped (shutdown)", left)
        self._progress(final=True)
        log.debug("shutdown took %.1f s", time.monotonic() - t0)
        self._t_end = time.monotonic()
        self._batch_mean = self._infer_batch_mean()
        if self.metrics_server is not None:
            self.metrics_server.close()
        self._sock.close()
        self._remove_run_dir()
        self._restore_signals()

    def _remove_run_dir(self) -> None:
        if self.run_dir is not None and self.run_dir.name.startswith("stream-ad-"):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _infer_batch_mean(self) -> float | None:
        try:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            reg = CollectorRegistry()
            MultiProcessCollector(reg, path=str(self.metrics_dir))
            total = count = 0.0
            for metric in reg.collect():
                if metric.name == "stream_ad_batch_size":
                    for s in metric.samples:
                        if s.labels.get("stage") == "infer":
                            if s.name.endswith("_sum"):
                                total += s.value
                            elif s.name.endswith("_count"):
                                count += s.value
            return total / count if count else None
        except Exception:  # noqa: BLE001 - a figure for the summary only
            return None

    def summary(self) -> RunSummary:
        lg = self.ledger
        end = getattr(self, "_t_end", time.monotonic())
        wall = end - self._t_start
        read_span = (lg.t_last_in or 0) - (lg.t_first_in or 0)
        return RunSummary(
            camera=self.cfg.source.camera,
            wall_s=wall,
            frames_in=lg.frames_in,
            scored=lg.scored_from_camera,
            alarms=lg.alarms,
            dropped=lg.drops_by_reason(),
            rejected_messages=lg.foreign_by_reason(),
            in_flight_at_end=lg.in_flight,
            unaccounted=lg.unaccounted,
            restarts={p.spec.label: p.starts - 1 for p in self.procs.values()},
            source_fps=(lg.frames_in - 1) / read_span if read_span > 0 else 0.0,
            verdict_fps=lg.scored / wall if wall > 0 else 0.0,
            latency_ms=percentiles(np.frombuffer(lg.latencies, dtype=np.float64)),
            batch_size_mean=getattr(self, "_batch_mean", None),
            threshold=self.threshold,
            metrics_url=self.metrics_server.url if self.metrics_server else None,
        )
