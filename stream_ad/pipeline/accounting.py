"""The stages' notices about frames and the camera -> the ledger, the pipeline-wide Prometheus metrics and the
start-up calibration check. The supervisor process is the one place that sees every frame's fate, so these figures
are kept here, not in the stages."""

from __future__ import annotations

from stream_ad.frames import CameraState
from stream_ad.pipeline.calibration_check import CalibrationCheck
from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.metrics import SupervisorMetrics
from stream_ad.pipeline.notices import CameraStatus, FrameDone, FrameDropped, FrameIn


class Accounting:
    def __init__(self, ledger: Ledger, metrics: SupervisorMetrics) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self.calibration_checks: dict[str, CalibrationCheck] = {}  # by camera

    def add_camera(self, camera: str, calibration_check: CalibrationCheck | None = None) -> None:
        """A camera of the run (at the start, or added by a reload), with its start-up calibration check."""
        for counter in (self.metrics.frames_in, self.metrics.frames_scored, self.metrics.alarms,
                        self.metrics.camera_reconnects):
            counter.labels(camera)  # every series exists from the start, at 0
        self.metrics.camera_up.labels(camera).set(0)
        self.metrics.camera_stale.labels(camera).set(0)
        if calibration_check is not None:
            self.calibration_checks[camera] = calibration_check

    def record(self, notice: FrameIn | FrameDone | FrameDropped | CameraStatus, stage: str) -> None:
        """One notice from `stage` (its label) into the ledger and the metrics."""
        match notice:
            case FrameIn():
                self.ledger.on_in(notice.camera, notice.frame_id, notice.t_capture)
            case FrameDone():
                self.ledger.on_done(notice.camera, notice.frame_id, notice.t_capture, notice.t_verdict, notice.score,
                                    notice.verdict)
                check = self.calibration_checks.get(notice.camera)
                if check is not None:
                    check.observe(notice.score)
            case FrameDropped():
                self.ledger.on_drop(notice.camera, notice.frame_id, stage, notice.reason)
            case CameraStatus():
                self.metrics.camera_up.labels(notice.camera).set(int(notice.up))
                self.metrics.camera_stale.labels(notice.camera).set(int(notice.stale))
                # The first connection is no reconnect: only one after frames came counts.
                if notice.event is CameraState.UP and self.ledger.in_by_camera[notice.camera]:
                    self.metrics.camera_reconnects.labels(notice.camera).inc()
