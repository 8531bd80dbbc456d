"""What the page shows, kept from the tapped verdicts: per camera the latest frame, its model, its rate and latency,
whether it still delivers, its drift watch against its own model's calibration; the recent alarms; each model's facts
(the lineup). Fed by the tap's receiver thread, read by the web handlers (one lock; a version number that changes with
each update tells the event stream when to send)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream_ad.console.drift import DriftStatus, DriftWatch
from stream_ad.console.lineup import Lineup
from stream_ad.frames import Frame
from stream_ad.pipeline.tap import TAP_SEQ
from stream_ad.settings import ConsoleSettings

log = logging.getLogger("stream_ad.console")

RATE_WINDOW_S = 5.0  # the camera's rate is counted over this many seconds
LATENCIES = 200  # the p99 latency is taken over this many recent verdicts


@dataclass(frozen=True)
class Alarm:
    id: int  # the console's own number (frame ids may start over when a run restarts)
    frame: Frame  # with its image and anomaly map
    t_received: float
    model: str | None  # the key of the model that judged it, when received (None: not one the console serves)


@dataclass
class CameraView:
    latest: Frame
    t_received: float
    model: str  # ModelSpec.key
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
    def __init__(self, cfg: ConsoleSettings, lineup: Lineup,
                 on_drift: Callable[[Frame, DriftStatus], None] | None = None) -> None:
        self.cfg = cfg
        self.lineup = lineup
        self.on_drift = on_drift
        self.cameras: dict[str, CameraView] = {}
        self.alarms: deque[Alarm] = deque(maxlen=cfg.recent_alarms)
        self.version = 0
        self._next_alarm = 1
        self._unplanned: set[str] = set()  # cameras outside the lineup whose frames came (logged once each)
        self._lock = threading.Lock()

    def set_lineup(self, lineup: Lineup) -> None:
        """A reload's cameras and models: a removed camera leaves the page, one moved to another model starts its
        drift watch anew against that model's calibration; an added one appears with its first verdict."""
        with self._lock:
            self.lineup = lineup
            for name, view in list(self.cameras.items()):
                camera = lineup.camera(name)
                if camera is None:
                    del self.cameras[name]
                elif camera.model != view.model:
                    view.model, view.drift, view.drift_status = camera.model, self._drift_watch(camera.model), None
            self._unplanned.clear()
            self.version += 1

    def refresh_model(self, key: str) -> None:
        """Model `key`'s facts read again (a teaching changed its artefact)."""
        with self._lock:
            self.lineup = self.lineup.refreshed(key)
            self.version += 1

    def add(self, frame: Frame) -> None:
        """One tapped verdict (its t_sent is the verdict's time)."""
        now = time.time()
        with self._lock:
            camera = self.lineup.camera(frame.camera)
            if camera is None:
                # A removed camera's last frames, after a reload: the line delivered them; the page no longer
                # shows the camera.
                if frame.camera not in self._unplanned:
                    self._unplanned.add(frame.camera)
                    log.info("console: camera %s is not in the run plan (a reload removed it): its frames from %d "
                             "are not shown", frame.camera, frame.frame_id)
                return
            view = self.cameras.get(frame.camera)
            if view is None:
                view = self.cameras[frame.camera] = CameraView(frame, now, camera.model,
                                                                drift=self._drift_watch(camera.model))
            view.latest, view.t_received = frame, now
            view.rate.append((frame.t_sent, int(frame.meta.get(TAP_SEQ, 0))))
            while view.rate and view.rate[0][0] < frame.t_sent - RATE_WINDOW_S:
                view.rate.popleft()
            view.latencies.append(frame.t_sent - frame.t_capture)
            if frame.verdict == "anomaly":
                judged = self.lineup.judged(frame)
                self.alarms.appendleft(Alarm(self._next_alarm, frame, now, judged.spec.key if judged else None))
                self._next_alarm += 1
            elif view.drift is not None and frame.score is not None:
                view.drift_status = view.drift.add(frame.score)
                if self.on_drift is not None:
                    self.on_drift(frame, view.drift_status)
            self.version += 1

    def _drift_watch(self, key: str) -> DriftWatch | None:
        model = self.lineup.model(key)
        if model.good_scores is None:
            return None
        return DriftWatch(model.good_scores.sample, model.spec.threshold, self.cfg.drift)

    def latest(self, camera: str) -> Frame | None:
        with self._lock:
            view = self.cameras.get(camera)
            return None if view is None else view.latest

    def alarm(self, alarm_id: int) -> Alarm | None:
        with self._lock:
            return next((a for a in self.alarms if a.id == alarm_id), None)

    def snapshot(self) -> dict[str, Any]:
        """The page's data: per camera its figures and its model's key, the recent alarms (newest first), each
        model's facts by key; JSON-able."""
        now = time.time()
        with self._lock:
            cameras = []
            for name, view in sorted(self.cameras.items()):
                f = view.latest
                fps = view.fps()
                drift = view.drift_status
                cameras.append({
                    "name": name, "model": view.model, "frame_id": f.frame_id, "verdict": f.verdict, "score": f.score,
                    "source": _source(f),
                    "threshold": f.threshold, "fps": None if fps is None else round(fps, 2),
                    "p99_ms": round(1000 * float(np.percentile(view.latencies, 99)), 1),
                    "stale": now - view.t_received > self._stale_after_s(name),
                    "seconds_since": round(now - view.t_received, 1),
                    "drift": None if drift is None else {
                        "n": drift.n, "statistic": round(drift.statistic, 3), "p_value": drift.p_value,
                        "drifting": drift.drifting, "live_median": drift.live_median,
                        "reference_median": drift.reference_median},
                })
            alarms = [{"id": a.id, "camera": a.frame.camera, "model": a.model, "frame_id": a.frame.frame_id,
                       "source": _source(a.frame), "score": a.frame.score, "threshold": a.frame.threshold,
                       "t_capture": a.frame.t_capture} for a in self.alarms]
            models = {m.spec.key: {**dataclasses.asdict(m.facts),
                                   "cameras": [c.name for c in self.lineup.cameras if c.model == m.spec.key]}
                      for m in self.lineup.models}
            return {"version": self.version, "cameras": cameras, "alarms": alarms, "models": models}

    def _stale_after_s(self, name: str) -> float:
        camera = self.lineup.camera(name)
        assert camera is not None  # a camera leaves the view as it leaves the lineup
        return camera.stale_after_s


def _source(frame: Frame) -> str | None:
    """A file camera's image (its file name), else None."""
    return Path(frame.meta["path"]).name if "path" in frame.meta else None
