"""The stage processes' lifecycle: spawn, readiness, restart with backoff, ordered stop.

Start: every stage but the sources starts (last first, so each input is listening), loads what it needs (the infer
stages: their models, warmed up) and reports ready; then the sources (one per camera) start reading their cameras. A
stage that fails before it is ready stops the run with its error (a missing model is not fixed by restarting).

Running: a stage that dies (kill -9, a crash) is counted in stream_ad_stage_restarts_total and started again after
a backoff that doubles while it keeps dying (restart_backoff_s .. restart_backoff_max_s); its peers keep running and
reconnect by themselves (ZeroMQ). The caller hears which stages died, so frames lost inside them are counted.
A ready stage that sends no heartbeat for hung_after_s (its worker stuck, its process stopped or frozen: see
liveness.py), or a restarted one not ready within startup_timeout_s, is hung: logged, counted in
stream_ad_stage_hangs_total, killed (SIGKILL) and restarted the same way; its frames count as stage_hung.

Stop: SIGTERM to each stage given (a stage still starting holds no frames: SIGKILL), stop_timeout_s to exit, then
SIGKILL. The supervisor reads no notices itself: `pump` (the run's) handles them while it waits, and hands it the
ones about its processes (on_ready, on_fatal, on_source_done).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream_ad.pipeline.errors import FATAL_EXIT, PipelineError
from stream_ad.pipeline.metrics import MULTIPROC_ENV, SupervisorMetrics, mark_stage_dead
from stream_ad.pipeline.notices import DropReason
from stream_ad.pipeline.plan import RunPlan, StageSpec
from stream_ad.pipeline.sdnotify import child_environment
from stream_ad.settings import SupervisorSettings

log = logging.getLogger("stream_ad.pipeline.supervisor")

QUICK_DEATH_S = 30.0  # a stage that dies sooner after its start backs off longer before the next


@dataclass
class StageProcess:
    spec: StageSpec
    plan_path: Path  # the plan it runs from (a reload writes a new one for the stages it adds)
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    starts: int = 0
    stopping: bool = False
    finished: bool = False  # a source that reached the end of its file(s)
    restart_at: float | None = None
    failures: int = 0  # consecutive quick deaths (for the backoff)
    started_at: float = 0.0
    last_beat: float = 0.0  # monotonic time of its last heartbeat (or of its readiness)
    fatal: str | None = None


@dataclass(frozen=True)
class Death:
    """A stage found dead (or killed as hung): the frames it held are dropped with `reason`."""

    label: str
    reason: DropReason


class Supervisor:
    def __init__(
        self,
        plan: RunPlan,
        plan_path: Path,
        metrics_dir: Path,
        metrics: SupervisorMetrics,
        *,
        pump: Callable[[float], None],
        first_id: Callable[[str], int],
        verbose: bool = False,
    ) -> None:
        """pump(timeout_s): handle the notices that arrive meanwhile; first_id(camera): the next frame id of the
        camera (a restarted source resumes there)."""
        self.metrics_dir = metrics_dir
        self.metrics = metrics
        self.cfg: SupervisorSettings = plan.settings.pipeline.supervisor
        self.pump = pump
        self.first_id = first_id
        self.verbose = verbose
        self.stages: dict[str, StageProcess] = {}  # by label
        self.add(plan.stages, plan_path)

    def add(self, specs: tuple[StageSpec, ...], plan_path: Path) -> None:
        """Stages to supervise (not yet started), run from the plan at `plan_path`."""
        for spec in specs:
            self.stages[spec.label] = StageProcess(spec, plan_path=plan_path)
            self.metrics.restarts.labels(spec.label)  # every series exists from the start, at 0
            self.metrics.hangs.labels(spec.label)
            self.metrics.stage_up.labels(spec.label).set(0)

    @property
    def sources(self) -> list[str]:
        return [label for label, p in self.stages.items() if p.spec.bind is None]

    # ---- start ----
    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in child_environment(dict(os.environ)).items() if not k.startswith("STREAM_AD_")}
        env[MULTIPROC_ENV] = str(self.metrics_dir)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _spawn(self, p: StageProcess) -> None:
        cmd = [sys.executable, "-m", "stream_ad.pipeline.worker", str(p.plan_path), p.spec.label]
        if p.spec.camera is not None:
            cmd += ["--first-id", str(self.first_id(p.spec.camera))]
        if self.verbose:
            cmd.append("--verbose")
        p.proc = subprocess.Popen(cmd, env=self._child_env(), stdin=subprocess.DEVNULL)
        p.ready = False
        p.starts += 1
        p.started_at = time.monotonic()
        p.restart_at = None
        log.debug("started %s (pid %d)", p.spec.label, p.proc.pid)

    def start(self, cancelled: Callable[[], bool], labels: list[str] | None = None) -> None:
        """Start these stages (default: all), the sources last, each group ready before the next; PipelineError
        naming the stage that fails or does not get ready within startup_timeout_s (or when cancelled() turns true
        meanwhile)."""
        labels = list(self.stages) if labels is None else labels
        sources = [label for label in labels if self.stages[label].spec.bind is None]
        order = [label for label in reversed(labels) if label not in sources]
        for group in (order, sources):
            for name in group:
                self._spawn(self.stages[name])
            self._await_ready(group, cancelled)

    def _await_ready(self, names: list[str], cancelled: Callable[[], bool]) -> None:
        timeout = self.cfg.startup_timeout_s
        deadline = time.monotonic() + timeout
        while not all(self.stages[n].ready for n in names):
            self.pump(0.1)
            for n in names:
                p = self.stages[n]
                if p.fatal or (p.proc is not None and p.proc.poll() is not None and not p.ready):
                    why = p.fatal or f"exited with status {p.proc.returncode if p.proc else '?'} before it was ready"
                    raise PipelineError(f"stage {p.spec.label} failed to start: {why}")
            if cancelled():
                raise PipelineError("stopped while the stages were starting")
            if time.monotonic() > deadline:
                waiting = [self.stages[n].spec.label for n in names if not self.stages[n].ready]
                raise PipelineError(f"stages not ready after {timeout:.0f} s: {', '.join(waiting)}")

    # ---- what the stages report about themselves ----
    def _by_label(self, label: str) -> StageProcess | None:
        return next((p for p in self.stages.values() if p.spec.label == label), None)

    def on_ready(self, label: str, pid: int) -> None:
        p = self._by_label(label)
        if p is None or p.proc is None or pid != p.proc.pid:  # a late notice of a process already replaced
            return
        p.ready = True
        p.last_beat = time.monotonic()
        self.metrics.stage_up.labels(label).set(1)
        if p.starts > 1:
            log.info("stage %s is back (pid %d)", label, pid)

    def on_heartbeat(self, label: str, pid: int) -> None:
        p = self._by_label(label)
        if p is not None and p.proc is not None and pid == p.proc.pid:
            p.last_beat = time.monotonic()

    def on_fatal(self, label: str, error: str) -> None:
        p = self._by_label(label)
        if p is not None:
            p.fatal = error

    def on_source_done(self, label: str, pid: int, camera: str) -> bool:
        """A source reached the end of its file(s). False (ignored) unless the current process of that camera's
        source sent it: a forged or stale one would stop the run as if it had ended well."""
        p = self.stages.get(label)
        if p is None or p.spec.camera != camera or p.proc is None or pid != p.proc.pid:
            return False
        p.finished = True
        return True

    @property
    def sources_finished(self) -> bool:
        """Every camera's source reached its end (the run is over)."""
        return all(self.stages[label].finished for label in self.sources)

    # ---- running ----
    def check(self, *, restart: bool) -> list[Death]:
        """Restart the stages whose backoff is over (when `restart`), kill the hung ones, schedule a restart for those
        that died; returns the stages found dead or hung now. PipelineError for a stage that reported a fatal
        error."""
        now = time.monotonic()
        died = []
        for p in self.stages.values():
            if p.proc is None:
                continue
            rc = p.proc.poll()
            if rc is None:
                hung = self._hung(p, now)
                if hung is not None:
                    p.proc.kill()  # SIGKILL ends a stopped process too
                    self.metrics.hangs.labels(p.spec.label).inc()
                    p.proc.wait()
                    self._died(p, now, f"hung: {hung}; killed")
                    died.append(Death(p.spec.label, DropReason.STAGE_HUNG))
                continue
            if p.restart_at is not None:
                if now >= p.restart_at and restart:
                    self._spawn(p)
                continue
            if p.stopping or p.finished:
                continue
            if (p.spec.bind is None and rc == 0) or rc == FATAL_EXIT:
                self.pump(0.2)  # its SourceDone or StageFatal notice may still be in flight
                if p.finished:
                    continue
            if p.fatal:
                raise PipelineError(f"stage {p.spec.label} failed: {p.fatal}")
            how = f"signal {-rc}" if rc < 0 else f"status {rc}"
            self._died(p, now, f"died ({how})")
            died.append(Death(p.spec.label, DropReason.STAGE_RESTART))
        return died

    def _hung(self, p: StageProcess, now: float) -> str | None:
        """Why a running stage counts as hung now, or None."""
        if p.stopping or p.finished:
            return None
        if p.ready:
            silent = now - p.last_beat
            if silent > self.cfg.hung_after_s:
                return f"no heartbeat for {silent:.1f} s (pipeline.supervisor.hung_after_s {self.cfg.hung_after_s:g})"
        elif now - p.started_at > self.cfg.startup_timeout_s:  # a restart; the first start is _await_ready's
            return f"not ready {now - p.started_at:.0f} s after its start (pipeline.supervisor.startup_timeout_s)"
        return None

    def _died(self, p: StageProcess, now: float, what: str) -> None:
        assert p.proc is not None
        self.metrics.stage_up.labels(p.spec.label).set(0)
        self.metrics.restarts.labels(p.spec.label).inc()
        with contextlib.suppress(Exception):  # its live gauges only: the run goes on without
            mark_stage_dead(self.metrics_dir, p.proc.pid)
        p.failures = p.failures + 1 if now - p.started_at < QUICK_DEATH_S else 1
        delay = min(self.cfg.restart_backoff_s * 2 ** (p.failures - 1), self.cfg.restart_backoff_max_s)
        log.error("stage %s (pid %d) %s; restarting in %.1f s", p.spec.label, p.proc.pid, what, delay)
        p.ready = False
        p.restart_at = now + delay

    def restarts(self) -> dict[str, int]:
        return {p.spec.label: p.starts - 1 for p in self.stages.values()}

    # ---- stop ----
    def stop(self, labels: list[str]) -> None:
        """SIGTERM them all, wait up to stop_timeout_s (pumping notices meanwhile), SIGKILL what is left."""
        procs = [self.stages[label] for label in labels]
        running = [p.proc for p in procs if p.proc is not None and p.proc.poll() is None]
        for p in procs:
            p.stopping = True
            p.restart_at = None
            if p.proc in running:
                # A stage still starting holds no frames: no drain to wait for.
                p.proc.send_signal(signal.SIGTERM if p.ready else signal.SIGKILL)
        timeout = self.cfg.stop_timeout_s
        deadline = time.monotonic() + timeout
        while any(proc.poll() is None for proc in running) and time.monotonic() < deadline:
            self.pump(0.05)
        for p in procs:
            if p.proc in running and p.proc.poll() is None:
                log.warning("stage %s did not stop within %.1f s: killing it", p.spec.label, timeout)
                p.proc.kill()
                p.proc.wait()
            self.metrics.stage_up.labels(p.spec.label).set(0)

    def stop_sources(self, labels: list[str] | None = None) -> None:
        """These sources (default: all). One that reached the end of its file(s) exits by itself once its last
        frames left its socket (at most drain_timeout_s): it is stopped only after that."""
        labels = self.sources if labels is None else labels
        deadline = time.monotonic() + self.cfg.drain_timeout_s

        def exiting() -> bool:
            return any(p.finished and p.proc is not None and p.proc.poll() is None
                       for p in (self.stages[label] for label in labels))

        while exiting() and time.monotonic() < deadline:
            self.pump(0.05)
        self.stop(labels)

    def stop_stages(self) -> None:
        """Every stage but the sources, together (the sources stopped first, the pipeline drained)."""
        self.stop([label for label, p in self.stages.items() if p.spec.bind is not None])

    def forget(self, labels: list[str]) -> None:
        """Stop supervising these stopped stages (removed by a reload)."""
        for label in labels:
            del self.stages[label]
