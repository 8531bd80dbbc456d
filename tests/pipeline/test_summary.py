"""The run's summary: figures from the ledger, the table's rows and the JSON fields scripts read."""

from __future__ import annotations

import numpy as np

from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.plan import RunIdentity
from stream_ad.pipeline.summary import percentiles, summarise


def _ledger() -> Ledger:
    ledger = Ledger()
    now = 1000.0  # capture times: a small base keeps the latencies exact
    for fid in range(4):
        ledger.on_in("cam0", fid, now)
    ledger.on_done("cam0", 0, now, now + 0.010, 1.0, "ok")
    ledger.on_done("cam0", 1, now, now + 0.030, 5.0, "anomaly")
    ledger.on_drop("cam0", 2, "infer", "queue_full")
    ledger.on_drop(None, None, "preprocess", "bad_frame")  # a message that was no camera frame
    return ledger


def test_percentiles_are_in_milliseconds() -> None:
    p = percentiles(np.array([0.010, 0.020, 0.030]))
    assert p["p50"] == 20.0 and p["max"] == 30.0 and abs(p["mean"] - 20.0) < 1e-9
    assert percentiles(np.array([])) == {}


def test_summary_figures_table_and_json() -> None:
    run = RunIdentity("0b5c2a9e-3f1d-4c55-9a51-6a8f1e2d7c44", 0)
    s = summarise(_ledger(), thresholds={"cam0": 2.5}, run=run, wall_s=2.0, restarts={"source": 0, "infer": 1},
                  batch_size_mean=1.5, metrics_url=None)
    assert (s.frames_in, s.scored, s.alarms, s.in_flight_at_end, s.unaccounted) == (4, 2, 1, 1, 0)
    assert s.dropped == {"queue_full": 1} and s.rejected_messages == {"bad_frame": 1}
    assert s.verdict_fps == 1.0 and abs(s.latency_ms["max"] - 30.0) < 1e-6
    table = s.table()
    assert table.splitlines()[0] == f"pipeline summary (camera cam0, run {run.run_id})"
    for row in ("dropped                                1  (queue_full 1)",
                "rejected messages (not camera frames)  bad_frame 1",
                "infer batch size (mean)                1.50",
                "stage restarts                         infer 1",
                "decision threshold                     2.5000"):
        assert row in table, row
    js = s.to_json()
    assert (js["run_id"], js["first_frame_id"]) == (run.run_id, 0)
    assert js["dropped_total"] == 1 and js["restarts"] == {"source": 0, "infer": 1} and js["extra"] == {}


def test_many_cameras_get_a_row_each_that_adds_up() -> None:
    ledger = _ledger()
    for fid in range(3):
        ledger.on_in("cam1", fid, 1000.0)
    ledger.on_done("cam1", 0, 1000.0, 1000.02, 9.0, "anomaly")
    ledger.on_drop("cam1", 1, "infer", "queue_full")
    ledger.on_drop("cam1", 2, "source", "decode_error")
    s = summarise(ledger, thresholds={"cam0": 2.5, "cam1": 7.0}, run=RunIdentity("r", 0), wall_s=2.0, restarts={},
                  batch_size_mean=None, metrics_url=None)
    assert s.camera == "cam0, cam1" and s.threshold is None  # they differ: each row has its own
    cam0, cam1 = s.cameras
    assert (cam0.frames_in, cam0.scored, cam0.alarms, cam0.in_flight_at_end, cam0.threshold) == (4, 2, 1, 1, 2.5)
    assert (cam1.frames_in, cam1.scored, cam1.alarms, cam1.dropped, cam1.unaccounted) == (
        3, 1, 1, {"queue_full": 1, "decode_error": 1}, 0)
    assert s.frames_in == cam0.frames_in + cam1.frames_in and s.unaccounted == 0
    table = s.table().splitlines()
    assert table[0] == "pipeline summary (cameras cam0, cam1, run r)"
    assert table[-2].split() == ["cam0", "4", "2", "1", "1", "0", "10.0", "2.5000"]  # p99 of 10 and 30 ms: rank 0
    assert table[-1].split() == ["cam1", "3", "1", "1", "2", "0", "19.9", "7.0000"]  # 20 ms, within 0.5 %
