"""The alarm store on a real folder: files appear whole, a taken name is never overwritten, and the store stays within
its count, bytes and age bounds by pruning the oldest alarms (all their files), counted and logged once per pass."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from stream_ad.sinks.alarm_store import AlarmStore, StoreBounds

SUFFIXES = (".a.bin", ".b.bin", ".json")
DAY = 86400.0
WIDE = StoreBounds(max_alarms=1000, max_bytes=10**9, max_age_s=30 * DAY)


def _store(folder: Path, bounds: StoreBounds = WIDE, label: str = "test") -> AlarmStore:
    store = AlarmStore(folder, SUFFIXES, bounds, label)
    store.open()
    return store


def _files(tag: str, size: int = 10) -> dict[str, bytes]:
    return {s: (tag * size)[:size].encode() for s in SUFFIXES}


def _pruned(label: str) -> float:
    return REGISTRY.get_sample_value("stream_ad_alarm_store_pruned_total", {"sink": label}) or 0.0


def _stems(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".json")] for p in folder.glob("*.json"))


def test_a_taken_name_gets_a_suffix_and_the_first_alarm_is_kept(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert store.add("t_cam_00000001", _files("first")) == "t_cam_00000001"
    assert store.add("t_cam_00000001", _files("second")) == "t_cam_00000001-1"
    # A name taken outside the index (a leftover file of a crashed run) is not overwritten either.
    (tmp_path / "t_cam_00000002.b.bin").write_bytes(b"leftover")
    assert store.add("t_cam_00000002", _files("third")) == "t_cam_00000002-1"
    assert (tmp_path / "t_cam_00000002.b.bin").read_bytes() == b"leftover"
    assert not (tmp_path / "t_cam_00000002.a.bin").exists()  # the taken stem got none of the new files
    assert (tmp_path / "t_cam_00000001.a.bin").read_bytes() == b"firstfirst"
    assert (tmp_path / "t_cam_00000001-1.a.bin").read_bytes() == b"secondseco"
    assert not list(tmp_path.glob(".alarm-*"))  # no temporary file left


def test_files_appear_whole_to_a_reader_watching_the_folder(tmp_path: Path) -> None:
    store = _store(tmp_path)
    size = 4 * 1024 * 1024
    seen_sizes: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for path in tmp_path.glob("*.bin"):
                try:
                    seen_sizes.append(path.stat().st_size)
                except FileNotFoundError:
                    pass

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        for i in range(12):
            store.add(f"t_cam_{i:08d}", _files(str(i % 10), size))
    finally:
        done.set()
        reader.join(timeout=10)
    assert seen_sizes and set(seen_sizes) == {size}  # never a file under its name before all of it was written


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(TypeError):
        store.add("t_cam_00000001", {".a.bin": b"fine", ".b.bin": "not bytes"})  # type: ignore[dict-item]
    assert list(tmp_path.iterdir()) == [] and len(store) == 0
    with pytest.raises(ValueError, match=r"\.png"):
        store.add("t_cam_00000001", {".png": b"x"})


def test_pruning_by_count_removes_the_oldest_alarms_whole_counted_and_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    label = "by-count"
    store = _store(tmp_path, StoreBounds(max_alarms=10, max_bytes=10**9, max_age_s=30 * DAY), label)
    before = _pruned(label)
    for i in range(10):
        store.add(f"t_cam_{i:08d}", _files("x"))
    assert len(store) == 10 and _pruned(label) == before
    with caplog.at_level(logging.INFO, logger="stream_ad.sinks.alarm_store"):
        store.add("t_cam_00000010", _files("x"))
    # Past the bound: pruned to 90 % of it in one pass, the oldest first, all three files of each.
    assert _stems(tmp_path) == [f"t_cam_{i:08d}" for i in range(2, 11)]
    assert len(list(tmp_path.iterdir())) == 9 * len(SUFFIXES)
    assert len(store) == 9 and _pruned(label) == before + 2
    lines = [r.getMessage() for r in caplog.records if "pruned" in r.getMessage()]
    assert len(lines) == 1 and "pruned the 2 oldest alarm(s)" in lines[0] and "max_alarms 10" in lines[0]


def test_pruning_by_bytes(tmp_path: Path) -> None:
    label = "by-bytes"
    store = _store(tmp_path, StoreBounds(max_alarms=1000, max_bytes=1000, max_age_s=30 * DAY), label)
    before = _pruned(label)
    for i in range(4):  # 300 bytes each: the fourth passes 1,000
        store.add(f"t_cam_{i:08d}", _files("y", 100))
    assert _stems(tmp_path) == ["t_cam_00000001", "t_cam_00000002", "t_cam_00000003"]  # 900 bytes: 90 % of it
    assert store.nbytes == 900 and _pruned(label) == before + 1
    # One alarm larger than the whole bound stays (it is the newest); everything older goes.
    store.add("t_cam_00000004", _files("z", 500))
    assert _stems(tmp_path) == ["t_cam_00000004"] and store.nbytes == 1500


def test_pruning_by_age_at_open_and_while_running(tmp_path: Path) -> None:
    label = "by-age"
    store = _store(tmp_path, label=label)
    for i in range(4):
        store.add(f"t_cam_{i:08d}", _files("w"))
    old = time.time() - 31 * DAY
    for path in tmp_path.iterdir():
        if path.name.startswith(("t_cam_00000000", "t_cam_00000001")):
            os.utime(path, (old, old))
    before = _pruned(label)
    reopened = _store(tmp_path, label=label)  # the index is rebuilt from the folder, file times included
    assert _stems(tmp_path) == ["t_cam_00000002", "t_cam_00000003"]
    assert len(reopened) == 2 and reopened.nbytes == 2 * 3 * 10 and _pruned(label) == before + 2
    # While running: an alarm that grows older than the bound goes at the next age pass.
    assert reopened.prune(now=time.time() + 29 * DAY) == 0
    assert reopened.prune(now=time.time() + 31 * DAY) == 2 and _stems(tmp_path) == []


def test_open_indexes_what_is_there_and_removes_what_a_crash_left(tmp_path: Path) -> None:
    first = _store(tmp_path)
    for i in range(3):
        first.add(f"t_cam_{i:08d}", _files("v"))
    (tmp_path / ".alarm-0123abcd.tmp").write_bytes(b"half a file")
    (tmp_path / "notes.txt").write_text("not an alarm")
    second = _store(tmp_path)
    assert len(second) == 3 and second.nbytes == first.nbytes == 3 * 3 * 10
    assert not (tmp_path / ".alarm-0123abcd.tmp").exists() and (tmp_path / "notes.txt").exists()
    assert second.add("t_cam_00000000", _files("u")) == "t_cam_00000000-1"
