"""The decide stage: score > threshold -> verdict; a frame older than pipeline.max_frame_age_ms is dropped as stale
(with its age), never judged, and a run of stale frames is logged once."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from stream_ad.frames import Frame, ModelInfo
from stream_ad.pipeline.plan import ModelSpec, RunIdentity, plan_run
from stream_ad.pipeline.stages.base import BadFrame, StageContext
from stream_ad.pipeline.stages.decide import Decide
from stream_ad.settings import load_settings


def _decide(max_frame_age_ms: float | None, dropped: list[tuple[Frame, str, str]]) -> Decide:
    settings = load_settings(pipeline={"max_frame_age_ms": max_frame_age_ms})
    plan = plan_run(settings, models=[ModelSpec("m0", Path("/m"), 2.0, ModelInfo("m"), settings)],
                    camera_models={"cam0": "m0"}, run_dir=Path("/run"), run=RunIdentity("r", 0))
    stage = Decide()
    stage.open(StageContext(plan, plan.stage("decide"), None, threading.Event(),  # type: ignore[arg-type]
                            lambda f, reason, detail: dropped.append((f, reason, detail))))
    return stage


def _frame(fid: int, age_s: float, score: float | None = 1.0) -> Frame:
    return Frame(fid, "cam0", time.time() - age_s, score=score)


def test_frames_older_than_max_frame_age_are_dropped_as_stale_not_judged(caplog: pytest.LogCaptureFixture) -> None:
    dropped: list[tuple[Frame, str, str]] = []
    stage = _decide(500.0, dropped)
    with caplog.at_level(logging.WARNING, "stream_ad.pipeline.stages"):
        out = stage.process([_frame(0, 0.1, 3.0), _frame(1, 2.0), _frame(2, 0.9), _frame(3, 0.2)])
    assert [(f.frame_id, f.verdict) for f in out] == [(0, "anomaly"), (3, "ok")]
    assert [(f.frame_id, reason) for f, reason, _ in dropped] == [(1, "stale"), (2, "stale")]
    assert "ms after capture, over pipeline.max_frame_age_ms 500" in dropped[0][2]
    assert dropped[1][0].verdict is None  # never judged
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "cam0/1 is stale" in lines[0] and "fresh again from cam0/3 on; 2 were" in lines[1]


def test_without_max_frame_age_every_scored_frame_is_judged() -> None:
    dropped: list[tuple[Frame, str, str]] = []
    out = _decide(None, dropped).process([_frame(0, 3600.0, 2.5), _frame(1, 0.0)])
    assert [f.verdict for f in out] == ["anomaly", "ok"] and not dropped
    with pytest.raises(BadFrame, match="no score"):
        _decide(None, dropped).process([_frame(2, 0.0), _frame(3, 0.0, score=None)])
