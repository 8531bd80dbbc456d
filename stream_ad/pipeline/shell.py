"""The shell around every stage, written once: process, sockets, bounded queue, batching, drop policy, metrics,
signals, and the notices that let the supervisor account for every frame.

    upstream PUSH --> [PULL, bound at the stage's endpoint] --receiver thread--> BoundedQueue (policy)
        --worker: get_batch(max_batch, max_wait)--> stage.process(batch) --> [PUSH, connected downstream]
                                                                              (or: FrameDone notices)

A stage that can take batches side by side (Stage.concurrent_batches) gets that many workers: one takes the next
batch while the others' run, and batches leave in the order they were taken (stream_ad.pipeline.turns).

The source stage has no input: its worker iterates the camera and never waits on what follows (a full downstream
pipe drops the frame, counted), unless the policy is block (offline files only). The last stage has no output: the
frames it returns have reached their verdict.

Every frame's fate is told to the supervisor on a separate notice socket (stream_ad.pipeline.notices): FrameIn when
the source reads it, FrameDropped with a reason wherever it is dropped, FrameDone when the last stage has emitted its
verdict. A frame that cannot be decoded, has the wrong shape or makes the stage raise is counted, logged by name and
skipped; it never stops the stage. Heartbeats (stream_ad.pipeline.liveness) prove the worker loop moves.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import zmq

from stream_ad.frames import CameraEvent, CameraState, Frame
from stream_ad.pipeline import notices
from stream_ad.pipeline.batching import BoundedQueue, Queued
from stream_ad.pipeline.curve import CurveGuard
from stream_ad.pipeline.liveness import Liveness
from stream_ad.pipeline.metrics import StageMetrics
from stream_ad.pipeline.notices import (
    CameraStatus,
    DropReason,
    FrameDone,
    FrameDropped,
    FrameIn,
    Heartbeat,
    Notice,
    SourceDone,
    StageReady,
)
from stream_ad.pipeline.plan import StageSpec
from stream_ad.pipeline.stages.base import BadFrame, Stage, StageFailed
from stream_ad.pipeline.turns import Turns
from stream_ad.pipeline.wire import BadMessage, decode, encode
from stream_ad.settings import SourceSettings
from stream_ad.sources import Camera

log = logging.getLogger("stream_ad.pipeline.stage")

# ZeroMQ's own buffers stay small (a few frames per pipe): the bounded queue in front of each stage is where the
# drop policy applies, and frames parked in socket buffers would only age while a peer restarts.
SOCKET_HWM = 4
NOTICE_HWM = 1_000_000
POLL_MS = 100


class Notifier:
    """Tiny JSON notices to the supervisor; thread-safe, never blocks the stage."""

    def __init__(self, curve: CurveGuard, endpoint: str, stage: str) -> None:
        self.stage = stage
        self._sock = curve.ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, NOTICE_HWM)
        self._sock.setsockopt(zmq.LINGER, 3000)
        curve.client(self._sock, endpoint)
        self._sock.connect(endpoint)
        self._lock = threading.Lock()
        self._lost = 0

    def send(self, notice: Notice) -> None:
        data = notices.encode(notice, self.stage, os.getpid())
        with self._lock:
            if self._sock.closed:  # the stage is closing; a heartbeat may still come
                return
            try:
                self._sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                self._lost += 1
                if self._lost in (1, 10, 100) or self._lost % 1000 == 0:
                    log.error("%s: supervisor not reachable, %d notices lost", self.stage, self._lost)

    def drop(self, frame: Frame | BadMessage, reason: str, detail: str = "") -> None:
        self.send(FrameDropped(frame.camera, frame.frame_id, reason, detail))

    def close(self) -> None:
        with self._lock:
            self._sock.close()


class _LogLimiter:
    """At most `per_second` bad-frame log lines a second; the rest are summed up."""

    def __init__(self, per_second: int = 20) -> None:
        self.per_second = per_second
        self._window = 0.0
        self._count = 0
        self._suppressed = 0

    def warn(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            if self._suppressed:
                log.warning("%d more bad-frame lines suppressed", self._suppressed)
            self._window, self._count, self._suppressed = now, 0, 0
        if self._count < self.per_second:
            self._count += 1
            log.warning(msg, *args)
        else:
            self._suppressed += 1


class StageShell:
    def __init__(self, spec: StageSpec, notice_endpoint: str, metrics: StageMetrics, curve: CurveGuard, *,
                 run_id: str, hung_after_s: float) -> None:
        self.spec = spec
        self.metrics = metrics
        self.run_id = run_id
        self.curve = curve  # tcp sockets: CURVE (stream_ad.pipeline.curve)
        self.ctx = curve.ctx
        self.notifier = Notifier(curve, notice_endpoint, spec.label)
        self.liveness = Liveness(lambda: self.notifier.send(Heartbeat()), hung_after_s)
        self.stopping = threading.Event()  # SIGTERM: finish what is queued, then leave
        self.hard_stop = threading.Event()  # drain time is over
        self.parent = os.getppid()
        self.drain_deadline = float("inf")  # set when SIGTERM starts the drain
        self.drain_s = 2.5
        self.bad_log = _LogLimiter()
        # Per worker thread: ids of the frames of its batch in hand that were dropped with a reason.
        self._batch_state = threading.local()
        self._taking = threading.Lock()  # one worker takes a batch (and its ticket) at a time
        self.turns = Turns()
        # The first worker's exception (StageFailed, or a fault the shell does not isolate), raised by run() once every
        # worker stopped: it ends the stage process as it would with one worker.
        self._failure: Exception | None = None
        metrics.queue_capacity.set(spec.queue_size)
        self.queue: BoundedQueue[Frame] = BoundedQueue(spec.queue_size, spec.policy, metrics.queue_depth.set,
                                                       key=lambda frame: frame.camera)
        self.out: zmq.Socket | None = None
        if spec.connect:
            self.out = self.ctx.socket(zmq.PUSH)
            self.out.setsockopt(zmq.SNDHWM, SOCKET_HWM)
            self.out.setsockopt(zmq.LINGER, 2000)
            self.out.setsockopt(zmq.SNDTIMEO, 250)
            curve.client(self.out, spec.connect)
            self.out.connect(spec.connect)

    # ---- signals and lifetime ----
    def install_signals(self) -> None:
        # Ctrl-C in a terminal reaches the whole process group: only the supervisor acts on it, then stops the
        # stages in order with SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())

    def parent_gone(self) -> bool:
        return os.getppid() != self.parent

    # ---- output ----
    def emit(self, frame: Frame, blocking: bool = True) -> bool:
        """Send a frame downstream (or report it done when this is the last stage). False: it was dropped."""
        if self.out is None:
            self.notifier.send(FrameDone(frame.camera, frame.frame_id, frame.t_capture, time.time(), frame.score,
                                         frame.verdict, self.run_id))
            return True
        frame.t_sent = time.time()
        parts = encode(frame)
        if not blocking:
            try:
                self.out.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                self.notifier.drop(frame, DropReason.QUEUE_FULL, "downstream pipe full")
                return False
        while True:
            try:
                self.out.send_multipart(parts, copy=False)
                return True
            except zmq.Again:
                self.liveness.tick()  # waiting on a slow or restarting peer is no hang of this stage
                # A blocked source (policy block) stops at once; other stages once their drain time is over.
                source_stopping = self.spec.bind is None and self.stopping.is_set()
                if self.stopping.is_set() and self.drain_deadline == float("inf"):
                    self.drain_deadline = time.monotonic() + self.drain_s
                if source_stopping or self.hard_stop.is_set() or self.parent_gone() or (
                    time.monotonic() > self.drain_deadline
                ):
                    self.notifier.drop(frame, DropReason.SHUTDOWN,
                                       "downstream did not take it before the stage stopped")
                    return False

    # ---- middle and last stages ----
    def _receive(self, sock: zmq.Socket) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self.stopping.is_set():
            if not poller.poll(POLL_MS):
                continue
            parts = sock.recv_multipart(copy=False)
            now = time.time()
            try:
                frame = decode(parts)
            except BadMessage as exc:
                self.bad_log.warn("%s: skipped bad frame %s: %s", self.spec.label, exc.frame, exc.detail)
                self.notifier.drop(exc, DropReason.BAD_FRAME, exc.detail)
                continue
            frame.t_received = now
            if self.spec.policy != "block":
                dropped = self.queue.put(frame, timeout=0)
                if dropped is not None:
                    self.notifier.drop(dropped, DropReason.QUEUE_FULL,
                                       f"{self.spec.label} queue full ({self.spec.policy})")
                continue
            # block: wait for room (back-pressure to the sender), but not past a stop.
            while self.queue.put(frame, timeout=0.2) is not None:
                if self.stopping.is_set():
                    self.notifier.drop(frame, DropReason.SHUTDOWN,
                                       f"{self.spec.label} stopped while its queue was full")
                    break
        sock.close(linger=0)

    @property
    def _rejected(self) -> set[int]:
        state = self._batch_state
        if not hasattr(state, "rejected"):
            state.rejected = set()
        return state.rejected

    def _process(self, stage: Stage, items: list[Queued[Frame]], ticket: int) -> None:
        """Process a batch, then emit its frames in the turn of `ticket` (the order the batches were taken)."""
        try:
            frames, out = self._run_stage(stage, items)
        except BaseException:
            with self.turns.turn(ticket):  # later batches do not wait for this one
                raise
        with self.turns.turn(ticket):
            returned = {id(f) for f in out}
            for f in frames:
                if id(f) not in returned and id(f) not in self._rejected:
                    self.notifier.drop(f, DropReason.FILTERED, f"{self.spec.label} returned no result for it")
            for f in out:
                self.emit(f)

    def _run_stage(self, stage: Stage, items: list[Queued[Frame]]) -> tuple[list[Frame], list[Frame]]:
        """The batch's frames and what the stage returned for them; a frame that makes it raise is retried alone."""
        self._rejected.clear()
        now = time.time()
        frames = [q.item for q in items]
        for f in frames:
            self.metrics.queue_wait.observe(max(0.0, now - f.t_sent))
        self.metrics.batch_size.observe(len(frames))
        start = time.perf_counter()
        try:
            out = list(stage.process(frames))
        except StageFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - a bad frame must not take the stage down: isolate it
            if len(frames) == 1:
                self._reject(frames[0], exc)
                out = []
            else:
                out = []
                for f in frames:
                    try:
                        out.extend(stage.process([f]))
                    except Exception as one:  # noqa: BLE001
                        self._reject(f, one)
        self.metrics.processing.observe(time.perf_counter() - start)
        return frames, out

    def drop(self, frame: Frame, reason: str, detail: str) -> None:
        """A stage drops a frame with a reason of its own (StageContext.drop); the stage logs why."""
        self._rejected.add(id(frame))
        self.notifier.drop(frame, reason, detail)

    def _reject(self, frame: Frame, exc: Exception) -> None:
        if isinstance(exc, BadFrame):
            reason = exc.reason
        else:
            reason = DropReason.BAD_FRAME if isinstance(exc, BadMessage) else DropReason.STAGE_ERROR
        detail = f"{exc.__class__.__name__}: {exc}"
        self.bad_log.warn("%s: skipped frame %s (%s): %s", self.spec.label, frame.key, reason, detail)
        if reason is DropReason.STAGE_ERROR:
            log.debug("stage error on frame %s", frame.key, exc_info=exc)
        self._rejected.add(id(frame))
        self.notifier.drop(frame, reason, detail)

    def run(self, stage: Stage, drain_s: float) -> int:
        assert self.spec.bind is not None
        self.drain_s = drain_s
        sock = self.ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.RCVHWM, SOCKET_HWM)
        sock.setsockopt(zmq.LINGER, 0)
        self.curve.server(sock, self.spec.bind, self.spec.label)
        sock.bind(self.spec.bind)
        receiver = threading.Thread(target=self._receive, args=(sock,), name="receiver", daemon=True)
        receiver.start()
        self.notifier.send(StageReady())
        self.liveness.start()
        workers = [threading.Thread(target=self._work, args=(stage,), name=f"batches-{i}", daemon=True)
                   for i in range(1, stage.concurrent_batches)]
        for worker in workers:
            worker.start()
        self._work(stage)
        for worker in workers:
            worker.join()
        if self._failure is not None:
            receiver.join(timeout=2.0)  # the receiver closes its socket before the process ends ZeroMQ
            raise self._failure
        # Draining: what is queued still gets processed, for at most drain_s.
        receiver.join(timeout=2.0)
        self.queue.close()
        self.drain_deadline = deadline = min(self.drain_deadline, time.monotonic() + drain_s)
        while time.monotonic() < deadline:
            self.liveness.tick()
            batch = self.queue.get_batch(self.spec.max_batch, 0.0, timeout=0)
            if not batch:
                break
            self._process(stage, batch, self.turns.take())
        self.hard_stop.set()
        for f in self.queue.drain():
            self.notifier.drop(f, DropReason.SHUTDOWN, f"still queued at {self.spec.label} when it stopped")
        return 0

    def _work(self, stage: Stage) -> None:
        """One worker: take a batch, process it, emit it in its turn, until the stage stops or the stage fails."""
        max_wait = self.spec.max_wait_ms / 1000.0
        while not self.stopping.is_set():
            self.liveness.tick()
            if self.parent_gone():
                log.error("%s: the supervisor is gone; stopping", self.spec.label)
                self.stopping.set()
                break
            with self._taking:
                batch = self.queue.get_batch(self.spec.max_batch, max_wait, timeout=POLL_MS / 1000.0)
                ticket = self.turns.take() if batch else -1
            if not batch:
                continue
            try:
                self._process(stage, batch, ticket)
            except Exception as exc:  # noqa: BLE001 - raised again by run(), in the main thread
                if self._failure is None:
                    self._failure = exc
                self.stopping.set()

    # ---- the source ----
    def run_source(self, camera: Camera, cfg: SourceSettings, first_id: int) -> int:
        """Read the camera until it ends, cfg.max_frames are read or the stage stops; frames get ids from first_id."""
        blocking = self.spec.policy == "block"
        frame_id = first_id
        name = cfg.camera
        last_frame = [time.monotonic()]
        stale = [False]
        stop_watch = threading.Event()

        def watchdog() -> None:
            while not stop_watch.wait(0.2):
                quiet = time.monotonic() - last_frame[0]
                if quiet > cfg.stale_after_s and not stale[0]:
                    stale[0] = True
                    log.warning("camera %s is stale: no frame for %.1f s", name, quiet)
                    self.notifier.send(CameraStatus(name, up=False, stale=True, detail=f"no frame for {quiet:.1f} s"))

        threading.Thread(target=watchdog, name="stale-watchdog", daemon=True).start()
        self.notifier.send(StageReady())
        self.liveness.start()
        # A file is up once open; a network camera reports its own state (CameraEvent) as it connects.
        self.notifier.send(CameraStatus(name, up=not camera.reports_camera_state, stale=False))
        produced = 0
        ended = False
        iterator = iter(camera)
        try:
            while not self.stopping.is_set():
                self.liveness.tick()
                if self.parent_gone():
                    log.error("source: the supervisor is gone; stopping")
                    break
                try:
                    with self.liveness.waiting():
                        item = next(iterator)
                except StopIteration:
                    ended = True
                    break
                if isinstance(item, CameraEvent):
                    up = item.state is CameraState.UP
                    self.notifier.send(CameraStatus(name, up=up, stale=stale[0] and not up, event=item.state,
                                                    detail=item.detail))
                    continue
                last_frame[0] = time.monotonic()
                if stale[0]:
                    stale[0] = False
                    log.info("camera %s delivers frames again", name)
                    self.notifier.send(CameraStatus(name, up=True, stale=False))
                frame = Frame(frame_id=frame_id, camera=name, t_capture=item.t_capture, image=item.image,
                              meta=item.meta)
                frame_id += 1
                produced += 1
                self.notifier.send(FrameIn(name, frame.frame_id, frame.t_capture))
                if item.error is not None:
                    self.bad_log.warn("source: frame %s dropped (%s): %s", frame.key, item.drop_reason, item.error)
                    self.notifier.drop(frame, item.drop_reason, item.error)
                else:
                    self.emit(frame, blocking=blocking)
                if cfg.max_frames is not None and produced >= cfg.max_frames:
                    ended = True
                    break
        finally:
            stop_watch.set()
        if ended:
            # The last frames may still sit in the socket while the next stage is busy (policy block): closing
            # waits up to the drain time for it to take them, as the frames in the stages get (the supervisor lets
            # a finished source exit by itself for as long).
            if self.out is not None:
                self.out.setsockopt(zmq.LINGER, int(self.drain_s * 1000))
            self.notifier.send(SourceDone(name, last_id=frame_id - 1))
        return 0

    def close(self) -> None:
        self.liveness.stop()
        if self.out is not None:
            self.out.close()
        self.notifier.close()
        self.curve.close()
