"""The bounded queue in front of every stage, its drop policy, and dynamic batching (Triton's dynamic batcher).

put() never grows the queue past its bound:
    drop_oldest  the oldest waiting item makes room and is returned to the caller to be counted as dropped
    drop_newest  the arriving item is refused and returned to be counted
    block        put() waits for room (offline file sources only: back-pressure travels up to the reader)

get_batch(max_batch, max_wait) returns as soon as max_batch items wait, or when the oldest waiting item has waited
max_wait, whichever comes first; a stage that is busy finds its next batch already formed and never waits for it.
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
    def __init__(self, size: int, policy: str, on_depth: Callable[[int], None] | None = None) -> None:
        if size < 1:
            raise ValueError("queue size must be at least 1")
        if policy not in POLICIES:
            raise ValueError(f"unknown drop policy {policy!r}; known: {', '.join(POLICIES)}")
        self.size = size
        self.policy = policy
        self._items: deque[Queued[T]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._on_depth = on_depth

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def _depth_changed(self) -> None:
        if self._on_depth is not None:
            self._on_depth(len(self._items))

    def put(self, item: T, timeout: float | None = None) -> T | None:
        """Queue `item`; returns the item that was dropped to respect the bound (or None).

        With policy block, waits for room; after `timeout` seconds (or when the queue is closed) the arriving item
        is returned as not queued.
        """
        with self._cond:
            if self._closed:
                return item
            dropped: T | None = None
            if len(self._items) >= self.size:
                if self.policy == "drop_newest":
                    return item
                if self.policy == "drop_oldest":
                    dropped = self._items.popleft().item
                else:
                    deadline = None if timeout is None else time.monotonic() + timeout
                    while len(self._items) >= self.size and not self._closed:
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            return item
                        self._cond.wait(left)
                    if self._closed:
                        return item
            self._items.append(Queued(item, time.monotonic()))
            self._depth_changed()
            self._cond.notify_all()
            return dropped

    def get_batch(self, max_batch: int, max_wait: float, timeout: float | None = None) -> list[Queued[T]]:
        """Up to max_batch items, oldest first. Waits up to `timeout` for a first item (then returns []), then until
        max_batch items are there or the oldest has waited max_wait seconds."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._items:
                if self._closed:
                    return []
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return []
                self._cond.wait(left)
            while len(self._items) < max_batch and not self._closed:
                left = self._items[0].arrived + max_wait - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._items.popleft() for _ in range(min(max_batch, len(self._items)))]
            self._depth_changed()
            self._cond.notify_all()
            return batch

    def drain(self) -> list[T]:
        """Remove and return everything waiting."""
        with self._cond:
            items = [q.item for q in self._items]
            self._items.clear()
            self._depth_changed()
            self._cond.notify_all()
            return items

    def close(self) -> None:
        """Wake every waiter; later puts are refused (returned), get_batch returns what is left, then []."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
