"""Freshness, with real processes: a verdict too late to act on is never made (a frame older than
pipeline.max_frame_age_ms at the decide stage is dropped as stale, counted), every verdict says which run made it,
and a second run of the same pipeline numbers its frames above every id of the first."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import CATEGORY, DemoRun, cli, read_jsonl, write_pipeline

MAX_AGE_MS = 800.0
SLOW_INFER = {  # a scorer far slower than the camera: frames queue in front of it and age there
    "STREAM_AD_PIPELINE__INFER__DELAY_MS": "300",
    "STREAM_AD_PIPELINE__INFER__MAX_BATCH": "1",
    "STREAM_AD_PIPELINE__MAX_FRAME_AGE_MS": str(MAX_AGE_MS),
}
SINK_MARGIN_MS = 1000.0  # decide -> sink -> fsync, on a loaded 2-core machine


def test_stale_frames_are_dropped_and_a_second_run_numbers_its_frames_above_the_first(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    cfg = write_pipeline(tmp_path / "line.yaml", demo_run.model, tmp_path, metrics={"enabled": False},
                         source={"path": str(CATEGORY / "test"), "fps": 20, "max_frames": 40})
    runs = []
    for name, env in (("first", {}), ("slow", SLOW_INFER)):
        out = cli("run", str(cfg), "--summary", str(tmp_path / f"{name}.json"), env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-4000:]
        runs.append(json.loads((tmp_path / f"{name}.json").read_text()))
    first, slow = runs
    verdicts = read_jsonl(tmp_path / "verdicts.jsonl")  # both runs append to it
    by_run = {r["run_id"]: [v for v in verdicts if v["run_id"] == r["run_id"]] for r in runs}
    assert len(by_run) == 2 and sum(map(len, by_run.values())) == len(verdicts)

    # Each run's ids run on from its first id; the second run's first id is above every id of the first run.
    for r in runs:
        ids = [v["frame_id"] for v in by_run[r["run_id"]]]
        assert len(ids) == r["scored"] > 0
        assert all(r["first_frame_id"] <= i < r["first_frame_id"] + r["frames_in"] for i in ids)
    assert slow["first_frame_id"] > first["first_frame_id"] + first["frames_in"] - 1

    # The slow run: frames that aged past the bound are dropped as stale, never judged; what was judged was fresh.
    assert first["dropped"].get("stale", 0) == 0
    assert slow["dropped"].get("stale", 0) > 0 and slow["scored"] > 0, slow["dropped"]
    assert slow["frames_in"] == slow["scored"] + slow["dropped_total"] and slow["unaccounted"] == 0
    assert set(slow["dropped"]) <= {"stale", "queue_full"}, slow["dropped"]
    late = [v["latency_ms"] for v in by_run[slow["run_id"]] if v["latency_ms"] > MAX_AGE_MS + SINK_MARGIN_MS]
    assert not late, late
    assert "is stale" in out.stderr and "over pipeline.max_frame_age_ms 800" in out.stderr
