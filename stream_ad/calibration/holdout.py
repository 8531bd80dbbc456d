"""Which good training images a model is fitted on and which are held out of fitting for calibration.

The split is a seeded shuffle of the sorted file list, so the same settings give the same split on any machine. The
artefact records both sides by path and by content hash: calibrate refuses an image whose bytes were fitted on,
wherever the file now lives (a score on a fitted image is optimistically low and would understate false alarms).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_ad.data import Layout
from stream_ad.errors import CalibrationError
from stream_ad.settings import CalibrationSettings


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def relative_to_root(path: Path, root: Path) -> str:
    """A path as the manifest records it: relative to data.root where it lies inside, else absolute."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def describe_images(paths: Iterable[Path], root: Path) -> list[dict[str, str]]:
    return [{"path": relative_to_root(p, root), "sha256": file_sha256(p)} for p in paths]


@dataclass(frozen=True)
class HoldoutSplit:
    fit: list[Path]
    held_out: list[Path]
    fraction: float
    seed: int

    def manifest(self, root: Path, layout: Layout) -> dict[str, Any]:
        """The artefact's `data_split`: enough to find the held-out images and to recognise the fitted ones (paths
        relative to `root`; stream_ad.artefact.split_root says where they are found again)."""
        return {
            "root": str(root),
            "layout": layout.value,
            "holdout_fraction": self.fraction,
            "seed": self.seed,
            "fitted": describe_images(self.fit, root),
            "held_out": describe_images(self.held_out, root),
        }


def split_good(paths: Sequence[Path], cfg: CalibrationSettings) -> HoldoutSplit:
    """Hold out round(holdout_fraction * n) of the good images, chosen by a shuffle seeded with calibration.seed."""
    ordered = sorted(paths)
    n_held = round(cfg.holdout_fraction * len(ordered))
    if n_held >= len(ordered):
        raise CalibrationError(
            f"calibration.holdout_fraction {cfg.holdout_fraction} of {len(ordered)} good images leaves none to fit on"
        )
    order = np.random.default_rng(cfg.seed).permutation(len(ordered))
    held = sorted(ordered[i] for i in order[:n_held])
    held_set = set(held)
    return HoldoutSplit([p for p in ordered if p not in held_set], held, cfg.holdout_fraction, cfg.seed)
