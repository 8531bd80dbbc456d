"""ModelLock: batches score side by side, a teaching has the model alone and is not starved by them."""

from __future__ import annotations

import threading
import time

from stream_ad.pipeline.model_lock import ModelLock


def test_shared_holders_overlap_and_the_exclusive_one_waits_for_them() -> None:
    lock = ModelLock()
    inside: list[str] = []
    both_in = threading.Barrier(2, timeout=5)
    events: list[str] = []

    def score(name: str) -> None:
        with lock.shared():
            inside.append(name)
            both_in.wait()  # only passes if the two share the lock at once
            time.sleep(0.1)
            events.append(f"{name} out")

    def teach() -> None:
        with lock.exclusive():
            events.append("teaching")

    scorers = [threading.Thread(target=score, args=(n,)) for n in ("a", "b")]
    for t in scorers:
        t.start()
    while len(inside) < 2:
        time.sleep(0.005)
    teacher = threading.Thread(target=teach)
    teacher.start()
    for t in (*scorers, teacher):
        t.join(timeout=5)
    assert sorted(events[:2]) == ["a out", "b out"] and events[2] == "teaching"


def test_a_waiting_teaching_holds_new_batches_back() -> None:
    lock = ModelLock()
    order: list[str] = []
    release = threading.Event()

    def first_batch() -> None:
        with lock.shared():
            release.wait(5)
        order.append("first batch")

    def teach() -> None:
        with lock.exclusive():
            order.append("teaching")

    def next_batch() -> None:
        with lock.shared():
            order.append("next batch")

    holder = threading.Thread(target=first_batch)
    holder.start()
    time.sleep(0.05)
    teacher = threading.Thread(target=teach)
    teacher.start()
    time.sleep(0.05)  # the teaching now waits for the first batch
    follower = threading.Thread(target=next_batch)
    follower.start()
    time.sleep(0.05)
    assert order == []  # the next batch waits behind the teaching
    release.set()
    for t in (holder, teacher, follower):
        t.join(timeout=5)
    assert order.index("teaching") < order.index("next batch")
