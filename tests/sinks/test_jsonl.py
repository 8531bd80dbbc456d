"""The JSON lines sink on a really full disk (a small tmpfs): a batch is written whole and fsynced, or the write
raises ENOSPC naming the file and leaves only whole lines; once there is room again it goes on."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import pytest

from stream_ad.frames import Verdict
from stream_ad.settings import JsonlSinkSettings
from stream_ad.sinks import make_sink
from tests.full_disk import fill, small_tmpfs


def _verdicts(first: int, n: int) -> list[Verdict]:
    now = time.time()
    return [Verdict(i, "line1", now - 0.05, now, 0.5, 1.0, "ok", {"path": "x" * 200}) for i in range(first, first + n)]


def _ids(path: Path) -> list[int]:
    return [json.loads(line)["frame_id"] for line in path.read_text().splitlines()]  # each line parses


def test_a_full_disk_fails_the_batch_whole_and_the_sink_recovers(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        path = disk / "verdicts.jsonl"
        sink = make_sink(JsonlSinkSettings(path=path), disk)
        sink.open()
        try:
            sink.write(_verdicts(0, 3))
            filler = fill(disk)
            with pytest.raises(OSError) as failed:
                sink.write(_verdicts(3, 100))  # 30 KB: more than the last page of the file can hold
            assert failed.value.errno == errno.ENOSPC and str(path) in str(failed.value)
            assert _ids(path) == [0, 1, 2]  # nothing of the failed batch, not half a line
            filler.unlink()
            sink.write(_verdicts(103, 2))
            assert _ids(path) == [0, 1, 2, 103, 104]
        finally:
            sink.close()
