"""resolve_threshold: what `stream-ad run` and `stream-ad check` decide with, refused where it cannot decide."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from stream_ad.artefact import read_manifest, write_manifest
from stream_ad.calibration import CalibrationError
from stream_ad.calibration.shift import GoodScores
from stream_ad.pipeline.served import resolve_threshold
from stream_ad.settings import ConfigError, load_settings


@pytest.fixture()
def model(piped_patchcore: tuple[Any, Path], tmp_path: Path) -> Path:
    shutil.copytree(piped_patchcore[1], tmp_path / "model")
    return tmp_path / "model"


def with_threshold(model: Path, threshold: object) -> None:
    write_manifest(model, dataclasses.replace(read_manifest(model), threshold=threshold))  # re-summed


def test_a_calibrated_threshold_far_outside_its_good_scores_is_refused(model: Path) -> None:
    good = GoodScores.of([1.0, 1.2, 1.4, 1.6, 1.8, 2.0])
    with_threshold(model, {"value": 1.9, "good_scores": good.record()})
    assert resolve_threshold(load_settings(), model) == (1.9, f"model artefact {model}")
    for value in (1e30, 3.5):
        with_threshold(model, {"value": value, "good_scores": good.record()})
        message = re.escape(f"threshold {value:g} (model artefact {model}) is far outside the scores of the 6 good "
                            "images it was calibrated on (1 to 2)")
        with pytest.raises(CalibrationError, match=message):
            resolve_threshold(load_settings(), model)
    with_threshold(model, float("nan"))  # a bare number (hand-made artefacts), re-summed
    with pytest.raises(CalibrationError, match="threshold nan .* is not a finite number"):
        resolve_threshold(load_settings(), model)


def test_a_set_threshold_must_be_finite_and_not_negative_for_patchcore(model: Path) -> None:
    assert read_manifest(model).threshold is None
    with pytest.raises(CalibrationError, match=r"-5 \(setting pipeline.decide.threshold\) is negative"):
        resolve_threshold(load_settings(pipeline={"decide": {"threshold": -5}}), model)
    for value in ("nan", "inf"):
        with pytest.raises(ConfigError, match="pipeline.decide.threshold"):
            load_settings(pipeline={"decide": {"threshold": value}})
