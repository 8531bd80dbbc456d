"""Frame accounting: every frame the camera gave ends in exactly one of verdict or dropped-with-a-reason.

The supervisor feeds the ledger the stages' notices: "in" (the source read it), "done" (the last stage emitted its
verdict), "drop" (a stage dropped it, with the reason). Frames can also vanish without a notice: inside a stage
that was killed, or in a socket buffer at shutdown. Those are found without guessing from timing alone:

- Frames of one camera travel one chain of single processes, first in, first out (a bounded queue drops but never
  reorders). So once a later frame of the same camera has its verdict, an earlier frame still open can no longer
  arrive: it is dropped as "stage_restart" ("stage_hung" for a stage killed as hung) when a stage died while it was
  in flight, else as "lost" (which would be a bug, and is counted as such rather than hidden). A short settling time
  lets drop notices, which travel on another socket, arrive first.
- At shutdown, what is still open after the drain is dropped as "shutdown".
- Safety net: a frame open for lost_after_s without any of the above is dropped as "lost".

A late notice for a frame already closed is ignored (logged), so no frame is counted twice. A verdict or drop for a
frame id the source cannot have given (below the run's first id, or more than id_window above the highest it
announced) is refused and counted (`refused`, stream_ad_rejected_notices_total), and only verdicts of announced frames
overtake others: a forged id must not turn real frames into "lost".
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_ad.pipeline.latency_sketch import LatencySketch
from stream_ad.pipeline.notices import DropReason
from stream_ad.pipeline.throttled_log import ThrottledLog

log = logging.getLogger("stream_ad.pipeline.ledger")

CLOSED_MEMORY_S = 300.0
RECENT_S = 60.0  # verdict latencies kept for the live figures
# How far a fate may run ahead of the highest id the source announced: its "in" notice travels on another connection
# and may come a little later, never thousands of frames later.
ID_WINDOW = 10_000
REFUSAL_LOG_EVERY_S = 10.0


class Refused(enum.StrEnum):
    """Notices refused as impossible: the label `reason` of stream_ad_rejected_notices_total."""

    FRAME_ID = "frame_id"  # a fate for a frame id outside the run's window
    SOURCE_DONE = "source_done"  # not from the source stage's current process


@dataclass(frozen=True)
class CameraFigures:
    """One camera's accounting: in = scored + dropped (by reason) + in flight (+ unaccounted, 0 unless broken)."""

    camera: str
    frames_in: int
    scored: int
    alarms: int
    dropped: dict[str, int]  # by reason
    in_flight: int
    unaccounted: int
    latency_ms: dict[str, float]  # p50 / p90 / p99 / max / mean


@dataclass
class _Open:
    t_capture: float
    t_in: float  # monotonic


