"""One pipeline run, start to summary: plans it, starts the stages (Supervisor), feeds their notices to the
accounting, serves /metrics, shows progress, talks to systemd, and stops everything in order.

    run_pipeline(settings, threshold, model_dir, good_scores) -> RunSummary    preflight, signals, run

Stop (SIGTERM/SIGINT, duration_s, or the end of a file source): the source stops reading, the frames in flight get
drain_timeout_s to reach a verdict, then the other stages get SIGTERM together (stop_timeout_s, then SIGKILL).
Whatever is left is counted as dropped for "shutdown". A second Ctrl-C skips the drain.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import zmq

from stream_ad.calibration.shift import GoodScores
from stream_ad.errors import ArtefactError
from stream_ad.frames import ModelInfo
from stream_ad.line.artefact import is_runtime_artefact, runtime_model_info
from stream_ad.pipeline.accounting import Accounting
from stream_ad.pipeline.calibration_check import CalibrationCheck
from stream_ad.pipeline.curve import CurveGuard, pipeline_keys
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.inbox import NoticeInbox
from stream_ad.pipeline.ledger import Ledger, Refused
from stream_ad.pipeline.metrics import MetricsServer, SupervisorMetrics
from stream_ad.pipeline.notices import DropReason, Heartbeat, SourceDone, StageFatal, StageReady
from stream_ad.pipeline.plan import RunIdentity, plan_run
from stream_ad.pipeline.preflight import check_source
from stream_ad.pipeline.progress import ProgressLine
from stream_ad.pipeline.sdnotify import SystemdNotifier
from stream_ad.pipeline.services import ServiceProcess
from stream_ad.pipeline.summary import RunSummary, infer_batch_mean, summarise
from stream_ad.pipeline.supervisor import Supervisor
from stream_ad.settings import Settings

log = logging.getLogger("stream_ad.pipeline.supervisor")

RUN_DIR_PREFIX = "stream-ad-"


class PipelineRun:
    def __init__(self, settings: Settings, *, threshold: float, model_dir: Path,
                 good_scores: GoodScores | None = None, verbose: bool = False, out: TextIO | None = None,
                 services: tuple[str, ...] = ()) -> None:
        """`services`: modules run beside the stages (stream_ad.pipeline.services), e.g. the operator's console."""
        self.settings = settings
        self.service_modules = services
        self.services: list[ServiceProcess] = []
        self.cfg = settings.pipeline
        self.threshold = threshold
        self.model_dir = model_dir
        self.verbose = verbose
        self.out = out or sys.stderr
        self.metrics = SupervisorMetrics(threshold)
        self.identity = RunIdentity.new()
        self.ledger = Ledger(self.metrics, lost_after_s=self.cfg.supervisor.lost_after_s)
        self.calibration_check = CalibrationCheck(good_scores, self.cfg.calibration_check, self.cfg.source.camera,
                                                  self.metrics)
        self.accounting = Accounting(self.ledger, self.metrics, self.cfg.source.camera, self.calibration_check)
        self.progress = ProgressLine(self.out, enabled=self.cfg.progress, interval_s=self.cfg.progress_interval_s)
        self.systemd = SystemdNotifier()
        self.run_dir: Path | None = None  # the run's own folder (sockets, plan, metrics files), made by _start()
        self.inbox: NoticeInbox | None = None
        self.supervisor: Supervisor | None = None
        self.metrics_server: MetricsServer | None = None
        self.stop_requested = False
        self.hurry = False  # a second stop request: skip the drain
        self.failure: str | None = None  # why a stage stopped the run (StageFatal after the start)
        self._old_handlers: dict[int, Any] = {}
        self._t_start = time.monotonic()
        self._t_end = self._t_start
        self._batch_mean: float | None = None  # read from the stages' metrics files before they are removed

    def preflight(self) -> None:
        """Errors worth knowing before any process starts (a stage would find them only after the model loaded)."""
        source = check_source(self.settings)
        if not source.ok:
            raise PipelineError(source.detail)

    # ---- stop requests ----
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

    # ---- notices ----
    def _pump(self, timeout_s: float) -> None:
        assert self.inbox is not None and self.supervisor is not None
        for envelope in self.inbox.receive(timeout_s):
            match envelope.notice:
                case StageReady():
                    self.supervisor.on_ready(envelope.stage, envelope.pid)
                case Heartbeat():
                    self.supervisor.on_heartbeat(envelope.stage, envelope.pid)
                case StageFatal(error=error):
                    self.supervisor.on_fatal(envelope.stage, error)
                case SourceDone(camera=camera):
                    self._source_done(envelope.stage, envelope.pid, camera)
                case frame_or_camera:
                    self.accounting.record(frame_or_camera, envelope.stage)

    def _source_done(self, stage: str, pid: int, camera: str) -> None:
        """The end of the run, if the source's own process says so; a forged one is refused (it would stop the run
        with success, so systemd would not restart it)."""
        assert self.supervisor is not None
        if camera != self.cfg.source.camera or not self.supervisor.on_source_done(stage, pid):
            self.ledger.refuse(Refused.SOURCE_DONE, "refused a source_done notice (camera %s) from %s pid %d: not "
                               "the source stage's process", camera, stage, pid)

    # ---- the run ----
    def _start(self) -> None:
        keys = pipeline_keys(self.cfg)  # PipelineError naming a missing or exposed key file, before anything starts
        if keys is None and self.cfg.uses_tcp():
            log.warning("pipeline.insecure_tcp: the tcp sockets of this run accept any peer, forged messages too")
        self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_DIR_PREFIX))
        metrics_dir = self.run_dir / "metrics"
        metrics_dir.mkdir()
        plan = plan_run(self.settings, model_dir=self.model_dir, threshold=self.threshold,
                        model=self._model_info(), run_dir=self.run_dir, run=self.identity)
        plan_path = self.run_dir / "plan.json"
        plan_path.write_text(plan.to_json())
        self.inbox = NoticeInbox(plan.notices, CurveGuard(keys, zmq.Context.instance(), self.metrics.rejected_peers))
        m = self.cfg.metrics
        if m.enabled:
            try:
                self.metrics_server = MetricsServer(self.metrics.registry, metrics_dir, m.host, m.port)
            except OSError as exc:
                raise PipelineError(
                    f"cannot serve /metrics on {m.host}:{m.port}: {exc} (set pipeline.metrics.port, 0 for any free "
                    "port, or pipeline.metrics.enabled: false)"
                ) from None
            print(f"metrics: {self.metrics_server.url}", file=self.out, flush=True)
        log.info("run %s: frame ids from %d", self.identity.run_id, self.identity.first_frame_id)
        self.supervisor = Supervisor(plan, plan_path, metrics_dir, self.metrics, pump=self._pump,
                                     first_id=self._next_frame_id, verbose=self.verbose)
        # Services first: never waited on, they are most likely up by the time the stages are and frames flow.
        self.services = [ServiceProcess(module, plan_path, metrics_dir, self.cfg.supervisor, self.metrics)
                         for module in self.service_modules]
        for service in self.services:
            service.start()
        self.supervisor.start(cancelled=lambda: self.stop_requested)
        self._t_start = time.monotonic()
        self.systemd.ready(f"running: {len(plan.stages)} stages up, camera {self.cfg.source.camera}")

    def _model_info(self) -> ModelInfo:
        try:
            if is_runtime_artefact(self.model_dir):
                return runtime_model_info(self.model_dir)
            from stream_ad.artefact import model_info  # imports torch: only for a model artefact

            return model_info(self.model_dir)
        except ArtefactError as exc:
            raise PipelineError(f"cannot read the model artefact {self.model_dir}: {exc}") from None

    def _next_frame_id(self) -> int:
        return self.ledger.max_id.get(self.cfg.source.camera, self.identity.first_frame_id - 1) + 1

    def _supervise_while(self, going: Callable[[], bool]) -> None:
        """The main loop: notices, dead stages, vanished frames, progress, the systemd watchdog."""
        assert self.supervisor is not None
        while going():
            self._pump(0.05)
            for death in self.supervisor.check(restart=not self.stop_requested):
                self.ledger.on_restart(death.label, death.reason)
            for service in self.services:
                service.check(restart=not self.stop_requested)
            self.ledger.sweep()
            self.progress.show(self.ledger, time.monotonic() - self._t_start)
            # From the main loop only: if this loop hangs, the pings stop and systemd restarts the unit.
            lg = self.ledger
            self.systemd.watchdog(f"{lg.scored} verdicts, {lg.alarms} alarms, {lg.dropped_total} dropped, "
                                  f"{lg.in_flight} in flight")

    def run(self) -> RunSummary:
        """Start, supervise until the source ends, duration_s passes, a stop is requested or a stage stops the run
        (the summary's `failure` says why); stop; summarise. PipelineError when it cannot start."""
        started = False
        try:
            self._start()
            started = True
            self._supervise_while(self._going)
        except PipelineError as exc:
            if not started:
                raise
            self.failure = str(exc)
            log.error("the run stops: %s", exc)
        finally:
            # After a failure nothing reaches a verdict any more: no drain.
            self._shutdown(drain=started and not self.hurry and self.failure is None)
        return self._summary()

    def _going(self) -> bool:
        assert self.supervisor is not None
        duration_s = self.cfg.duration_s
        over = duration_s is not None and time.monotonic() - self._t_start >= duration_s
        return not (self.stop_requested or self.supervisor.source_finished or over)

    def _shutdown(self, drain: bool) -> None:
        """Stop every stage in order (draining what is in flight first) and release the run's resources."""
        if self.supervisor is not None:
            self.systemd.stopping()
            t0 = time.monotonic()
            self.supervisor.stop_source()
            if drain:
                deadline = time.monotonic() + self.cfg.supervisor.drain_timeout_s
                self._supervise_while(
                    lambda: bool(self.ledger.in_flight) and time.monotonic() < deadline and not self.hurry)
            # The queues are empty now (or the drain ran out of time): the stages stop together.
            self.supervisor.stop_stages()
            for service in self.services:
                service.stop()
            self._pump(0.2)
            left = self.ledger.close_all(DropReason.SHUTDOWN)
            if left:
                log.warning("%d frame(s) still in flight at shutdown: counted as dropped (shutdown)", left)
            self.progress.show(self.ledger, time.monotonic() - self._t_start, final=True)
            log.debug("shutdown took %.1f s", time.monotonic() - t0)
        self._t_end = time.monotonic()
        if self.run_dir is not None:
            self._batch_mean = infer_batch_mean(self.run_dir / "metrics")
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.inbox is not None:
            self.inbox.close()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self._restore_signals()

    def _summary(self) -> RunSummary:
        assert self.supervisor is not None
        return summarise(
            self.ledger, camera=self.cfg.source.camera, run=self.identity, wall_s=self._t_end - self._t_start,
            restarts=self.supervisor.restarts(), threshold=self.threshold, batch_size_mean=self._batch_mean,
            metrics_url=self.metrics_server.url if self.metrics_server else None, failure=self.failure,
        )


def run_pipeline(settings: Settings, threshold: float, model_dir: Path, good_scores: GoodScores | None = None, *,
                 verbose: bool = False, out: TextIO | None = None, services: tuple[str, ...] = ()) -> RunSummary:
    """Run the pipeline in this process's foreground until its source ends, duration_s passes, or SIGTERM/Ctrl-C;
    PipelineError when it cannot run. `good_scores`: those the threshold was calibrated on, for the start-up check
    (None: no check); `services`: modules run beside the stages (the operator's console)."""
    pipeline = PipelineRun(settings, threshold=threshold, model_dir=model_dir, good_scores=good_scores,
                           verbose=verbose, out=out, services=services)
    pipeline.preflight()
    pipeline.install_signals()
    return pipeline.run()
