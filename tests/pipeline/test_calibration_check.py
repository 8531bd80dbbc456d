"""The start-up calibration check in the supervisor: the first frames' scores (FrameDone notices) against the
calibration's good scores, one log line and the gauge stream_ad_calibration_mismatch{camera}."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from stream_ad.calibration.shift import GoodScores
from stream_ad.pipeline.accounting import Accounting
from stream_ad.pipeline.calibration_check import CalibrationCheck
from stream_ad.pipeline.ledger import Ledger
from stream_ad.pipeline.metrics import SupervisorMetrics
from stream_ad.pipeline.notices import FrameDone
from stream_ad.settings import CalibrationCheckSettings

FRAMES = 30
REFERENCE = GoodScores.of(np.random.default_rng(0).normal(20.0, 1.0, size=190))


def _run(live: np.ndarray, reference: GoodScores | None = REFERENCE,
         cfg: CalibrationCheckSettings | None = None) -> tuple[SupervisorMetrics, CalibrationCheck]:
    metrics = SupervisorMetrics({"cam0": 23.0})
    check = CalibrationCheck(reference, cfg or CalibrationCheckSettings(frames=FRAMES), "cam0", metrics)
    acc = Accounting(Ledger(metrics), metrics)
    acc.add_camera("cam0", check)
    for fid, score in enumerate(live):
        acc.record(FrameDone("cam0", fid, 100.0 + fid, 100.1 + fid, float(score), "ok"), "sink")
    return metrics, check


def _gauge(metrics: SupervisorMetrics) -> float | None:
    return metrics.registry.get_sample_value("stream_ad_calibration_mismatch", {"camera": "cam0"})


def test_a_shifted_camera_warns_once_with_both_distributions_and_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    live = np.random.default_rng(1).normal(22.0, 1.0, size=3 * FRAMES)
    with caplog.at_level(logging.INFO, logger="stream_ad.pipeline.calibration_check"):
        metrics, check = _run(live)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once, on the first FRAMES scores; later frames are not kept
    assert _gauge(metrics) == 1 and check.result is not None and check.result.n_live == FRAMES and not check.scores
    msg = warnings[0]
    assert f"median {np.median(live[:FRAMES]):.4g}" in msg and f"median {REFERENCE.median:.4g}" in msg
    assert "p95" in msg and "stream-ad record PIPELINE.yaml" in msg and "calibrate --good DIR" in msg


def test_an_unchanged_camera_sets_no_alarm(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="stream_ad.pipeline.calibration_check"):
        metrics, check = _run(np.random.default_rng(2).normal(20.0, 1.0, size=FRAMES))
    assert _gauge(metrics) == 0 and check.result is not None and not check.result.shifted(0.001)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("scores as calibrated" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("case", ["no good scores recorded", "disabled", "too few frames yet"])
def test_no_check_without_reference_when_disabled_or_before_enough_frames(case: str) -> None:
    live = np.full(FRAMES, 1e6)  # would be a mismatch
    if case == "no good scores recorded":
        metrics, check = _run(live, reference=None)
    elif case == "disabled":
        metrics, check = _run(live, cfg=CalibrationCheckSettings(enabled=False, frames=FRAMES))
    else:
        metrics, check = _run(live[: FRAMES - 1])
    assert _gauge(metrics) == 0 and check.result is None  # the series exists, at 0
