"""Helpers of the calibration tests: a small data set of symlinks, the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np


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
