"""The bounded queue in front of each stage: drop policies, blocking, and dynamic batching timings."""

from __future__ import annotations

import threading
import time

import pytest

from stream_ad.pipeline.batching import BoundedQueue


def test_drop_oldest_keeps_the_newest_and_returns_the_dropped() -> None:
    depths: list[int] = []
    q: BoundedQueue[int] = BoundedQueue(3, "drop_oldest", depths.append)
    dropped = [q.put(i) for i in range(5)]
    assert dropped == [None, None, None, 0, 1]
    assert [x.item for x in q.get_batch(10, 0.0)] == [2, 3, 4]
    assert max(depths) == 3 and depths[-1] == 0


def test_drop_newest_refuses_the_arriving_item() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, "drop_newest")
    assert [q.put(i) for i in range(4)] == [None, None, 2, 3]
    assert [x.item for x in q.get_batch(10, 0.0)] == [0, 1]


def test_block_waits_for_room_and_times_out() -> None:
    q: BoundedQueue[int] = BoundedQueue(1, "block")
    assert q.put(1) is None
    start = time.monotonic()
    assert q.put(2, timeout=0.2) == 2  # not queued
    assert time.monotonic() - start >= 0.19
    threading.Timer(0.2, lambda: q.get_batch(1, 0.0)).start()
    start = time.monotonic()
    assert q.put(3, timeout=5.0) is None  # room made by the consumer
    assert 0.15 <= time.monotonic() - start < 4.0
    assert [x.item for x in q.get_batch(5, 0.0)] == [3]


def test_batch_returns_at_max_batch_without_waiting() -> None:
    q: BoundedQueue[int] = BoundedQueue(100, "drop_oldest")
    for i in range(10):
        q.put(i)
    start = time.monotonic()
    batch = q.get_batch(4, max_wait=5.0)
    assert [x.item for x in batch] == [0, 1, 2, 3]
    assert time.monotonic() - start < 0.5


def test_batch_waits_max_wait_after_the_oldest_for_more() -> None:
    q: BoundedQueue[int] = BoundedQueue(100, "drop_oldest")
    q.put(0)
    threading.Timer(0.05, lambda: q.put(1)).start()
    start = time.monotonic()
    batch = q.get_batch(8, max_wait=0.3)
    took = time.monotonic() - start
    assert [x.item for x in batch] == [0, 1]
    assert 0.25 <= took < 2.0  # waited for more until max_wait, not for a full batch


def test_an_item_that_already_waited_max_wait_goes_at_once() -> None:
    q: BoundedQueue[int] = BoundedQueue(100, "drop_oldest")
    q.put(0)
    time.sleep(0.3)
    start = time.monotonic()
    assert len(q.get_batch(8, max_wait=0.2)) == 1
    assert time.monotonic() - start < 0.1


def test_get_batch_times_out_empty_and_close_wakes_waiters() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, "block")
    assert q.get_batch(4, 0.0, timeout=0.05) == []
    q.put(1)
    q.put(2)
    result: list[int | None] = []
    t = threading.Thread(target=lambda: result.append(q.put(3)))
    t.start()
    time.sleep(0.1)
    q.close()
    t.join(timeout=2)
    assert result == [3]  # refused: the queue closed
    assert [x.item for x in q.get_batch(4, 1.0)] == [1, 2]  # what was queued can still be taken
    assert q.get_batch(4, 1.0) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown drop policy"):
        BoundedQueue(1, "drop_random")
    with pytest.raises(ValueError, match="at least 1"):
        BoundedQueue(0, "block")


def test_each_camera_has_its_own_bound_so_a_fast_camera_drops_only_its_own_frames() -> None:
    q: BoundedQueue[tuple[str, int]] = BoundedQueue(3, "drop_oldest", key=lambda item: item[0])
    q.put(("slow", 0))
    dropped = [q.put(("fast", i)) for i in range(10)]
    assert [d for d in dropped if d is not None] == [("fast", i) for i in range(7)]
    assert sorted(x.item for x in q.get_batch(10, 0.0)) == [("fast", 7), ("fast", 8), ("fast", 9), ("slow", 0)]


def test_a_batch_takes_the_cameras_round_robin_so_a_fast_one_cannot_starve_a_slow_one() -> None:
    q: BoundedQueue[tuple[str, int]] = BoundedQueue(16, "drop_oldest", key=lambda item: item[0])
    for i in range(12):  # 60 fps against 5 fps: twelve frames of one camera for each of the other
        q.put(("fast", i))
    q.put(("slow", 0))
    first = [x.item for x in q.get_batch(4, 0.0)]
    assert first == [("fast", 0), ("slow", 0), ("fast", 1), ("fast", 2)]  # the slow camera's frame in the first batch
    q.put(("slow", 1))
    # The next batch starts where the last one ended in the round: the slow camera is not served last again.
    assert [x.item for x in q.get_batch(2, 0.0)] == [("slow", 1), ("fast", 3)]
    assert len(q) == 8 and [x for x, _ in q.drain()] == ["fast"] * 8
