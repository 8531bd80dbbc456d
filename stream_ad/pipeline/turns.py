"""Batches processed side by side leave in the order they were taken: a ticket when a batch is taken, a turn to
emit its frames when every earlier ticket has had its own. So a camera's frames reach the next stage (and the PLC)
in the order they were read, whichever batch finishes first."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._taken = 0
        self._serving = 0

    def take(self) -> int:
        """The next ticket; callers take tickets in the order they took their batches (under one lock)."""
        with self._changed:
            ticket = self._taken
            self._taken += 1
            return ticket

    @contextmanager
    def turn(self, ticket: int) -> Iterator[None]:
        """Wait until every earlier ticket's turn is over, hold this one for the block, then pass it on (also when
        the block raises: a later batch never waits for one that failed)."""
        with self._changed:
            self._changed.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._changed:
                self._serving += 1
                self._changed.notify_all()
