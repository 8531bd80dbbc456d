"""Turns: batches taken in one order, finished in another, leave in the order they were taken."""

from __future__ import annotations

import random
import threading
import time

import pytest

from stream_ad.pipeline.turns import Turns


def test_blocks_finishing_out_of_order_leave_in_ticket_order() -> None:
    turns = Turns()
    left: list[int] = []
    tickets = [turns.take() for _ in range(40)]
    delays = random.Random(0).sample(range(40), 40)  # ticket t finishes after delays[t] ms

    def finish(ticket: int) -> None:
        time.sleep(delays[ticket] / 1000)
        with turns.turn(ticket):
            left.append(ticket)

    threads = [threading.Thread(target=finish, args=(t,)) for t in tickets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert left == tickets


def test_a_block_that_raises_passes_its_turn_on() -> None:
    turns = Turns()
    first, second = turns.take(), turns.take()
    done = threading.Event()

    def later() -> None:
        with turns.turn(second):
            done.set()

    thread = threading.Thread(target=later)
    thread.start()
    assert not done.wait(0.1)  # waits for the first ticket
    with pytest.raises(RuntimeError), turns.turn(first):
        raise RuntimeError("the batch failed")
    assert done.wait(5)
    thread.join(timeout=5)
