"""benchmarks.calibration_split on a real PIPED category: the hold-out cannot calibrate 32 good images at 10 %, the
cross-fitted artefact can, and the false alarms it reports are the served model's on test/good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import PIPED, SHARED

CATEGORY = PIPED / "PA_BDP01_TL"


def test_hold_out_and_cross_fitted_rows(tmp_path: Path) -> None:
    env = {**os.environ, "STREAM_AD_SHARED_DIR": str(SHARED), "STREAM_AD_RUNTIME__THREADS": "2",
           "PYTHONPATH": str(Path(__file__).parents[2])}
    run = subprocess.run([sys.executable, "-m", "benchmarks.calibration_split", str(CATEGORY), "--target-fpr", "0.1",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    held, crossed = json.loads((tmp_path / "calibration_split.json").read_text())["rows"]
    assert held["folds"] == 0 and "8 good images cannot show a false-alarm rate of at most 0.1" in held[
        "calibration_error"]
    assert crossed["folds"] == 4 and crossed["n_good"] == 32 and crossed["fpr_upper_bound"] <= 0.1
    # Its false alarms: the served model's scores of test/good above the artefact's threshold.
    from stream_ad.artefact import load_model, read_manifest
    from stream_ad.settings import load_settings

    model_dir = tmp_path / "PA_BDP01_TL-folds4"
    model = load_model(model_dir, load_settings(data={"root": str(CATEGORY)}, runtime={"threads": 2}))
    good = sorted((CATEGORY / "test" / "good").iterdir())
    above = int((model.score_files(good) > read_manifest(model_dir).threshold_value).sum())
    assert crossed["test_good"] == len(good) and crossed["false_alarms_on_test_good"] == above
    assert 0.0 <= crossed["recall"] <= 1.0 and np.isclose(crossed["recall"], crossed["recall_per_type"]["defect"])
    assert "cannot calibrate: 8 good images" in run.stdout and f"{above} / {len(good)}" in run.stdout
