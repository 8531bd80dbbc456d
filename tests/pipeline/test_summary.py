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
    s = summarise(_ledger(), camera="cam0", run=run, wall_s=2.0, restarts={"source": 0, "infer": 1}, threshold=2.5,
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
