"""The console process: `python -m stream_ad.console PLAN.json`, started beside the stages by the run
(stream_ad.pipeline.services). It binds the tap the sink stage sends to, keeps the live view, follows the run's
reloads through PLAN.json (PlanFollower), and serves the page on pipeline.console.host:port until SIGTERM (or the
supervisor is gone)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from pathlib import Path

import zmq

from stream_ad.console.app import console_app
from stream_ad.console.drift import DriftStatus
from stream_ad.console.lineup import Lineup, read_lineup
from stream_ad.console.live import LiveView
from stream_ad.console.teach import TeachDesk
from stream_ad.errors import ArtefactError
from stream_ad.frames import Frame
from stream_ad.pipeline.plan import RunPlan
from stream_ad.pipeline.wire import BadMessage, decode
from stream_ad.runtime.logs import configure_logging

log = logging.getLogger("stream_ad.console")

TAP_HWM = 4  # tapped verdicts buffered here; a console that falls behind makes the tap drop (counted there)


class DriftReport:
    """The drift watch's gauges (each watched camera's at 0 from the start), and one log line each time a camera
    starts or stops drifting."""

    def __init__(self) -> None:
        from prometheus_client import Gauge

        self.statistic = Gauge("stream_ad_console_drift", "Drift watch: one-sided KS statistic of a camera's recent "
                               "ok scores against its model's calibration good scores (0 alike, 1 all higher)",
                               ["camera"], multiprocess_mode="livemax")
        self.detected = Gauge("stream_ad_console_drift_detected", "1 while the drift watch finds a camera's ok scores "
                              "higher than its model's calibration's (p below pipeline.console.drift.significance)",
                              ["camera"], multiprocess_mode="livemax")
        self.models: dict[str, str] = {}  # watched camera -> its model's key
        self.drifting: dict[str, bool] = {}
        self._lock = threading.Lock()  # the tap's receiver reports, the plan follower tracks

    def track(self, lineup: Lineup) -> None:
        """The cameras of `lineup` whose model keeps calibration scores get gauges (at 0: a camera moved to another
        model starts over); a camera no longer watched loses them."""
        watched = {c.name: c.model for c in lineup.cameras if lineup.model(c.model).good_scores is not None}
        with self._lock:
            for camera in self.models.keys() - watched.keys():
                for gauge in (self.statistic, self.detected):
                    gauge.labels(camera).set(0)  # the value its metrics file keeps (multiprocess mode) until we exit
                    gauge.remove(camera)
                self.drifting.pop(camera, None)
            for camera, key in watched.items():
                if self.models.get(camera) != key:
                    self.statistic.labels(camera).set(0)
                    self.detected.labels(camera).set(0)
                    self.drifting.pop(camera, None)
            self.models = watched

    def __call__(self, frame: Frame, status: DriftStatus) -> None:
        with self._lock:
            self.statistic.labels(frame.camera).set(status.statistic)
            self.detected.labels(frame.camera).set(int(status.drifting))
            if status.drifting == self.drifting.get(frame.camera, False):
                return
            self.drifting[frame.camera] = status.drifting
        if status.drifting:
            log.warning("drift on camera %s from frame %d: its ok scores sit higher than its model's calibration's "
                        "(median %.4f against %.4f, KS D %.3f, p %.2g over %d frames); false alarms will follow: "
                        "check light and material, then recalibrate", frame.camera, frame.frame_id,
                        status.live_median, status.reference_median, status.statistic, status.p_value, status.n)
        else:
            log.info("drift on camera %s is over from frame %d (KS p %.2g)", frame.camera, frame.frame_id,
                     status.p_value)


def warn_uncalibrated(lineup: Lineup, before: Lineup | None = None) -> None:
    """One warning per model (new in the lineup) whose threshold keeps no calibration scores."""
    known = {(m.spec.key, m.spec.info) for m in before.models} if before else set()
    for model in lineup.models:
        if model.good_scores is None and (model.spec.key, model.spec.info) not in known:
            log.warning("console: the threshold of model %s (%s) keeps no calibration scores: the drift watch of its "
                        "cameras is off (recalibrate with `stream-ad calibrate` to turn it on)", model.spec.key,
                        model.spec.model_dir)


class PlanFollower:
    """The console follows the run's reloads through its plan file. Why a file the run replaces (stream_ad.pipeline.
    services.publish_plan) and not a signal or a restart: a restarted console would lose its recent alarms, its
    drift windows and its page's connection for seconds of imports, and a SIGHUP sent while it still imports would
    kill it (the default action); the file is what a console (re)started at any moment reads anyway, so reading it
    again when it changes cannot miss a reload or see another plan than a restart would. The run replaces it whole
    (rename), so a new inode or time tells a new plan; one stat per POLL_S costs nothing. The line's frames never
    wait on any of it: the tap is the same socket before and after."""

    POLL_S = 0.2

    def __init__(self, path: Path, live: LiveView, report: DriftReport) -> None:
        self.path = path
        self.live = live
        self.report = report
        self.seen = self._state()

    def _state(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_ino, stat.st_mtime_ns

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.POLL_S):
            try:
                state = self._state()
            except OSError:  # between the run's write and its rename there is always a file: a run cleaning up
                continue
            if state != self.seen:
                self.seen = state
                try:
                    self.follow()
                except Exception:  # this thread must live on to follow the next reload
                    log.exception("console: following the run's new plan %s failed; the page shows the cameras "
                                  "as before", self.path)

    def follow(self) -> None:
        """Read the replaced plan; one that cannot be read is logged and the console serves on as before."""
        before = self.live.lineup
        try:
            lineup = read_lineup(RunPlan.from_json(self.path.read_text()))
        except (OSError, ValueError, KeyError, ArtefactError) as exc:
            log.error("console: cannot follow the run's new plan %s, the page shows the cameras as before: %s",
                      self.path, exc)
            return
        warn_uncalibrated(lineup, before)
        self.report.track(lineup)
        self.live.set_lineup(lineup)
        log.info("console: the run reloaded: %s", describe_change(before, lineup))


def describe_change(before: Lineup, after: Lineup) -> str:
    cams_before = {c.name: c.model for c in before.cameras}
    cams_after = {c.name: c.model for c in after.cameras}
    keys_before, keys_after = {m.spec.key: m.spec for m in before.models}, {m.spec.key: m.spec for m in after.models}
    parts = [f"{what} {', '.join(names)}" for what, names in (
        ("cameras added:", [f"{c} (model {k})" for c, k in cams_after.items() if c not in cams_before]),
        ("removed:", [c for c in cams_before if c not in cams_after]),
        ("moved:", [f"{c} (model {cams_before[c]} -> {k})" for c, k in cams_after.items()
                    if c in cams_before and cams_before[c] != k]),
        ("models served:", [f"{k} ({s.model_dir})" for k, s in keys_after.items() if keys_before.get(k) != s]),
        ("models retired:", [k for k, s in keys_before.items() if keys_after.get(k) != s]),
    ) if names]
    return "; ".join(parts) or "no change for the console"


def receive(endpoint: str, live: LiveView, stop: threading.Event) -> None:
    """Tapped verdicts -> the live view, until `stop` (or the supervisor is gone)."""
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, TAP_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    parent = os.getppid()
    while not stop.is_set() and os.getppid() == parent:
        if not sock.poll(200):
            continue
        try:
            live.add(decode(sock.recv_multipart(copy=False)))
        except BadMessage as exc:
            log.warning("console: skipped a tapped message: %s", exc)
    sock.close()
    stop.set()


def main(argv: list[str]) -> int:
    configure_logging(False, "%(asctime)s %(levelname)s [console %(process)d] %(name)s: %(message)s")
    plan_path = Path(argv[0])
    plan = RunPlan.from_json(plan_path.read_text())
    if plan.console is None:
        log.error("the run plan %s has no console (pipeline.console.enabled is false)", argv[0])
        return 2
    import uvicorn

    cfg = plan.settings.pipeline.console
    lineup = read_lineup(plan)
    warn_uncalibrated(lineup)
    report = DriftReport()
    report.track(lineup)
    live = LiveView(cfg, lineup, report)
    follower = PlanFollower(plan_path, live, report)
    desk = TeachDesk(live, plan.settings.output_dir / "console", cfg.teach_timeout_s)
    sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        log.error("console: cannot serve on %s:%d: %s (set pipeline.console.port)", cfg.host, cfg.port, exc)
        return 2
    server = uvicorn.Server(uvicorn.Config(console_app(live, desk, cfg.operators_file), log_level="warning",
                                           access_log=False, lifespan="off", timeout_graceful_shutdown=1))
    stop = threading.Event()
    receiver = threading.Thread(target=receive, args=(plan.console.tap, live, stop), name="tap", daemon=True)
    receiver.start()
    threading.Thread(target=follower.run, args=(stop,), name="plan", daemon=True).start()
    # The receiver stops on the supervisor's death; the server then stops too.
    threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit", True)), daemon=True).start()
    host, port = sock.getsockname()[:2]
    log.info("console: http://%s:%d/ (%s)", host, port, "; ".join(
        f"model {m.spec.key} {m.spec.model_dir}, threshold {m.spec.threshold:.4f}, cameras "
        f"{', '.join(c.name for c in lineup.cameras if c.model == m.spec.key)}" for m in lineup.models))
    server.run(sockets=[sock])
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
