"""One pipeline run, start to summary: plans it, starts the stages (Supervisor), feeds their notices to the
accounting, serves /metrics, shows progress, talks to systemd, and stops everything in order.

    run_pipeline(settings, served) -> RunSummary    preflight, signals, run

Stop (SIGTERM/SIGINT, duration_s, or the end of every camera's file source): the sources stop reading, the frames
in flight get drain_timeout_s to reach a verdict, then the other stages get SIGTERM together (stop_timeout_s, then
SIGKILL). Whatever is left is counted as dropped for "shutdown". A second Ctrl-C skips the drain.

Reload (SIGHUP, `systemctl reload`): stream_ad.pipeline.reload.
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

from stream_ad.errors import ArtefactError, CalibrationError
from stream_ad.pipeline.accounting import Accounting
from stream_ad.pipeline.calibration_check import CalibrationCheck
from stream_ad.pipeline.curve import CurveGuard, pipeline_keys
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.inbox import NoticeInbox
from stream_ad.pipeline.ledger import Ledger, Refused
from stream_ad.pipeline.metrics import MetricsServer, SupervisorMetrics
from stream_ad.pipeline.notices import DropReason, Heartbeat, SourceDone, StageFatal, StageReady
from stream_ad.pipeline.plan import RunIdentity, RunPlan, plan_run
from stream_ad.pipeline.preflight import check_sources
from stream_ad.pipeline.progress import ProgressLine
from stream_ad.pipeline.reload import CameraChanges, camera_changes, fixed_differences
from stream_ad.pipeline.sdnotify import SystemdNotifier
from stream_ad.pipeline.served import ServedCameras, check_console_models, serve_cameras
from stream_ad.pipeline.services import SERVICES_PLAN, ServiceProcess, publish_plan
from stream_ad.pipeline.summary import RunSummary, infer_batch_mean, summarise
from stream_ad.pipeline.supervisor import Supervisor
from stream_ad.settings import ConfigError, Settings

log = logging.getLogger("stream_ad.pipeline.supervisor")

RUN_DIR_PREFIX = "stream-ad-"


class PipelineRun:
    def __init__(self, settings: Settings, served: ServedCameras, *, verbose: bool = False, out: TextIO | None = None,
                 services: tuple[str, ...] = (), reload: Callable[[], Settings] | None = None) -> None:
        """`served`: which artefact judges which camera; `services`: modules run beside the stages
        (stream_ad.pipeline.services), e.g. the operator's console; `reload`: reads the settings anew on SIGHUP
        (None: SIGHUP is ignored)."""
        self.settings = settings
        self.served = served
        self.service_modules = services
        self.services: list[ServiceProcess] = []
        self.cfg = settings.pipeline
        self.verbose = verbose
        self.out = out or sys.stderr
        self.reload_settings = reload
        self.reload_requested = False
        self.reloading = False
        self.reloads = 0
        self.thresholds = {camera: served.model_of(camera).spec.threshold for camera in served.camera_models}
        self.metrics = SupervisorMetrics(self.thresholds)
        self.identity = RunIdentity.new()
        self.ledger = Ledger(self.metrics, lost_after_s=self.cfg.supervisor.lost_after_s)
        self.accounting = Accounting(self.ledger, self.metrics)
        for camera in served.camera_models:
            self._add_camera(camera, served)
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

    def _add_camera(self, camera: str, served: ServedCameras) -> None:
        """A camera of the run, at the start or from a reload (its summary row stays after a reload removes it)."""
        model = served.model_of(camera)
        self.thresholds[camera] = model.spec.threshold
        self.metrics.threshold.labels(camera).set(model.spec.threshold)
        self.accounting.add_camera(camera, CalibrationCheck(model.good_scores, self.cfg.calibration_check, camera,
                                                            self.metrics))

    def preflight(self) -> None:
        """Errors worth knowing before any process starts (a stage would find them only after the model loaded)."""
        bad = [finding.detail for finding in check_sources(self.settings) if not finding.ok]
        if bad:
            raise PipelineError("; ".join(bad))

    # ---- stop requests ----
    def request_stop(self) -> None:
        if self.stop_requested:
            self.hurry = True
        self.stop_requested = True

    def request_reload(self) -> None:
        self.reload_requested = True

    def install_signals(self) -> None:
        """SIGTERM and Ctrl-C stop the run in order, SIGHUP reloads it (restored when it is over)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, lambda *_: self.request_stop())
        self._old_handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    # ---- notices ----
    def _pump(self, timeout_s: float) -> None:
        assert self.inbox is not None and self.supervisor is not None
        if self.reloading:  # the main loop waits on new stages (a model loading): it is not stuck
            self.systemd.watchdog("reloading: starting the new cameras' stages")
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
        """The end of a camera's file(s), if its source's own process says so; a forged one is refused (the last one
        would stop the run with success, so systemd would not restart it)."""
        assert self.supervisor is not None
        if not self.supervisor.on_source_done(stage, pid, camera):
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
        try:
            plan = plan_run(self.settings, models=[m.spec for m in self.served.models],
                            camera_models=self.served.camera_models, run_dir=self.run_dir, run=self.identity)
        except ValueError as exc:
            raise PipelineError(str(exc)) from None
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
        # They read a plan file of their own, which each reload replaces (the stages keep the plan they started on).
        publish_plan(self.run_dir / SERVICES_PLAN, plan)
        self.services = [ServiceProcess(module, self.run_dir / SERVICES_PLAN, metrics_dir, self.cfg.supervisor,
                                        self.metrics) for module in self.service_modules]
        for service in self.services:
            service.start()
        self.supervisor.start(cancelled=lambda: self.stop_requested)
        self._t_start = time.monotonic()
        self.systemd.ready(f"running: {len(plan.stages)} stages up, {self._cameras_shown()}")

    def _cameras_shown(self) -> str:
        cameras = list(self.served.camera_models)
        return f"{'cameras' if len(cameras) > 1 else 'camera'} {', '.join(cameras)}"

    def _next_frame_id(self, camera: str) -> int:
        return self.ledger.max_id.get(camera, self.identity.first_frame_id - 1) + 1

    def _supervise_while(self, going: Callable[[], bool]) -> None:
        """The main loop: notices, dead stages, vanished frames, progress, the systemd watchdog."""
        assert self.supervisor is not None
        while going():
            self._pump(0.05)
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
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

    # ---- reload ----
    def _reload(self) -> None:
        """SIGHUP: read the pipeline file again and start, stop or restart the cameras (and models) that changed
        while the others run on (stream_ad.pipeline.reload). A file that cannot be read, is invalid, changes more
        than the cameras or names an artefact that cannot be served is refused with the error: the line runs on."""
        assert self.supervisor is not None and self.run_dir is not None
        if self.reload_settings is None:
            log.warning("reload (SIGHUP) ignored: this run was not started from a pipeline file")
            return
        self.reloads += 1
        self.systemd.reloading()
        self.reloading = True
        try:
            self._apply_reload()
        finally:
            self.reloading = False
            self.systemd.ready(f"running: {self._cameras_shown()}")

    def _apply_reload(self) -> None:
        assert self.supervisor is not None and self.run_dir is not None
        try:
            new = self.reload_settings()
            fixed = fixed_differences(self.settings, new)
            if fixed:
                raise ConfigError(f"a reload changes pipeline.cameras and pipeline.model only; a restart is needed "
                                  f"for {', '.join(fixed)}")
            bad = [finding.detail for finding in check_sources(new) if not finding.ok]
            if bad:
                raise ConfigError("; ".join(bad))
            served = serve_cameras(new, self.served.models)
            check_console_models(new, served)
            changes = camera_changes(self.settings, self.served, new, served)
            if changes.new_models and not new.pipeline.cameras:
                raise ConfigError("a pipeline.source pipeline cannot change its model while it runs: list the camera "
                                  "under pipeline.cameras, or restart")
            plan = plan_run(new, models=[m.spec for m in served.models], camera_models=served.camera_models,
                            run_dir=self.run_dir, run=self.identity)
        except (ConfigError, PipelineError, ArtefactError, CalibrationError, ValueError, OSError) as exc:
            self.metrics.reloads.labels("refused").inc()
            log.error("reload refused, the line runs on as before: %s", exc)
            return
        if changes.none:
            log.info("reload: nothing changed")
            self.metrics.reloads.labels("applied").inc()
            return
        plan_path = self.run_dir / f"plan-{self.reloads}.json"
        plan_path.write_text(plan.to_json())
        if not self._start_models(plan, plan_path, changes.new_models):
            return
        # The services (the console) learn the new cameras and models now: the new models' stages are up (their
        # teaching channels bound) and the new cameras' sources, started next, take longer to send than a service
        # takes to read the plan.
        publish_plan(self.run_dir / SERVICES_PLAN, plan)
        read = self._swap_cameras(plan, plan_path, changes, served)
        self._retire_models(changes.retired_models, self.served, read)
        self.settings, self.cfg, self.served = new, new.pipeline, served
        self.metrics.reloads.labels("applied").inc()
        log.info("reload applied: %s", changes.describe())

    def _start_models(self, plan: RunPlan, plan_path: Path, keys: tuple[str, ...]) -> bool:
        """The stages of new models, ready before any camera sends them frames; False (refused, stopped again)
        when one fails to start."""
        assert self.supervisor is not None
        specs = tuple(spec for spec in plan.stages if spec.model in keys and spec.bind is not None)
        labels = [spec.label for spec in specs]
        self.supervisor.add(specs, plan_path)
        try:
            self.supervisor.start(cancelled=lambda: self.stop_requested, labels=labels)
        except PipelineError as exc:
            self.supervisor.stop(labels)
            self.supervisor.forget(labels)
            self.metrics.reloads.labels("refused").inc()
            log.error("reload refused, the line runs on as before: %s", exc)
            return False
        return True

    def _swap_cameras(self, plan: RunPlan, plan_path: Path, changes: CameraChanges, served: ServedCameras
                      ) -> dict[str, int]:
        """Stop the sources of removed and changed cameras (what they sent goes on to its verdict), then start
        those of added and changed ones (a changed camera's frame ids go on where they were). Returns the last frame
        id each stopped source read."""
        assert self.supervisor is not None
        running = {self.supervisor.stages[label].spec.camera: label for label in self.supervisor.sources}
        stopped = (*changes.removed, *changes.restarted)
        going = [running[camera] for camera in stopped]
        self.supervisor.stop_sources(going)
        self.supervisor.forget(going)
        read = {camera: self.ledger.max_id.get(camera, -1) for camera in stopped}
        for camera in (*changes.added, *changes.restarted):
            self._add_camera(camera, served)
        starting = tuple(spec for spec in plan.sources if spec.camera in (*changes.added, *changes.restarted))
        self.supervisor.add(starting, plan_path)
        labels = [spec.label for spec in starting]
        try:
            self.supervisor.start(cancelled=lambda: self.stop_requested, labels=labels)
        except PipelineError as exc:  # the cameras already running go on; these are named in the log
            log.error("reload: camera(s) %s did not start: %s", ", ".join((*changes.added, *changes.restarted)),
                      exc)
            self.supervisor.stop(labels)
            self.supervisor.forget(labels)
        return read

    def _retire_models(self, keys: tuple[str, ...], previous: ServedCameras, read: dict[str, int]) -> None:
        """Stop the stages of models no camera names any more, once the frames their cameras' stopped sources read
        (up to `read`: camera -> last frame id) are through (at most drain_timeout_s; what is left then is dropped
        as shutdown). A camera restarted on another model sends its new frames elsewhere: they are not waited for."""
        assert self.supervisor is not None
        if not keys:
            return
        cameras = [camera for camera, key in previous.camera_models.items() if key in keys]

        def through() -> bool:
            return all(fid > read.get(camera, -1) for camera in cameras for fid in self.ledger.open.get(camera, {}))

        deadline = time.monotonic() + self.cfg.supervisor.drain_timeout_s
        while not through() and time.monotonic() < deadline:
            self._pump(0.05)
            self.ledger.sweep()
        labels = [label for label, p in self.supervisor.stages.items() if p.spec.model in keys and p.spec.bind]
        self.supervisor.stop(labels)
        self.supervisor.forget(labels)

    def _going(self) -> bool:
        assert self.supervisor is not None
        duration_s = self.cfg.duration_s
        over = duration_s is not None and time.monotonic() - self._t_start >= duration_s
        return not (self.stop_requested or self.supervisor.sources_finished or over)

    def _shutdown(self, drain: bool) -> None:
        """Stop every stage in order (draining what is in flight first) and release the run's resources."""
        if self.supervisor is not None:
            self.systemd.stopping()
            t0 = time.monotonic()
            self.supervisor.stop_sources()
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
            self.ledger, thresholds=self.thresholds, run=self.identity, wall_s=self._t_end - self._t_start,
            restarts=self.supervisor.restarts(), batch_size_mean=self._batch_mean,
            metrics_url=self.metrics_server.url if self.metrics_server else None, failure=self.failure,
        )


def run_pipeline(settings: Settings, served: ServedCameras, *, verbose: bool = False, out: TextIO | None = None,
                 services: tuple[str, ...] = (), reload: Callable[[], Settings] | None = None) -> RunSummary:
    """Run the pipeline in this process's foreground until its sources end, duration_s passes, or SIGTERM/Ctrl-C;
    PipelineError when it cannot run. `served`: which artefact judges which camera (serve_cameras, serve_one);
    `services`: modules run beside the stages (the operator's console); `reload`: the settings read anew on SIGHUP."""
    pipeline = PipelineRun(settings, served, verbose=verbose, out=out, services=services, reload=reload)
    pipeline.preflight()
    pipeline.install_signals()
    return pipeline.run()
