"""The supervisor's end of the notice socket: bind it (on tcp a CURVE server: stream_ad.pipeline.curve), and read what
the stages sent, decoded. A malformed notice is logged and skipped, never raised: one broken sender must not stop the
accounting of the others."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import zmq

from stream_ad.pipeline.curve import CurveGuard
from stream_ad.pipeline.errors import PipelineError
from stream_ad.pipeline.notices import BadNotice, Envelope, decode

log = logging.getLogger("stream_ad.pipeline.supervisor")


class NoticeInbox:
    def __init__(self, endpoint: str, curve: CurveGuard) -> None:
        self._curve = curve
        self._sock = curve.ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, 0)  # never drop a notice: each one is a frame's fate
        self._sock.setsockopt(zmq.LINGER, 0)
        curve.server(self._sock, endpoint, "supervisor")
        try:
            self._sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise PipelineError(f"cannot listen for stage notices on {endpoint}: {exc}") from None

    def receive(self, timeout_s: float) -> Iterator[Envelope]:
        """The notices that arrive within timeout_s (all that are queued, at least)."""
        if not self._sock.poll(int(timeout_s * 1000)):
            return
        while True:
            try:
                data = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                yield decode(data)
            except BadNotice as exc:
                log.warning("malformed notice %r: %s", data[:200], exc)

    def close(self) -> None:
        self._sock.close()
        self._curve.close()
