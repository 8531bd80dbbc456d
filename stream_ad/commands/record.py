"""`stream-ad record PIPELINE.yaml --frames N --out DIR`: frames as the pipeline's camera delivers them, saved
losslessly, to calibrate on (`stream-ad calibrate --good DIR`).

The frames come through the same source classes as the running pipeline's source stage (stream_ad.sources.
open_source, with the same default folder), so their pixels are what the model will see: a camera's compression,
scaling and colour conversion included. PNG keeps them exact. index.json beside them: the source, each frame's file,
capture time, shape and source metadata (path, or the URL without its password, and pts).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream_ad.commands.checked_settings import load_checked_settings
from stream_ad.commands.errors import CommandError
from stream_ad.frames import CameraEvent
from stream_ad.pipeline.stages.source import source_folder
from stream_ad.settings import Settings
from stream_ad.sources import open_source

log = logging.getLogger(__name__)

INDEX = "index.json"


@dataclass(frozen=True)
class Recording:
    out: Path
    wanted: int
    frames: int  # written
    unreadable: int  # frames the camera delivered without pixels (decode errors, NewestOnly skips): not written
    ended: bool  # the source ended (a folder or video without loop) before `wanted` frames
    elapsed_s: float


def _write_png(path: Path, image: np.ndarray) -> None:
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), pixels):
        raise CommandError(f"cannot write {path}")


def record_frames(settings: Settings, frames: int, out: Path, timeout_s: float) -> Recording:
    """Up to `frames` frames of the configured source into `out` (new or empty), within timeout_s seconds."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"--out {out} exists and is not an empty folder: a recording never overwrites; give a new "
                          "folder")
    out.mkdir(parents=True, exist_ok=True)
    source = settings.pipeline.source
    stop = threading.Event()  # ends a network camera's waits (reconnect backoff) at the deadline
    timer = threading.Timer(timeout_s, stop.set)
    timer.daemon = True
    start = time.monotonic()
    entries: list[dict[str, Any]] = []
    unreadable = 0
    ended = False
    folder, setting = source_folder(source, "pipeline.source", settings.data.root)
    camera = open_source(source, folder, stop=stop, default_setting=setting)
    timer.start()
    try:
        for item in camera:
            if isinstance(item, CameraEvent):
                continue  # the source logs its connects and losses itself
            if item.error is not None or item.image is None:
                unreadable += 1
                log.warning("frame without pixels (%s): %s", item.drop_reason, item.error)
            else:
                name = f"frame_{len(entries):06d}.png"
                _write_png(out / name, item.image)
                entries.append({"file": name, "t_capture": item.t_capture, "shape": list(item.image.shape),
                                "meta": item.meta})
            if len(entries) >= frames or stop.is_set():
                break
        else:
            ended = not stop.is_set()  # the source ran out, not the time
    finally:
        timer.cancel()
        stop.set()
        camera.close()
    shapes = {tuple(e["shape"]) for e in entries}
    index = {
        "source": {"kind": source.kind, "camera": source.camera},
        "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "frames_wanted": frames,
        "frames": len(entries),
        "unreadable": unreadable,
        "frame_shape": list(shapes.pop()) if len(shapes) == 1 else None,  # None: none, or they differ
        "entries": entries,
    }
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return Recording(out, frames, len(entries), unreadable, ended, time.monotonic() - start)


def record(pipeline_file: Path, *, frames: int, out: Path, timeout_s: float) -> int:
    settings = load_checked_settings(pipeline_file)
    source = settings.pipeline.source
    print(f"recording {frames} frames of camera {source.camera} ({source.kind}) into {out} ...", flush=True)
    rec = record_frames(settings, frames, out, timeout_s)
    skipped = f"; {rec.unreadable} frame(s) without pixels skipped" if rec.unreadable else ""
    if rec.frames < frames:
        why = ("the source ended (a folder or video file without pipeline.source.loop)" if rec.ended else
               f"the camera delivered no more within --timeout {timeout_s:g} s (see the log above)")
        print(f"stream-ad: recorded only {rec.frames} of {frames} frames into {out}: {why}{skipped}", file=sys.stderr)
        return 1
    print(f"recorded {rec.frames} frames in {rec.elapsed_s:.1f} s into {out} ({INDEX}: source, capture times, "
          f"shape){skipped}; calibrate on the good ones: stream-ad -c {pipeline_file} calibrate --good {out}")
    return 0