class Ledger:
    def __init__(self, metrics: Any | None = None, settle_s: float = 1.0, lost_after_s: float = 30.0,
                 id_window: int = ID_WINDOW) -> None:
        self.metrics = metrics
        self.settle_s = settle_s
        self.lost_after_s = lost_after_s
        self.id_window = id_window
        self.open: dict[str, OrderedDict[int, _Open]] = {}
        # Fates seen before their "in" notice: key -> (monotonic time, (stage, reason) of a drop or None for a
        # verdict). Matched when "in" arrives; what never matches came from outside the camera (an injected message).
        self.early: dict[tuple[str, int], tuple[float, tuple[str, str] | None]] = {}
        self.closed: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.max_id: dict[str, int] = {}
        self.first_id: dict[str, int] = {}
        self.refused: Counter[Refused] = Counter()  # notices refused as impossible, by reason
        self._refusals = ThrottledLog(log, REFUSAL_LOG_EVERY_S)
        if metrics is not None:
            for refused in Refused:  # every series from the start, at 0: an alert on increase() sees the first one
                metrics.rejected_notices.labels(refused)
        self.in_by_camera: Counter[str] = Counter()
        self.scored_by_camera: Counter[str] = Counter()  # foreign verdicts included (foreign() tells them)
        self.alarms_by_camera: Counter[str] = Counter()
        self.dropped: Counter[tuple[str, str, str]] = Counter()  # (camera, stage, reason) -> frames
        self.unknown_drops: Counter[tuple[str, str]] = Counter()  # drops of messages without a readable frame id
        self.latency: dict[str, LatencySketch] = {}  # by camera: every verdict's, in fixed memory
        self.recent: deque[tuple[float, float]] = deque()  # (monotonic, latency) of the last verdicts
        self._pending_verdicts: deque[tuple[float, str, int]] = deque()  # (monotonic, camera, id) settling
        self._safe_below: dict[str, int] = {}
        self._restarts: list[tuple[float, str, str]] = []  # (monotonic, stage, reason of the frames it held)
        self._expired_foreign: Counter[tuple[str, tuple[str, str] | None]] = Counter()  # (camera, fate)
        self.t_first_in: float | None = None
        self.t_last_in: float | None = None
        self.t_first_capture: float | None = None
        self.t_last_capture: float | None = None

    # ---- notices ----
    @property
    def in_flight(self) -> int:
        return sum(len(d) for d in self.open.values())

    def _close(self, cam: str, fid: int) -> _Open | None:
        entry = self.open.get(cam, {}).pop(fid, None)
        now = time.monotonic()
        self.closed[(cam, fid)] = now
        while self.closed and now - next(iter(self.closed.values())) > CLOSED_MEMORY_S:
            self.closed.popitem(last=False)
        if self.metrics is not None:
            self.metrics.in_flight.set(self.in_flight)
        return entry

    def on_in(self, cam: str, fid: int, t_capture: float) -> None:
        now = time.monotonic()
        self.in_by_camera[cam] += 1
        self.max_id[cam] = max(self.max_id.get(cam, -1), fid)
        self.first_id[cam] = min(self.first_id.get(cam, fid), fid)
        self.t_first_in = self.t_first_in or now
        self.t_last_in = now
        self.t_first_capture = self.t_first_capture or t_capture
        self.t_last_capture = t_capture
        if self.metrics is not None:
            self.metrics.frames_in.labels(cam).inc()
        if self.early.pop((cam, fid), None) is not None:
            self.closed[(cam, fid)] = now  # its fate was already counted
            return
        self.open.setdefault(cam, OrderedDict())[fid] = _Open(t_capture, now)
        if self.metrics is not None:
            self.metrics.in_flight.set(self.in_flight)

    def refuse(self, reason: Refused, msg: str, *args: object) -> None:
        """Count a notice refused as impossible (by reason) and log it, rate-limited."""
        self.refused[reason] += 1
        if self.metrics is not None:
            self.metrics.rejected_notices.labels(reason).inc()
        self._refusals.warning(msg, *args)

    def _possible(self, cam: str, fid: int, what: str) -> bool:
        if cam not in self.max_id:
            return True  # nothing announced yet: held as early, a foreign message unless its "in" comes
        if self.first_id[cam] <= fid <= self.max_id[cam] + self.id_window:
            return True
        self.refuse(Refused.FRAME_ID, "refused %s for frame %s/%d: the run's ids are %d..%d so far", what, cam, fid,
                    self.first_id[cam], self.max_id[cam])
        return False

    def _fate_is_new(self, cam: str, fid: int, what: str, drop: tuple[str, str] | None = None) -> bool:
        if (cam, fid) in self.closed or (cam, fid) in self.early:
            log.debug("ignoring %s for frame %s/%d: already accounted for", what, cam, fid)
            return False
        if fid not in self.open.get(cam, {}):
            self.early[(cam, fid)] = (time.monotonic(), drop)  # its "in" may still be on its way
        return True

    def on_done(self, cam: str, fid: int, t_capture: float, t_verdict: float, score: float | None,
                verdict: str | None) -> None:
        if not (self._possible(cam, fid, "a verdict") and self._fate_is_new(cam, fid, "a verdict")):
            return
        self._close(cam, fid)
        latency = max(0.0, t_verdict - t_capture)
        now = time.monotonic()
        self.scored_by_camera[cam] += 1
        self.latency.setdefault(cam, LatencySketch()).add(latency)
        self.recent.append((now, latency))
        while now - self.recent[0][0] > RECENT_S:
            self.recent.popleft()
        self._pending_verdicts.append((now, cam, fid))
        alarm = verdict == "anomaly"
        self.alarms_by_camera[cam] += alarm
        if self.metrics is not None:
            self.metrics.frames_scored.labels(cam).inc()
            self.metrics.latency.labels(cam).observe(latency)
            if score is not None:
                self.metrics.score.labels(cam).observe(score)
            if alarm:
                self.metrics.alarms.labels(cam).inc()

    def on_drop(self, cam: str | None, fid: int | None, stage: str, reason: str) -> None:
        if cam is None or fid is None:
            self.unknown_drops[(stage, reason)] += 1
            self._count_drop(cam or "unknown", stage, reason)
            return
        what = f"a drop ({reason})"
        if not (self._possible(cam, fid, what) and self._fate_is_new(cam, fid, what, (stage, reason))):
            return
        self._close(cam, fid)
        self._count_drop(cam, stage, reason)

    def _count_drop(self, cam: str, stage: str, reason: str) -> None:
        self.dropped[(cam, stage, reason)] += 1
        if self.metrics is not None:
            self.metrics.frames_dropped.labels(cam, stage, reason).inc()

    def on_restart(self, stage: str, reason: str = DropReason.STAGE_RESTART) -> None:
        self._restarts.append((time.monotonic(), stage, reason))

    # ---- finding frames that vanished ----
    def _reason_for(self, entry: _Open) -> tuple[str, str]:
        for t, stage, reason in reversed(self._restarts):
            if t >= entry.t_in:
                return stage, reason
        return "pipeline", DropReason.LOST

    def sweep(self) -> None:
        now = time.monotonic()
        while self._pending_verdicts and now - self._pending_verdicts[0][0] >= self.settle_s:
            _, cam, fid = self._pending_verdicts.popleft()
            if (cam, fid) not in self.early:  # a frame the source announced: no id made up elsewhere
                self._safe_below[cam] = max(self._safe_below.get(cam, -1), fid)
        last_restart = self._restarts[-1][0] if self._restarts else 0.0
        for cam, frames in self.open.items():
            below = self._safe_below.get(cam, -1)
            while frames:
                fid, entry = next(iter(frames.items()))
                overtaken = fid < below
                stale = now - max(entry.t_in, last_restart) > self.lost_after_s
                if not (overtaken or stale):
                    break
                stage, reason = self._reason_for(entry)
                log.warning("frame %s/%d never arrived: counted as dropped (%s, %s)", cam, fid, stage, reason)
                self._close(cam, fid)
                self._count_drop(cam, stage, reason)
        for key in [k for k, (t, _) in self.early.items() if now - t > CLOSED_MEMORY_S]:
            fate = self.early.pop(key)[1]
            self._expired_foreign[(key[0], fate)] += 1

    def close_all(self, reason: str = DropReason.SHUTDOWN, stage: str = "pipeline") -> int:
        """Whatever is still open now ends as dropped (the run is over). Returns how many."""
        self.sweep()
        n = 0
        for cam, frames in self.open.items():
            for fid in list(frames):
                self._close(cam, fid)
                self._count_drop(cam, stage, reason)
                n += 1
        return n

    # ---- figures ----
    def foreign(self, camera: str | None = None) -> Counter[tuple[str, str] | None]:
        """Fates of messages that never came from a camera (injected, or without a readable id): by (stage, reason)
        for drops, None for verdicts. `camera`: those that named it; None: all."""
        out: Counter[tuple[str, str] | None] = Counter()
        for (cam, fate), n in self._expired_foreign.items():
            if camera in (None, cam):
                out[fate] += n
        for (cam, _), (_, fate) in self.early.items():
            if camera in (None, cam):
                out[fate] += 1
        if camera is None:
            out.update(self.unknown_drops)
        return out

    def camera_drops(self, camera: str | None = None) -> Counter[tuple[str, str]]:
        """Drops of frames a camera gave (`camera`, else any), by (stage, reason)."""
        out: Counter[tuple[str, str]] = Counter()
        for (cam, stage, reason), n in self.dropped.items():
            if camera in (None, cam):
                out[(stage, reason)] += n
        for fate, n in self.foreign(camera).items():
            if fate is not None:
                out[fate] -= n
        return +out

    @property
    def cameras(self) -> list[str]:
        """Every camera that gave a frame, in the order of their first."""
        return list(self.in_by_camera)

    @property
    def frames_in(self) -> int:
        return self.in_by_camera.total()

    @property
    def scored(self) -> int:
        """Verdicts, foreign ones included (scored_from_camera leaves them out)."""
        return self.scored_by_camera.total()

    @property
    def alarms(self) -> int:
        return self.alarms_by_camera.total()

    @property
    def dropped_total(self) -> int:
        return sum(self.camera_drops().values())

    @property
    def scored_from_camera(self) -> int:
        return self.scored - self.foreign().get(None, 0)

    @property
    def unaccounted(self) -> int:
        """Frames read that are neither scored, dropped nor in flight: 0 unless something is broken."""
        return self.frames_in - self.scored_from_camera - self.dropped_total - self.in_flight

    def camera_figures(self, camera: str) -> CameraFigures:
        scored = self.scored_by_camera[camera] - self.foreign(camera).get(None, 0)
        drops = self.camera_drops(camera)
        in_flight = len(self.open.get(camera, {}))
        by_reason: Counter[str] = Counter()
        for (_, reason), n in drops.items():
            by_reason[reason] += n
        latency = self.latency.get(camera)
        frames_in = self.in_by_camera[camera]
        return CameraFigures(camera, frames_in, scored, self.alarms_by_camera[camera], dict(by_reason), in_flight,
                             frames_in - scored - by_reason.total() - in_flight,
                             latency.summary_ms() if latency is not None else {})

    def latency_ms(self) -> dict[str, float]:
        """Every camera's verdict latencies together: p50 / p90 / p99 / max / mean."""
        merged = LatencySketch()
        for sketch in self.latency.values():
            merged.merge(sketch)
        return merged.summary_ms()

    def recent_latencies(self, window_s: float = 10.0) -> np.ndarray:
        now = time.monotonic()
        while self.recent and now - self.recent[0][0] > window_s:
            self.recent.popleft()
        return np.fromiter((lat for _, lat in self.recent), dtype=np.float64)

    def recent_fps(self, window_s: float = 5.0) -> float:
        now = time.monotonic()
        n = sum(1 for t, _ in self.recent if now - t <= window_s)
        span = min(window_s, now - (self.t_first_in or now))
        return n / span if span > 0 else 0.0

    def drops_by_reason(self) -> dict[str, int]:
        """Drops of camera frames by reason (all cameras)."""
        out: Counter[str] = Counter()
        for (_, reason), n in self.camera_drops().items():
            out[reason] += n
        return dict(out)

    def foreign_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for fate, n in self.foreign().items():
            out["verdict" if fate is None else fate[1]] += n
        return dict(out)
