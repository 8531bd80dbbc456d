"""A file source that ends while the stages behind it are still busy (policy block, a slow scorer): every frame it
read reaches a verdict; none is cut off in the source's socket when the source process exits."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import CATEGORY, DemoRun, cli, read_jsonl, write_pipeline

FRAMES = 40


def test_a_finished_source_waits_for_its_last_frames_to_be_taken(demo_run: DemoRun, tmp_path: Path) -> None:
    # 10 frames/s at the infer stage, about 30 queued behind it and 4 in the source's socket when the files end:
    # seconds of backlog, more than the socket's default linger.
    cfg = write_pipeline(tmp_path / "line.yaml", demo_run.model, tmp_path, policy="block", metrics={"enabled": False},
                         source={"path": str(CATEGORY / "train" / "good"), "fps": None, "loop": True,
                                 "max_frames": FRAMES},
                         infer={"max_batch": 1, "delay_ms": 100.0})
    out = cli("run", str(cfg), "--summary", str(tmp_path / "summary.json"), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_in"] == FRAMES and summary["dropped"] == {}, summary
    assert summary["scored"] == FRAMES == len(read_jsonl(tmp_path / "verdicts.jsonl"))
