"""The "good" button's back end. The infer stage of the model that judged the alarm teaches the frame
(stream_ad.pipeline.teaching): each model has a teaching channel of its own, so another camera's model is never
touched. For a method that learns only by fitting the frame is queued for the next fit instead
(OUTPUT_DIR/console/refit_queue/: the PNG and a JSON sidecar with who, when and the score). Every request, refused
ones too, is one line of the audit log (OUTPUT_DIR/console/audit.jsonl) and one log line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any

import cv2

from stream_ad.console.live import Alarm, LiveView
from stream_ad.pipeline.teaching import TeachReply, request_teaching

log = logging.getLogger("stream_ad.console")


def recalibrate_command(model_dir: Path) -> str:
    return f"stream-ad -c PIPELINE.yaml calibrate --model {model_dir}"


class TeachDesk:
    def __init__(self, live: LiveView, console_dir: Path, timeout_s: float) -> None:
        """`live`: where the served models are (its lineup) and what learns of a teaching (the model's facts)."""
        self.live = live
        self.console_dir = console_dir
        self.timeout_s = timeout_s
        self._audit_lock = threading.Lock()
        self.recent: list[dict[str, Any]] = []  # the latest results, for the page

    def mark_good(self, alarm: Alarm, operator: str) -> dict[str, Any]:
        frame = alarm.frame
        model = self.live.lineup.judged(frame)
        if model is None:
            reply = TeachReply("refused", f"the model that judged {frame.key} no longer serves camera {frame.camera} "
                                          "(a reload removed the camera or moved it to another model): nothing taught")
        else:
            reply = request_teaching(model.control, frame, operator, self.timeout_s)
        result: dict[str, Any] = {**dataclasses.asdict(reply), "alarm": alarm.id, "camera": frame.camera,
                                  "model": model.spec.key if model else None,
                                  "model_dir": str(model.spec.model_dir) if model else None,
                                  "frame_id": frame.frame_id, "threshold": frame.threshold}
        if model is not None and reply.outcome == "taught":
            self.live.refresh_model(model.spec.key)
            result["warning"] = ("the memory bank changed: the calibrated false-alarm bound no longer holds; "
                                 f"recalibrate: {recalibrate_command(model.spec.model_dir)}")
        elif reply.outcome == "refit_needed":
            result["queued"] = str(self._queue_for_refit(alarm, operator))
        self.recent = [*self.recent[-9:], result]
        self.audit("teach", operator, result)
        log.info("console: %s marked %s good (model %s): %s (%s)", operator, frame.key, result["model"], reply.outcome,
                 reply.detail)
        return result

    def _queue_for_refit(self, alarm: Alarm, operator: str) -> Path:
        frame = alarm.frame
        assert frame.image is not None
        folder = self.console_dir / "refit_queue"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{_stamp(frame.t_capture)}_{frame.camera}_{frame.frame_id:08d}"
        image = frame.image if frame.image.ndim == 2 else cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{stem}.png"), image)
        (folder / f"{stem}.json").write_text(json.dumps({
            "operator": operator, "time": _now(), "camera": frame.camera, "frame_id": frame.frame_id,
            "score": frame.score, "threshold": frame.threshold}, indent=1) + "\n")
        return folder / f"{stem}.png"

    def audit(self, action: str, operator: str | None, detail: dict[str, Any]) -> None:
        """One line of the audit log per change or refused attempt."""
        self.console_dir.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": _now(), "action": action, "operator": operator, **detail})
        with self._audit_lock, (self.console_dir / "audit.jsonl").open("a") as f:
            f.write(line + "\n")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
