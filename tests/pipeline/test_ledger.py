"""Frame accounting: each frame ends scored or dropped exactly once, including frames that vanish in a dead stage."""

from __future__ import annotations

import time

from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.metrics import SupervisorMetrics
from stream_ad.pipeline.notices import DropReason


def test_every_frame_scored_or_dropped_once() -> None:
    lg = Ledger(settle_s=0.0)
    for i in range(5):
        lg.on_in("c", i, 100.0 + i)
    lg.on_done("c", 0, 100.0, 100.05, 0.5, "ok")
    lg.on_drop("c", 1, "preprocess", "queue_full")
    lg.on_done("c", 2, 102.0, 102.2, 3.0, "anomaly")
    lg.on_done("c", 2, 102.0, 102.2, 3.0, "anomaly")  # a repeated notice counts once
    lg.on_drop("c", 2, "decide", "queue_full")  # a late contradicting notice is ignored
    assert (lg.scored, lg.dropped_total, lg.in_flight, lg.alarms) == (2, 1, 2, 1)
    assert lg.unaccounted == 0
    assert lg.close_all("shutdown") == 2  # frames 3 and 4, still open when the run ends
    assert lg.in_flight == 0 and lg.unaccounted == 0
    assert lg.drops_by_reason() == {"queue_full": 1, "shutdown": 2}
    latency = lg.latency["c"]
    assert latency.count == 2 and round(latency.max, 6) == 0.2 and round(latency.total, 6) == 0.25


def test_a_fate_that_overtakes_its_in_notice_is_matched() -> None:
    lg = Ledger(settle_s=0.0)
    lg.on_drop("c", 7, "preprocess", "queue_full")
    assert lg.unaccounted == 0 and lg.in_flight == 0
    lg.on_in("c", 7, 1.0)
    assert lg.frames_in == 1 and lg.in_flight == 0 and lg.dropped_total == 1 and lg.unaccounted == 0


def test_frames_overtaken_after_a_restart_count_as_stage_restart() -> None:
    lg = Ledger(settle_s=0.05)
    for i in range(6):
        lg.on_in("c", i, float(i))
    lg.on_done("c", 0, 0.0, 0.1, 0.1, "ok")
    lg.on_restart("infer")  # frames 1..3 die inside it
    lg.on_done("c", 4, 4.0, 4.1, 0.1, "ok")
    lg.sweep()
    assert lg.in_flight == 4  # not yet: notices may still be on their way
    time.sleep(0.1)
    lg.sweep()
    assert lg.in_flight == 1  # frame 5 is still legitimately in flight
    assert lg.dropped[("c", "infer", "stage_restart")] == 3
    assert lg.unaccounted == 0


def test_without_a_restart_an_overtaken_frame_is_counted_as_lost_not_hidden() -> None:
    lg = Ledger(settle_s=0.0)
    lg.on_in("c", 0, 0.0)
    lg.on_in("c", 1, 1.0)
    lg.on_done("c", 1, 1.0, 1.1, 0.1, "ok")
    lg.sweep()
    assert lg.dropped[("c", "pipeline", "lost")] == 1


def test_drops_of_unreadable_messages_do_not_break_the_balance() -> None:
    lg = Ledger()
    lg.on_in("c", 0, 0.0)
    lg.on_drop(None, None, "preprocess", "bad_frame")  # unreadable: no id
    lg.on_drop("inject", 5, "preprocess", "bad_frame")  # readable, but never read from the camera
    assert lg.dropped_total == 0 and lg.unaccounted == 0 and lg.in_flight == 1
    assert lg.foreign_by_reason() == {"bad_frame": 2}
    assert sum(lg.dropped.values()) == 2  # still counted (metrics), just not as camera frames


def test_a_forged_frame_id_outside_the_run_is_refused_and_counted_not_turning_real_frames_into_lost() -> None:
    metrics = SupervisorMetrics({"cam0": 1.0})
    lg = Ledger(metrics, settle_s=0.0, id_window=100)
    for i in range(100, 110):
        lg.on_in("cam0", i, float(i))
    lg.on_done("cam0", 1_000_000, 0.0, 0.1, 9.9, "anomaly")  # far above what the source announced
    lg.on_drop("cam0", 99, "decide", "queue_full")  # below the run's first id
    lg.sweep()
    assert lg.refused == {"frame_id": 2}
    assert metrics.registry.get_sample_value("stream_ad_rejected_notices_total", {"reason": "frame_id"}) == 2
    assert (lg.scored, lg.alarms, lg.dropped_total, lg.in_flight) == (0, 0, 0, 10)  # nothing reached the accounting
    for i in range(100, 110):
        lg.on_done("cam0", i, float(i), i + 0.1, 0.5, "ok")
    lg.sweep()
    assert (lg.scored, lg.dropped_total, lg.unaccounted) == (10, 0, 0)
    assert lg.foreign_by_reason() == {}


def test_a_forged_id_inside_the_window_overtakes_no_real_frame() -> None:
    lg = Ledger(settle_s=0.0, id_window=100)
    for i in range(3):
        lg.on_in("c", i, float(i))
    lg.on_done("c", 50, 0.0, 0.1, 0.5, "ok")  # possible, but never announced by the source
    lg.sweep()
    assert lg.in_flight == 3 and lg.dropped_total == 0  # frames 0..2 are still on their way, not lost
    for i in range(3):
        lg.on_done("c", i, float(i), i + 0.1, 0.5, "ok")
    assert lg.scored_from_camera == 3 and lg.unaccounted == 0 and lg.foreign_by_reason() == {"verdict": 1}


def test_frames_lost_in_a_stage_killed_as_hung_count_as_stage_hung() -> None:
    lg = Ledger(settle_s=0.0)
    first = 1_750_000_000_000_000  # ids start at the run's wall clock in microseconds
    for i in range(first, first + 4):
        lg.on_in("c", i, 0.0)
    lg.on_restart("infer", DropReason.STAGE_HUNG)  # frames first..first+2 were held by the hung stage
    lg.on_done("c", first + 3, 0.0, 0.1, 0.1, "ok")
    lg.sweep()
    assert lg.dropped == {("c", "infer", "stage_hung"): 3} and lg.drops_by_reason() == {"stage_hung": 3}
    assert lg.scored == 1 and lg.in_flight == 0 and lg.unaccounted == 0
