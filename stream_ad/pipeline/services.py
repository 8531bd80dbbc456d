"""Processes beside the stages that carry no frames (the operator's console, `pipeline.console`): started just before
the stages, restarted with the stages' backoff when they die, stopped after them. The line never waits on
one: a service that fails to start or dies is logged and restarted (stream_ad_stage_restarts_total{stage=NAME})
while the frames flow on. The run names them (stream_ad.commands.run); the pipeline knows only how to start one:

    python -m MODULE PLAN.json     the run plan, as the stage processes read it

PLAN.json stays the run's current plan: a reload that changes cameras or models replaces it whole (publish_plan, a
rename), so a service that follows reloads reads it again when its inode changes, and a service restarted at any
time starts with the plan in force (the console: stream_ad.console.__main__.PlanFollower).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stream_ad.pipeline.metrics import MULTIPROC_ENV, SupervisorMetrics, mark_stage_dead
from stream_ad.pipeline.plan import RunPlan
from stream_ad.pipeline.sdnotify import child_environment
from stream_ad.pipeline.supervisor import QUICK_DEATH_S
from stream_ad.settings import SupervisorSettings

log = logging.getLogger("stream_ad.pipeline.supervisor")

SERVICES_PLAN = "services-plan.json"  # in the run folder: the plan the services read, replaced by each reload


def publish_plan(path: Path, plan: RunPlan) -> None:
    """Make `plan` the one the services read at `path`: written beside it, then renamed over it, so a service never
    reads half a plan and sees a new file (inode) when it changed."""
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(plan.to_json())
    os.replace(staged, path)


class ServiceProcess:
    def __init__(self, module: str, plan_path: Path, metrics_dir: Path, cfg: SupervisorSettings,
                 metrics: SupervisorMetrics) -> None:
        self.module = module
        self.label = module.rpartition(".")[2]
        self.plan_path = plan_path
        self.metrics_dir = metrics_dir
        self.cfg = cfg
        self.metrics = metrics
        self.proc: subprocess.Popen[bytes] | None = None
        self.restart_at: float | None = None
        self.failures = 0  # consecutive quick deaths (for the backoff)
        self.started_at = 0.0
        metrics.restarts.labels(self.label)

    def start(self) -> None:
        # Like a stage: settings come from the plan alone, and only the supervisor speaks to systemd.
        env = {k: v for k, v in child_environment(dict(os.environ)).items() if not k.startswith("STREAM_AD_")}
        env[MULTIPROC_ENV] = str(self.metrics_dir)
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, str(self.plan_path)], env=env,
                                     stdin=subprocess.DEVNULL)
        self.restart_at = None
        self.started_at = time.monotonic()
        self.metrics.stage_up.labels(self.label).set(1)
        log.debug("started %s (pid %d)", self.label, self.proc.pid)

    def check(self, *, restart: bool) -> None:
        """Restart it once its backoff is over (when `restart`); schedule that when it died."""
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self.restart_at is not None:
            if restart and now >= self.restart_at:
                self.start()
            return
        self.failures = self.failures + 1 if now - self.started_at < QUICK_DEATH_S else 1
        delay = min(self.cfg.restart_backoff_s * 2 ** (self.failures - 1), self.cfg.restart_backoff_max_s)
        log.error("%s (pid %d) exited with status %s; the line runs on; restarting it in %.1f s", self.label,
                  self.proc.pid, self.proc.returncode, delay)
        self.metrics.stage_up.labels(self.label).set(0)
        self.metrics.restarts.labels(self.label).inc()
        with contextlib.suppress(Exception):  # its live gauges only
            mark_stage_dead(self.metrics_dir, self.proc.pid)
        self.restart_at = now + delay

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.cfg.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.1f s: killing it", self.label, self.cfg.stop_timeout_s)
                self.proc.kill()
                self.proc.wait()
        self.restart_at = None
        self.metrics.stage_up.labels(self.label).set(0)
