"""The bounded queue in front of every stage, its drop policy, and dynamic batching (Triton's dynamic batcher), fair
across cameras.

Each camera (the queue's key) has a queue of its own, bounded at `size`; put() never grows it past the bound:
    drop_oldest  the camera's oldest waiting item makes room and is returned to the caller to be counted as dropped
    drop_newest  the arriving item is refused and returned to be counted
    block        put() waits for room (offline file sources only: back-pressure travels up to the reader)
So a fast camera fills and drops only its own queue, never a slow camera's.

get_batch(max_batch, max_wait) returns as soon as max_batch items wait (all cameras together), or when the oldest
waiting item has waited max_wait, whichever comes first; a stage that is busy finds its next batch already formed and
never waits for it. A batch takes the cameras' items round-robin, oldest first within a camera, starting after the
camera the last batch ended with: a camera at 60 fps cannot starve one at 5 fps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

POLICIES = ("drop_oldest", "drop_newest", "block")


@dataclass
class Queued(Generic[T]):
    item: T
    arrived: float  # time.monotonic() when it entered the queue


class BoundedQueue(Generic[T]):
    def __init__(self, size: int, policy: str, on_depth: Callable[[int], None] | None = None,
                 key: Callable[[T], str] = lambda item: "") -> None:
        """`size`: the bound per key; `key`: an item's camera (default: one queue for all); `on_depth`: told the
        number of waiting items (all keys) whenever it changes."""
        if size < 1:
            raise ValueError("queue size must be at least 1")
        if policy not in POLICIES:
            raise ValueError(f"unknown drop policy {policy!r}; known: {', '.join(POLICIES)}")
        self.size = size
        self.policy = policy
        self._key = key
        self._queues: dict[str, deque[Queued[T]]] = {}  # by key, in the round-robin order
        self._count = 0
        self._next = 0  # where the next batch starts in the round
        self._cond = threading.Condition()
        self._closed = False
        self._on_depth = on_depth

    def __len__(self) -> int:
        with self._cond:
            return self._count

    def _depth_changed(self) -> None:
        if self._on_depth is not None:
            self._on_depth(self._count)

    def _oldest(self) -> float:
        return min(q[0].arrived for q in self._queues.values() if q)

    def put(self, item: T, timeout: float | None = None) -> T | None:
        """Queue `item`; returns the item that was dropped to respect its camera's bound (or None).

        With policy block, waits for room; after `timeout` seconds (or when the queue is closed) the arriving item
        is returned as not queued.
        """
        with self._cond:
            if self._closed:
                return item
            queue = self._queues.setdefault(self._key(item), deque())
            dropped: T | None = None
            if len(queue) >= self.size:
                if self.policy == "drop_newest":
                    return item
                if self.policy == "drop_oldest":
                    dropped = queue.popleft().item
                    self._count -= 1
                else:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    while len(queue) >= self.size and not self._closed:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            return item
                        self._cond.wait(left)
                    if self._closed:
                        return item
            queue.append(Queued(item, time.monotonic()))
            self._count += 1
            self._depth_changed()
            self._cond.notify_all()
            return dropped

    def get_batch(self, max_batch: int, max_wait: float, timeout: float | None = None) -> list[Queued[T]]:
        """Up to max_batch items, the cameras' round-robin. Waits up to `timeout` for a first item (then returns
        []), then until max_batch items are there or the oldest has waited max_wait seconds."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._count:
                if self._closed:
                    return []
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return []
                self._cond.wait(left)
            while self._count < max_batch and not self._closed:
                left = self._oldest() + max_wait - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._take(min(max_batch, self._count))
            self._depth_changed()
            self._cond.notify_all()
            return batch

    def _take(self, n: int) -> list[Queued[T]]:
        queues = list(self._queues.values())
        batch: list[Queued[T]] = []
        turn = self._next % len(queues)
        while len(batch) < n:
            queue = queues[turn]
            if queue:
                batch.append(queue.popleft())
            turn = (turn + 1) % len(queues)
        self._next = turn
        self._count -= n
        return batch

    def drain(self) -> list[T]:
        """Remove and return everything waiting, oldest first."""
        with self._cond:
            waiting = sorted((q for queue in self._queues.values() for q in queue), key=lambda q: q.arrived)
            for queue in self._queues.values():
                queue.clear()
            self._count = 0
            self._depth_changed()
            self._cond.notify_all()
            return [q.item for q in waiting]

    def close(self) -> None:
        """Wake every waiter; later puts are refused (returned), get_batch returns what is left, then []."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
