"""Helpers of the calibration tests: a small data set of symlinks, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import MAGNETIC_TILE, SHARED


def link_subset(src: Path, dst: Path, count: int | None) -> None:
    """Symlinks to `count` images spread evenly over src (all when None): a small data set without copying."""
    paths = sorted(src.iterdir())
    if count is not None:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]
    dst.mkdir(parents=True)
    for p in paths:
        (dst / p.name).symlink_to(p)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream_ad.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})


def small_magnetic_tile(work: Path, good: int, defects_per_type: int) -> Path:
    """`good` train/good images and `defects_per_type` of each defect type of magnetic_tile, as symlinks under
    work/magnetic_tile_small (with its ground truth)."""
    root = work / "magnetic_tile_small"
    link_subset(MAGNETIC_TILE / "train" / "good", root / "train" / "good", good)
    for defect in sorted(d.name for d in (MAGNETIC_TILE / "test").iterdir() if d.name != "good"):
        link_subset(MAGNETIC_TILE / "test" / defect, root / "test" / defect, defects_per_type)
    (root / "ground_truth").symlink_to(MAGNETIC_TILE / "ground_truth")
    return root


def cli_env(root: Path, work: Path, **calibration: object) -> dict[str, str]:
    """The CLI's environment for a data set at `root`: its outputs under work/runs, two threads, and these
    calibration settings (STREAM_AD_CALIBRATION__<KEY>)."""
    return {
        "STREAM_AD_SHARED_DIR": str(SHARED),
        "STREAM_AD_DATA__ROOT": str(root),
        "STREAM_AD_OUTPUT_DIR": str(work / "runs"),
        "STREAM_AD_RUNTIME__THREADS": "2",
        **{f"STREAM_AD_CALIBRATION__{key.upper()}": str(value) for key, value in calibration.items()},
    }


@dataclass
class Calibrated:
    """`stream-ad fit` then `stream-ad calibrate --json` run on a small data set: what they printed and wrote."""

    root: Path
    model: Path
    env: dict[str, str]
    fit_stdout: str
    record: dict[str, Any]  # calibrate's --json
    manifest: dict[str, Any]
    stdout: str  # calibrate's


def fit_and_calibrate(root: Path, work: Path, env: dict[str, str], *calibrate_args: str) -> Calibrated:
    fit = cli("fit", env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]
    record = work / "calibration.json"
    cal = cli("calibrate", *calibrate_args, "--json", str(record), env=env)
    assert cal.returncode == 0, cal.stderr[-3000:]
    model = work / "runs" / f"{root.name}-patchcore"
    return Calibrated(root, model, env, fit.stdout, json.loads(record.read_text()),
                      json.loads((model / "manifest.json").read_text()), cal.stdout)
