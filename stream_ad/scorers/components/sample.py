"""A uniform random sample of rows streamed in chunks, in memory bounded by the sample's size.

Bottom-k sampling: every row draws a uniform random key and the `capacity` rows with the smallest keys are kept, a
uniform sample without replacement of everything added whatever its length, never knowing it in advance. The sample
lives in one preallocated buffer: a row that enters takes the slot of a row that leaves, so a chunk costs a top-k
over the keys and the copy of the rows that enter (on average capacity / rows seen of the chunk), never a copy of
the sample.
"""

from __future__ import annotations

import torch


class RowSample:
    """At most `capacity` rows of all rows given to add(), uniformly at random (all of them when capacity is None)."""

    def __init__(self, capacity: int | None, seed: int) -> None:
        self.capacity = capacity
        self.seen = 0  # rows given so far
        self._gen = torch.Generator().manual_seed(seed)
        self._chunks: list[torch.Tensor] = []  # capacity None: every chunk as given
        self._rows = torch.empty(0)  # capacity set: the sample's buffer (capacity, D), its first _filled rows used
        self._keys = torch.empty(0)
        self._filled = 0

    def add(self, rows: torch.Tensor) -> None:
        """Offer (n, D) rows; the sample keeps its own copy of those it takes."""
        self.seen += rows.shape[0]
        if self.capacity is None:
            self._chunks.append(rows)
            return
        if self._filled == 0:
            self._rows = torch.empty(self.capacity, rows.shape[1], dtype=rows.dtype)
            self._keys = torch.empty(self.capacity)
        keys = torch.rand(rows.shape[0], generator=self._gen)
        take = min(self.capacity - self._filled, rows.shape[0])
        self._rows[self._filled : self._filled + take] = rows[:take]
        self._keys[self._filled : self._filled + take] = keys[:take]
        self._filled += take
        if take < rows.shape[0]:
            self._replace(rows[take:], keys[take:])

    def _replace(self, rows: torch.Tensor, keys: torch.Tensor) -> None:
        """The full sample meets more rows: the capacity smallest keys of both stay, entering rows fill the slots of
        leaving ones."""
        entering = keys < self._keys.max()
        rows, keys = rows[entering], keys[entering]
        if len(keys) == 0:
            return
        kept = torch.topk(torch.cat([self._keys, keys]), self.capacity, largest=False, sorted=False).indices
        leaving = torch.ones(self.capacity, dtype=torch.bool)
        leaving[kept[kept < self.capacity]] = False
        slots = torch.nonzero(leaving).flatten()
        new = kept[kept >= self.capacity] - self.capacity
        self._rows[slots] = rows[new]
        self._keys[slots] = keys[new]

    def rows(self) -> torch.Tensor:
        """The sample (S, D) with S = min(capacity, seen)."""
        if self.seen == 0:
            raise ValueError("no rows were added")
        if self.capacity is None:
            return torch.cat(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        return self._rows[: self._filled]
