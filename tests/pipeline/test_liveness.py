"""Heartbeats prove that the worker loop moves: they come while it ticks or waits for its camera, and stop while it
is stuck (the supervisor then kills the stage as hung)."""

from __future__ import annotations

import threading
import time

from stream_ad.pipeline.liveness import BEATS_PER_LIMIT, Liveness

HUNG_AFTER_S = 0.5  # a heartbeat every 0.1 s


def _beats_during(seconds: float, beats: list[float], work: object = None) -> int:
    before = len(beats)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(work):
            work()
        time.sleep(0.01)
    return len(beats) - before


def test_heartbeats_come_while_the_worker_ticks_or_waits_and_stop_while_it_is_stuck() -> None:
    beats: list[float] = []
    live = Liveness(lambda: beats.append(time.monotonic()), HUNG_AFTER_S)
    assert live.interval_s == HUNG_AFTER_S / BEATS_PER_LIMIT
    live.start()
    try:
        assert _beats_during(0.6, beats, live.tick) >= 3  # a loop that comes round: about 6
        _beats_during(0.3, beats)  # the beat of the last ticks may still go out
        assert _beats_during(0.6, beats) == 0  # stuck in stage code: silent, the supervisor's cue
        waiting_for_camera = threading.Event()

        def camera() -> None:
            with live.waiting():
                waiting_for_camera.wait(0.6)  # a triggered camera: no frame for a while, by right

        reader = threading.Thread(target=camera)
        reader.start()
        assert _beats_during(0.5, beats) >= 2  # about 5
        reader.join()
    finally:
        live.stop()
    time.sleep(0.3)
    stopped = len(beats)
    assert _beats_during(0.3, beats, live.tick) == 0 and len(beats) == stopped  # stop() ends the beats
