"""One text line per verdict on standard output."""

from __future__ import annotations

import sys

from stream_ad.sinks.base import Sink, Verdict, register_sink


@register_sink("stdout")
class StdoutSink(Sink):
    def write(self, verdicts: list[Verdict]) -> None:
        out = []
        for v in self.wanted(verdicts):
            where = f"  {v.meta['path']}" if "path" in v.meta else ""
            norm = f", {v.score_normalised:.2f} x threshold" if v.score_normalised is not None else ""
            out.append(
                f"{v.camera}/{v.frame_id} {v.verdict.upper():7s} score {v.score:.4f} (threshold {v.threshold:.4f}"
                f"{norm}) "
                f"latency {v.latency_s * 1000:.1f} ms{where}\n"
            )
        if out:
            sys.stdout.write("".join(out))
            sys.stdout.flush()
