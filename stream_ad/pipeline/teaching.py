"""The infer stage's teaching channel: the operator's console asks it to take a frame it flagged as good.

    console: request_teaching(endpoint, frame) --REQ--> [REP bound by the infer stage] TeachingChannel
                                               <-- TeachReply (JSON) --

The request is the frame on the wire (stream_ad.pipeline.wire: its image, the score it alarmed with, the operator in
meta "operator"). The channel's thread picks the frame's patches that bring it within TEACH_MARGIN of the threshold,
builds the grown memory bank while the stage goes on scoring with the old one, then has the model alone
(ModelLock.exclusive: no batch is scored meanwhile) only to swap the banks and score the frame again, and saves the
teaching as the artefact's next version (stream_ad.artefact.save_teaching) before it answers: the next frame the
stage scores already meets the new bank, and a restart loads it. A grown bank ready only after the console stopped
waiting (the request's deadline) is dropped, nothing taught, so the console's "refused" holds. A scorer that learns
only by fitting answers refit_needed. Each request, taught or not, is one log line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import zmq

from stream_ad.artefact import Teaching, read_manifest, save_teaching, taught_items
from stream_ad.frames import Frame
from stream_ad.model import AnomalyModel
from stream_ad.pipeline.model_lock import ModelLock
from stream_ad.pipeline.wire import BadMessage, decode, encode

log = logging.getLogger("stream_ad.pipeline.teaching")

# A taught frame scores at most this fraction of the threshold: seen again, with a camera's noise, it stays below.
TEACH_MARGIN = 0.5
POLL_MS = 200
OPERATOR = "operator"  # the frame's meta key naming who taught it
DEADLINE = "deadline"  # the frame's meta key: when (time.time()) the asker stops waiting for the answer
# How much longer than its deadline the asker waits: the swap, the frame scored again and the teaching saved, all that
# may still run after the channel checked the deadline.
ANSWER_GRACE_S = 2.0


@dataclass(frozen=True)
class TeachReply:
    outcome: Literal["taught", "refit_needed", "refused"]
    detail: str
    version: int | None = None  # the artefact's version once taught
    patches: int = 0  # memory items added
    score_before: float | None = None
    score_after: float | None = None


class TeachingChannel:
    def __init__(self, endpoint: str, model: AnomalyModel, model_dir: Path, threshold: float, max_patches: int,
                 lock: ModelLock) -> None:
        self.model = model
        self.model_dir = model_dir
        self.within = TEACH_MARGIN * threshold
        self.max_patches = max_patches
        self.lock = lock
        self._stop = threading.Event()
        self._sock = zmq.Context.instance().socket(zmq.REP)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(endpoint)
        self._thread = threading.Thread(target=self._serve, name="teaching", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(POLL_MS):
                continue
            parts = self._sock.recv_multipart(copy=False)
            try:
                reply = self._teach(decode(parts))
            except BadMessage as exc:
                reply = TeachReply("refused", f"not a frame: {exc}")
            except Exception as exc:
                log.exception("teaching failed")
                reply = TeachReply("refused", f"{exc.__class__.__name__}: {exc}")
            self._sock.send(json.dumps(dataclasses.asdict(reply)).encode())
        self._sock.close()

    def _teach(self, frame: Frame) -> TeachReply:
        operator = str(frame.meta.get(OPERATOR, ""))
        if frame.image is None or not operator:
            return TeachReply("refused", "a teaching request needs the frame's image and the operator")
        scorer = self.model.scorer
        if not scorer.teachable:
            log.info("teaching: %s marked %s good; %s learns only by fitting: queued for a refit", operator,
                     frame.key, type(scorer).__name__)
            return TeachReply("refit_needed", f"{type(scorer).__name__} learns only by fitting: refit with this frame")
        budget = self.max_patches - taught_items(read_manifest(self.model_dir))
        if budget <= 0:
            log.warning("teaching refused: %s marked %s good, but the teachings hold pipeline.console."
                        "max_taught_patches (%d) already", operator, frame.key, self.max_patches)
            return TeachReply("refused", f"the model holds pipeline.console.max_taught_patches ({self.max_patches}) "
                                         "taught patches: refit on the good images, or roll a teaching back")
        with self.lock.exclusive():
            prepared = self.model.preprocessor([frame.image])
            before = float(self.model.score_frames(prepared)[0])
            items = scorer.good_items(prepared.inputs, self.within, budget)
        # The grown bank's compiled graph is most of a teaching's time: built while batches score with the old bank,
        # which the model, held alone again, swaps for it in an instant.
        swap = scorer.grow(items) if items.shape[0] else None
        late = time.time() - float(frame.meta.get(DEADLINE, math.inf))
        if late > 0:  # the console has told the operator it was refused: so it is
            log.warning("teaching refused: %s marked %s good, but building the grown memory bank ended %.1f s past "
                        "the console's pipeline.console.teach_timeout_s: nothing taught", operator, frame.key, late)
            return TeachReply("refused", f"the grown memory bank was built {late:.1f} s after the console stopped "
                                         "waiting (pipeline.console.teach_timeout_s): nothing taught")
        with self.lock.exclusive():
            if swap is not None:
                swap()
            after = float(self.model.score_frames(prepared)[0])
        image = frame.image if frame.image.ndim == 2 else cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        teaching = Teaching(operator, frame.camera, frame.frame_id, frame.score if frame.score is not None else before,
                            after, cv2.imencode(".png", image)[1].tobytes())
        version = save_teaching(self.model_dir, items, teaching)
        log.warning("teaching: %s marked %s good: %d patches joined the memory bank, score %.4f -> %.4f; model %s "
                    "is at version %d; its calibrated false-alarm bound no longer holds until `stream-ad calibrate "
                    "--model %s`", operator, frame.key, items.shape[0], before, after, self.model_dir, version,
                    self.model_dir)
        return TeachReply("taught", f"{items.shape[0]} patches joined the memory bank", version, items.shape[0],
                          before, after)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def request_teaching(endpoint: str, frame: Frame, operator: str, timeout_s: float) -> TeachReply:
    """Ask the infer stage at `endpoint` to take `frame` (with its image) as good. The channel refuses it, teaching
    nothing, when its grown bank is not ready within timeout_s; refused too when no answer comes ANSWER_GRACE_S later
    (a channel that swapped the bank then would have taught it: the log and the model's version say so)."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    for option in (zmq.SNDTIMEO, zmq.RCVTIMEO):
        sock.setsockopt(option, int((timeout_s + ANSWER_GRACE_S) * 1000))
    meta = {**frame.meta, OPERATOR: operator, DEADLINE: time.time() + timeout_s}
    try:
        sock.connect(endpoint)
        sock.send_multipart(encode(dataclasses.replace(frame, meta=meta)))
        return TeachReply(**json.loads(sock.recv()))
    except zmq.Again:
        return TeachReply("refused", f"the infer stage did not answer within {timeout_s + ANSWER_GRACE_S:g} s "
                                     f"({endpoint})")
    finally:
        sock.close()
