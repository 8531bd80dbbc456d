"""A folder of alarms, each a few files that share a name stem: written whole, never overwritten, and bounded by
count, bytes and age (past a bound the oldest alarms go, all their files together).

Each file is written under a temporary name and then linked to its own: a reader sees the whole file or none, and a
link never replaces a file, so a name already taken (a clock set back repeats frame ids) moves the alarm to "STEM-1",
"STEM-2", ... An alarm's last file appears last and is removed first: a reader that finds it finds the others.
The index (stem, bytes, time) lives in memory, rebuilt from the folder at open(): adding or pruning never rescans
the folder.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ByteSize

from stream_ad.sinks.sink_metrics import AlarmStoreMetrics

log = logging.getLogger(__name__)

# A store past a bound is pruned down to this share of it, so that a full store prunes in passes (one log line each)
# instead of one alarm per new alarm.
LOW_WATER = 0.9
AGE_PASS_S = 60.0  # how often the age bound is checked while running (and at open())
TEMP_PREFIX, TEMP_SUFFIX = ".alarm-", ".tmp"  # files being written; left over only by a crash, removed at open()


@dataclass(frozen=True)
class StoreBounds:
    max_alarms: int
    max_bytes: int
    max_age_s: float


@dataclass(frozen=True)
class StoredAlarm:
    stem: str
    paths: tuple[Path, ...]
    nbytes: int
    mtime: float  # the newest of its files' modification times


class AlarmStore:
    def __init__(self, folder: Path, suffixes: tuple[str, ...], bounds: StoreBounds, label: str) -> None:
        """`suffixes`: what follows the stem in an alarm's file names (the files of one alarm, in writing order)."""
        self.folder = folder
        self.suffixes = suffixes
        self.bounds = bounds
        self.metrics = AlarmStoreMetrics(label)
        self._alarms: deque[StoredAlarm] = deque()  # oldest first
        self._stems: set[str] = set()
        self._nbytes = 0
        self._last_age_pass = float("-inf")

    def __len__(self) -> int:
        return len(self._alarms)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def open(self) -> None:
        """Create the folder, remove temporary files a crash left, index the alarms there and apply the bounds."""
        self.folder.mkdir(parents=True, exist_ok=True)
        groups: dict[str, list[tuple[int, os.DirEntry[str]]]] = {}  # stem -> (suffix index, file)
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                    os.unlink(entry.path)
                    continue
                i = next((i for i, s in enumerate(self.suffixes) if entry.name.endswith(s)), None)
                if i is not None:
                    groups.setdefault(entry.name[: -len(self.suffixes[i])], []).append((i, entry))
        found = []
        for stem, indexed in groups.items():
            files = [entry for _, entry in sorted(indexed, key=lambda pair: pair[0])]  # in writing order
            stats = [f.stat(follow_symlinks=False) for f in files]
            found.append(StoredAlarm(stem, tuple(Path(f.path) for f in files), sum(s.st_size for s in stats),
                                     max(s.st_mtime for s in stats)))
        self._alarms.clear()
        self._stems.clear()
        self._nbytes = 0
        for alarm in sorted(found, key=lambda a: (a.mtime, a.stem)):
            self._index(alarm)
        self.prune()

    def add(self, stem: str, files: Mapping[str, bytes]) -> str:
        """Store one alarm's files ({suffix: content}, in writing order); returns the stem it got (`stem`, or
        `stem-N` when that one is taken). Then prunes the oldest alarms past the count or bytes bound."""
        unknown = set(files) - set(self.suffixes)
        if unknown:
            raise ValueError(f"alarm file suffixes {sorted(unknown)} are not this store's {list(self.suffixes)}")
        temps: dict[str, Path] = {}
        try:
            for suffix, data in files.items():
                temps[suffix] = temp = self.folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"
                temp.write_bytes(data)
            for n in itertools.count():
                name = stem if n == 0 else f"{stem}-{n}"
                if name not in self._stems:
                    paths = self._link_all(name, temps)
                    if paths is not None:
                        break
        finally:
            for temp in temps.values():
                temp.unlink(missing_ok=True)
        self._index(StoredAlarm(name, paths, sum(len(d) for d in files.values()), time.time()))
        self.prune()
        return name

    def prune(self, now: float | None = None) -> int:
        """Remove the oldest alarms past a bound (the age bound at most every AGE_PASS_S); returns how many went."""
        now = time.time() if now is None else now
        b = self.bounds
        gone: list[StoredAlarm] = []
        reasons = []
        if now - self._last_age_pass >= AGE_PASS_S:
            self._last_age_pass = now
            while self._alarms and self._alarms[0].mtime < now - b.max_age_s:
                gone.append(self._pop_oldest())
            if gone:
                reasons.append(f"older than max_age_days {b.max_age_s / 86400:g}")
        if len(self._alarms) > b.max_alarms or self._nbytes > b.max_bytes:
            reasons.append(f"max_alarms {b.max_alarms}" if len(self._alarms) > b.max_alarms
                           else f"max_bytes {_size(b.max_bytes)}")
            # The newest alarm stays, even alone past max_bytes: it is the one just raised.
            while len(self._alarms) > 1 and (len(self._alarms) > b.max_alarms * LOW_WATER
                                             or self._nbytes > b.max_bytes * LOW_WATER):
                gone.append(self._pop_oldest())
        if gone:
            for alarm in gone:
                for path in reversed(alarm.paths):  # the last written goes first: it still means "all are there"
                    path.unlink(missing_ok=True)  # already removed by hand: the index forgets it all the same
            self.metrics.pruned.inc(len(gone))
            log.info("alarm store %s: pruned the %d oldest alarm(s) (%s; %s); %d alarm(s), %s kept", self.folder,
                     len(gone), _size(sum(a.nbytes for a in gone)), ", ".join(reasons), len(self._alarms),
                     _size(self._nbytes))
        return len(gone)

    def _index(self, alarm: StoredAlarm) -> None:
        self._alarms.append(alarm)
        self._stems.add(alarm.stem)
        self._nbytes += alarm.nbytes

    def _pop_oldest(self) -> StoredAlarm:
        alarm = self._alarms.popleft()
        self._stems.discard(alarm.stem)
        self._nbytes -= alarm.nbytes
        return alarm

    def _link_all(self, stem: str, temps: Mapping[str, Path]) -> tuple[Path, ...] | None:
        """Link each temporary file to its name; None (and nothing left behind) when one of the names is taken."""
        done: list[Path] = []
        for suffix, temp in temps.items():
            path = self.folder / f"{stem}{suffix}"
            try:
                os.link(temp, path)
            except FileExistsError:
                for p in done:
                    p.unlink()
                return None
            done.append(path)
        return tuple(done)


def _size(nbytes: int) -> str:
    return ByteSize(nbytes).human_readable(decimal=True)
