"""Verdicts as JSON lines, appended and flushed per batch (a crash loses at most the batch being written)."""

from __future__ import annotations

import json
from typing import IO

from stream_ad.sinks.base import Sink, Verdict, register_sink


@register_sink("jsonl")
class JsonlSink(Sink):
    _file: IO[str] | None = None

    @property
    def path(self):  # noqa: ANN201 - Path
        return self.cfg.file(self.output_dir)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the stage's life

    def write(self, verdicts: list[Verdict]) -> None:
        assert self._file is not None, "JsonlSink.open() was not called"
        lines = "".join(json.dumps(v.record(), separators=(",", ":")) + "\n" for v in self.wanted(verdicts))
        if lines:
            self._file.write(lines)
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
