"""The outbox on a really full disk (a small tmpfs): put() fails with SQLite's own error, not a masking "cannot
rollback", stores none of the batch, and works again once there is room; an announced status record goes out from
memory, ahead of the queue, with sequence number 0."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stream_ad.settings import OutboxSettings
from stream_ad.sinks.outbox import STATUS_SEQ, Outbox, OutboxError
from tests.full_disk import fill, small_tmpfs


class Recorder:
    """A peer that acknowledges every record, and keeps them."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def deliver(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def tick(self) -> None:
        pass


def _items(first: int, n: int) -> list[tuple[bool, dict[str, Any]]]:
    return [(True, {"frame_id": i, "pad": "x" * 1000}) for i in range(first, first + n)]


def _wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_full_disk_fails_put_with_the_sqlite_error_and_the_outbox_recovers(tmp_path: Path) -> None:
    peer = Recorder()
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        outbox = Outbox(disk / "plc.sqlite", OutboxSettings(), "plc", peer)
        try:
            outbox.put(_items(0, 2))
            _wait_for(lambda: len(peer.records) == 2, "the first two records")
            filler = fill(disk)
            with pytest.raises(OutboxError, match="database or disk is full") as failed:
                outbox.put(_items(2, 200))  # 200 KB: no room in the database or its write-ahead log
            assert "cannot rollback" not in str(failed.value) and str(disk / "plc.sqlite") in str(failed.value)
            outbox.announce({"frame_id": 2, "verdict": "unavailable"})  # from memory: the disk takes nothing
            _wait_for(lambda: len(peer.records) == 3, "the announced status")
            assert peer.records[2] == {"frame_id": 2, "verdict": "unavailable", "seq": STATUS_SEQ}
            filler.unlink()
            outbox.put(_items(202, 1))
            _wait_for(lambda: len(peer.records) == 4, "a record stored after the disk had room again")
            assert [r["frame_id"] for r in peer.records] == [0, 1, 2, 202] and peer.records[3]["seq"] == 3
        finally:
            outbox.close()
