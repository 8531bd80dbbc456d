"""What the page shows, kept from the tapped verdicts: per camera the latest frame, its rate and latency, whether it
still delivers, its drift watch; the recent alarms. Fed by the tap's receiver thread, read by the web handlers
(one lock; a version number that changes with each update tells the event stream when to send)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_ad.console.drift import DriftStatus, DriftWatch
from stream_ad.frames import Frame
from stream_ad.pipeline.tap import TAP_SEQ
from stream_ad.settings import ConsoleSettings

RATE_WINDOW_S = 5.0  # the camera's rate is counted over this many seconds
LATENCIES = 200  # the p99 latency is taken over this many recent verdicts


@dataclass(frozen=True)
class Alarm:
    id: int  # the console's own number (frame ids may start over when a run restarts)
    frame: Frame  # with its image and anomaly map
    t_received: float


@dataclass
class CameraView:
    latest: Frame
    t_received: float
    rate: deque[tuple[float, int]] = field(default_factory=deque)  # (verdict time, tap_seq)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES))
    drift: DriftWatch | None = None
    drift_status: DriftStatus | None = None

    def fps(self) -> float | None:
        if len(self.rate) < 2 or self.rate[-1][0] <= self.rate[0][0]:
            return None
        (t0, n0), (t1, n1) = self.rate[0], self.rate[-1]
        return (n1 - n0) / (t1 - t0)


class LiveView:
    def __init__(self, cfg: ConsoleSettings, threshold: float, good_scores: tuple[float, ...] | None,
                 stale_after_s: dict[str, float], on_drift: Callable[[Frame, DriftStatus], None] | None = None) -> None:
        """`stale_after_s`: camera -> the quiet time after which the page shows it stale (its stale_after_s)."""
        self.cfg = cfg
        self.threshold = threshold
        self.good_scores = good_scores
        self.stale_after_s = stale_after_s
        self.on_drift = on_drift
        self.cameras: dict[str, CameraView] = {}
        self.alarms: deque[Alarm] = deque(maxlen=cfg.recent_alarms)
        self.version = 0
        self._next_alarm = 1
        self._lock = threading.Lock()

    def add(self, frame: Frame) -> None:
        """One tapped verdict (its t_sent is the verdict's time)."""
        now = time.time()
        with self._lock:
            view = self.cameras.get(frame.camera)
            if view is None:
                view = self.cameras[frame.camera] = CameraView(frame, now, drift=self._drift_watch())
            view.latest, view.t_received = frame, now
            view.rate.append((frame.t_sent, int(frame.meta.get(TAP_SEQ, 0))))
            while view.rate and view.rate[0][0] < frame.t_sent - RATE_WINDOW_S:
                view.rate.popleft()
            view.latencies.append(frame.t_sent - frame.t_capture)
            if frame.verdict == "anomaly":
                self.alarms.appendleft(Alarm(self._next_alarm, frame, now))
                self._next_alarm += 1
            elif view.drift is not None and frame.score is not None:
                view.drift_status = view.drift.add(frame.score)
                if self.on_drift is not None:
                    self.on_drift(frame, view.drift_status)
            self.version += 1

    def _drift_watch(self) -> DriftWatch | None:
        return None if self.good_scores is None else DriftWatch(self.good_scores, self.threshold, self.cfg.drift)

    def latest(self, camera: str) -> Frame | None:
        with self._lock:
            view = self.cameras.get(camera)
            return None if view is None else view.latest

    def alarm(self, alarm_id: int) -> Alarm | None:
        with self._lock:
            return next((a for a in self.alarms if a.id == alarm_id), None)

    def snapshot(self) -> dict[str, Any]:
        """The page's data: per camera its figures, the recent alarms (newest first); JSON-able."""
        now = time.time()
        with self._lock:
            cameras = []
            for name, view in sorted(self.cameras.items()):
                f = view.latest
                fps = view.fps()
                drift = view.drift_status
                cameras.append({
                    "name": name, "frame_id": f.frame_id, "verdict": f.verdict, "score": f.score,
                    "source": Path(f.meta["path"]).name if "path" in f.meta else None,  # a file camera's image
                    "threshold": f.threshold, "fps": None if fps is None else round(fps, 2),
                    "p99_ms": round(1000 * float(np.percentile(view.latencies, 99)), 1),
                    "stale": now - view.t_received > self.stale_after_s.get(name, max(self.stale_after_s.values())),
                    "seconds_since": round(now - view.t_received, 1),
                    "drift": None if drift is None else {
                        "n": drift.n, "statistic": round(drift.statistic, 3), "p_value": drift.p_value,
                        "drifting": drift.drifting, "live_median": drift.live_median,
                        "reference_median": drift.reference_median},
                })
            alarms = [{"id": a.id, "camera": a.frame.camera, "frame_id": a.frame.frame_id, "score": a.frame.score,
                       "threshold": a.frame.threshold, "t_capture": a.frame.t_capture} for a in self.alarms]
            return {"version": self.version, "cameras": cameras, "alarms": alarms}
