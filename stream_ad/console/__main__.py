"""The console process: `python -m stream_ad.console PLAN.json`, started beside the stages by the run
(stream_ad.pipeline.services). It binds the tap the sink stage sends to, keeps the live view, and serves the page on
pipeline.console.host:port until SIGTERM (or the supervisor is gone)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import zmq

from stream_ad.artefact import read_manifest
from stream_ad.calibration.shift import GoodScores
from stream_ad.console.app import ModelFacts, console_app
from stream_ad.console.drift import DriftStatus
from stream_ad.console.live import LiveView
from stream_ad.console.teach import TeachDesk
from stream_ad.frames import Frame
from stream_ad.pipeline.plan import RunPlan
from stream_ad.pipeline.wire import BadMessage, decode
from stream_ad.runtime.logs import configure_logging
from stream_ad.scorers import scorer_class

log = logging.getLogger("stream_ad.console")

TAP_HWM = 4  # tapped verdicts buffered here; a console that falls behind makes the tap drop (counted there)


def model_facts(plan: RunPlan) -> tuple[ModelFacts, GoodScores | None]:
    manifest = read_manifest(plan.model_dir)
    record = manifest.threshold if isinstance(manifest.threshold, dict) else None
    calibrated = dt.datetime.fromisoformat(record["calibrated_at"]) if record and "calibrated_at" in record else None
    since = sum(1 for entry in manifest.teaching
                if calibrated is None or dt.datetime.fromisoformat(entry["time"]) >= calibrated)
    shown = None if record is None else {k: v for k, v in record.items() if k != "good_scores"}
    facts = ModelFacts(str(plan.model_dir), plan.model.version, manifest.method,
                       scorer_class(manifest.method).teachable, plan.threshold, plan.model.pixel_threshold, shown,
                       since)
    return facts, GoodScores.from_record(manifest.threshold)


def drift_report(cameras: list[str]) -> Callable[[Frame, DriftStatus], None]:
    """The drift watch's gauges (each configured camera's at 0 from the start), and one log line each time a camera
    starts or stops drifting."""
    from prometheus_client import Gauge

    statistic = Gauge("stream_ad_console_drift", "Drift watch: one-sided KS statistic of a camera's recent ok scores "
                      "against the calibration's good scores (0 alike, 1 all higher)", ["camera"],
                      multiprocess_mode="livemax")
    detected = Gauge("stream_ad_console_drift_detected", "1 while the drift watch finds a camera's ok scores "
                     "higher than the calibration's (p below pipeline.console.drift.significance)", ["camera"],
                     multiprocess_mode="livemax")
    drifting: dict[str, bool] = {}
    for camera in cameras:
        statistic.labels(camera).set(0)
        detected.labels(camera).set(0)

    def report(frame: Frame, status: DriftStatus) -> None:
        statistic.labels(frame.camera).set(status.statistic)
        detected.labels(frame.camera).set(int(status.drifting))
        if status.drifting != drifting.get(frame.camera, False):
            drifting[frame.camera] = status.drifting
            if status.drifting:
                log.warning("drift on camera %s from frame %d: its ok scores sit higher than the calibration's "
                            "(median %.4f against %.4f, KS D %.3f, p %.2g over %d frames); false alarms will follow: "
                            "check light and material, then recalibrate", frame.camera, frame.frame_id,
                            status.live_median, status.reference_median, status.statistic, status.p_value, status.n)
            else:
                log.info("drift on camera %s is over from frame %d (KS p %.2g)", frame.camera, frame.frame_id,
                         status.p_value)

    return report


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
    plan = RunPlan.from_json(Path(argv[0]).read_text())
    if plan.console is None:
        log.error("the run plan %s has no console (pipeline.console.enabled is false)", argv[0])
        return 2
    import uvicorn

    cfg = plan.settings.pipeline.console
    facts, good = model_facts(plan)
    if good is None:
        log.warning("console: the threshold keeps no calibration scores: the drift watch is off (recalibrate with "
                    "`stream-ad calibrate` to turn it on)")
    cameras = [cam for _, cam in plan.settings.pipeline.camera_sections()]
    live = LiveView(cfg, plan.threshold, good.sample if good else None, {c.camera: c.stale_after_s for c in cameras},
                    drift_report([c.camera for c in cameras]) if good else None)
    desk = TeachDesk(plan.console.control, plan.settings.output_dir / "console", plan.model_dir, cfg.teach_timeout_s)
    sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except OSError as exc:
        log.error("console: cannot serve on %s:%d: %s (set pipeline.console.port)", cfg.host, cfg.port, exc)
        return 2
    server = uvicorn.Server(uvicorn.Config(console_app(live, desk, facts, cfg.operators_file), log_level="warning",
                                           access_log=False, lifespan="off", timeout_graceful_shutdown=1))
    stop = threading.Event()
    receiver = threading.Thread(target=receive, args=(plan.console.tap, live, stop), name="tap", daemon=True)
    receiver.start()
    # The receiver stops on the supervisor's death; the server then stops too.
    threading.Thread(target=lambda: (stop.wait(), setattr(server, "should_exit", True)), daemon=True).start()
    host, port = sock.getsockname()[:2]
    log.info("console: http://%s:%d/ (model %s, threshold %.4f)", host, port, plan.model_dir, plan.threshold)
    server.run(sockets=[sock])
    stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
