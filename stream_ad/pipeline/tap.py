"""The console's tap on the sink stage: every verdict (frame, map, score) offered to the operator's console without
ever making the line wait.

    SinkStage.process -> TapSender.offer -> bounded deque (drop-oldest) -> sender thread -> PUSH, NOBLOCK
                                                                                     -> the console's PULL

A full deque drops its oldest verdict; a console that is slow, gone or not started yet leaves the PUSH socket full
(its high-water mark is one message), and the verdict is dropped there too. Both count in
stream_ad_console_tap_frames_total{outcome="dropped"}, apart from the ledger: a frame the console misses was still
scored and delivered to the sinks. Each tapped frame carries how many verdicts of its camera the tap was offered
(meta "tap_seq"), so the console counts the camera's rate even when it sees only some of them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import zmq

from stream_ad.frames import Frame
from stream_ad.pipeline.wire import encode

TAP_SEQ = "tap_seq"


def _counter() -> Any:
    # Imported here: a stage process imports prometheus_client once its multiprocess folder is set.
    from prometheus_client import Counter

    return Counter("stream_ad_console_tap_frames_total",
                   "Verdicts offered to the operator's console: sent, or dropped (never counted by the ledger)",
                   ["outcome"])


class TapSender:
    def __init__(self, endpoint: str, size: int, counter: Any = None) -> None:
        """`counter`: a prometheus Counter with the label outcome (default: stream_ad_console_tap_frames_total)."""
        self._counts = counter or _counter()
        self._waiting: deque[Frame] = deque()
        self._size = size
        self._offered: dict[str, int] = {}
        self._wake = threading.Condition()
        self._closed = False
        self._sock = zmq.Context.instance().socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, 1)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._thread = threading.Thread(target=self._send_loop, name="console-tap", daemon=True)
        self._thread.start()

    def offer(self, frames: Iterable[Frame]) -> None:
        """Queue the frames that reached their verdict; returns at once."""
        now = time.time()
        with self._wake:
            for frame in frames:
                seq = self._offered[frame.camera] = self._offered.get(frame.camera, 0) + 1
                if len(self._waiting) == self._size:
                    self._waiting.popleft()
                    self._counts.labels("dropped").inc()
                # t_sent: when the verdict was made (the console's latency figure)
                self._waiting.append(dataclasses.replace(frame, meta={**frame.meta, TAP_SEQ: seq}, t_sent=now))
            self._wake.notify()

    def _send_loop(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if self._closed:
                    break
                frame = self._waiting.popleft()
            try:
                self._sock.send_multipart(encode(frame), flags=zmq.NOBLOCK, copy=False)
                self._counts.labels("sent").inc()
            except zmq.Again:
                self._counts.labels("dropped").inc()
        self._sock.close()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=2.0)
