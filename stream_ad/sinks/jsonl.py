"""Verdicts as JSON lines, appended and fsynced per batch: write() returns once the lines are on disk. A batch that
cannot be written whole (a full disk) raises, and the file is cut back to its last whole batch, so it holds only
verdicts that were counted as delivered."""

from __future__ import annotations

import json
import os
from pathlib import Path

from stream_ad.sinks.base import Sink, Verdict, register_sink


@register_sink("jsonl")
class JsonlSink(Sink):
    _fd: int | None = None

    @property
    def path(self) -> Path:
        return self.cfg.file(self.output_dir)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, verdicts: list[Verdict]) -> None:
        assert self._fd is not None, "JsonlSink.open() was not called"
        data = "".join(json.dumps(v.record(), separators=(",", ":")) + "\n" for v in self.wanted(verdicts)).encode()
        if not data:
            return
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:  # os.write may take part of it (a disk filling up)
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            os.ftruncate(self._fd, end)  # no half batch: the next one starts on a fresh line
            raise OSError(exc.errno, f"{self.path}: cannot write {len(data)} bytes: {exc.strerror}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
