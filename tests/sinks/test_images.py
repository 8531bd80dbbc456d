"""The images sink as the sink stage drives it: per alarm the raw frame, the overlay and a JSON sidecar, named by
capture time, camera and frame id; a second run with the same frame ids overwrites nothing; the settings bound it."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_ad.frames import ModelInfo, Verdict
from stream_ad.settings import ImagesSinkSettings
from stream_ad.sinks import make_sink
from stream_ad.sinks.images import ImageSink

MODEL = ModelInfo("tile-v2 patchcore state sha256:0123456789abcdef", pixel_threshold=0.5)
# 2024-05-01 10:15:30.123456 UTC
T0 = datetime(2024, 5, 1, 10, 15, 30, 123456, tzinfo=UTC).timestamp()
STEM = "20240501T101530.123Z_line3_00000021"
RUN_ID = "0b5c2a9e-3f1d-4c55-9a51-6a8f1e2d7c44"


def _verdict(frame_id: int, *, t: float = T0, score: float = 3.0, with_map: bool = True) -> Verdict:
    rng = np.random.default_rng(frame_id)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    amap = np.zeros((48, 64), np.float32)
    amap[10:20, 30:40] = 1.0
    return Verdict(frame_id, "line3", t, t + 0.042, score, 2.0, "anomaly" if score > 2.0 else "ok",
                   {"url": "rtsp://cam/line3", "pts": 9000, "shape": [48, 64]},
                   amap if with_map else None, image, RUN_ID, MODEL)


def _sink(folder: Path, **bounds: object) -> ImageSink:
    sink = make_sink(ImagesSinkSettings(path=folder, **bounds), folder.parent)
    assert isinstance(sink, ImageSink)
    sink.open()
    return sink


def test_each_alarm_is_a_raw_frame_an_overlay_and_a_sidecar_named_by_time_camera_and_frame(tmp_path: Path) -> None:
    folder = tmp_path / "alarms"
    sink = _sink(folder)
    alarm, ok = _verdict(21), _verdict(22, t=T0 + 1, score=1.0)
    sink.write([alarm, ok])
    assert sorted(p.name for p in folder.iterdir()) == [f"{STEM}.frame.png", f"{STEM}.json", f"{STEM}.overlay.png"]
    # The raw frame, lossless (the pipeline's RGB, stored as a PNG any viewer shows in the right colours).
    raw = cv2.imread(str(folder / f"{STEM}.frame.png"), cv2.IMREAD_COLOR)
    assert np.array_equal(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), alarm.image)
    overlay = cv2.imread(str(folder / f"{STEM}.overlay.png"), cv2.IMREAD_COLOR)
    assert overlay.shape[0] > 48 and overlay.shape[1] > 64  # enlarged, with a legend
    side = json.loads((folder / f"{STEM}.json").read_text())
    assert side["frame_id"] == 21 and side["camera"] == "line3" and side["verdict"] == "anomaly"
    assert side["capture_time"] == "2024-05-01T10:15:30.123Z" and side["verdict_time"] == "2024-05-01T10:15:30.165Z"
    assert side["t_capture"] == pytest.approx(T0) and side["latency_ms"] == pytest.approx(42.0)
    assert side["score"] == 3.0 and side["threshold"] == 2.0 and side["score_normalised"] == 1.5
    assert side["pixel_threshold"] == 0.5 and side["coloured"] == "map > pixel_threshold"
    assert side["model"] == MODEL.version and side["run_id"] == RUN_ID
    assert side["url"] == "rtsp://cam/line3" and side["pts"] == 9000 and side["frame_shape"] == [48, 64, 3]


def test_a_second_run_with_the_same_frame_ids_overwrites_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "alarms"
    _sink(folder).write([_verdict(21)])
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    again = dataclasses.replace(_verdict(21), score=4.0)  # the re-run scores it otherwise
    _sink(folder).write([again])  # a new run: a new sink, frame ids from 0 again
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([*first, f"{STEM}-1.frame.png", f"{STEM}-1.json", f"{STEM}-1.overlay.png"])
    assert all((folder / name).read_bytes() == data for name, data in first.items())
    assert json.loads((folder / f"{STEM}-1.json").read_text())["score"] == 4.0


def test_an_alarm_without_its_map_is_an_error_naming_it_and_the_others_are_stored(tmp_path: Path) -> None:
    folder = tmp_path / "alarms"
    sink = _sink(folder)
    with pytest.raises(OSError, match=r"1 alarm\(s\) not stored .*line3/7: .*without its frame or anomaly map"):
        sink.write([_verdict(7, with_map=False), _verdict(8, t=T0 + 1)])
    assert [p.name for p in folder.glob("*.json")] == ["20240501T101531.123Z_line3_00000008.json"]


def test_the_settings_bound_the_store(tmp_path: Path) -> None:
    folder = tmp_path / "alarms"
    sink = _sink(folder, max_alarms=20)
    sink.write([_verdict(i, t=T0 + i) for i in range(21)])
    stems = sorted(p.name[:-5] for p in folder.glob("*.json"))
    assert len(stems) == 18 and stems[0].endswith("_00000003")  # the 3 oldest went, down to 90 % of 20
    assert len(list(folder.iterdir())) == 18 * 3


def test_storing_a_batch_of_alarms_shows_progress_after_each(tmp_path: Path) -> None:
    """Pictures take time: the sink stage's heartbeat must not think it stuck while a burst of alarms is stored."""
    sink = _sink(tmp_path / "alarms")
    ticks: list[int] = []
    sink.progress = lambda: ticks.append(len(list((tmp_path / "alarms").glob("*.json"))))
    sink.write([_verdict(i, t=T0 + i) for i in range(4)] + [_verdict(9, score=1.0)])
    assert ticks == [1, 2, 3, 4]  # once per alarm stored, as it is stored; none for the ok verdict
