"""Cross-fitted calibration (calibration.folds): out-of-fold scores of every good image, for the model fitted on all.

A hold-out split spends a quarter of the good images on calibration alone: the model sees fewer, and the threshold
comes from few scores, so it sits at the highest of them (190 held out of magnetic_tile's 761 allow no false alarm at
2 % with 95 % confidence). Cross-fitting (the K-fold form of cross-conformal calibration) splits the good images into
K folds (a seeded shuffle); for each fold, a model fitted on the other K - 1 scores it. Every image then has a score
from a model that never saw it, and the served model is fitted on all of them. The bound is stated for a fold
model's scores; the served model, which saw more good parts, scores new good parts lower if anything (for PatchCore:
a larger bank of good patches), so it holds for that model too. This is an argument, not a proof: it is checked on
unseen good images of every shared data set in calibration/README.md, "Cross-fitting".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream_ad.errors import CalibrationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutOfFold:
    """Each good image's fold and its score by the model fitted on every other fold, in the images' order."""

    folds: int
    fold: list[int]
    scores: np.ndarray

    def record(self) -> dict[str, Any]:
        """The artefact's data_split["cross_fit"], aligned with data_split["fitted"]."""
        return {"folds": self.folds, "fold": self.fold, "scores": [float(s) for s in self.scores]}

    @classmethod
    def of(cls, record: dict[str, Any]) -> OutOfFold:
        return cls(int(record["folds"]), [int(f) for f in record["fold"]], np.asarray(record["scores"], np.float64))


def assign_folds(count: int, folds: int, seed: int) -> list[int]:
    """A fold for each of `count` images: a shuffle seeded with calibration.seed, dealt round-robin, so fold sizes
    differ by one at most and the same settings give the same folds on any machine.

    Shuffled, as the hold-out is, not contiguous blocks of the sorted names: blocks group magnetic_tile's images by
    the session they were taken in, and a fold model that never saw a session scores it high, which cost recall
    (calibration/README.md, "Cross-fitting"). What shuffling assumes: good images that are not near copies of each
    other (stills of different parts, not consecutive frames of one)."""
    if count < folds:
        raise CalibrationError(f"calibration.folds {folds} needs at least {folds} good images, got {count}")
    fold = np.empty(count, dtype=int)
    fold[np.random.default_rng(seed).permutation(count)] = np.arange(count) % folds
    return fold.tolist()


# Fits a model on these images and returns a scorer of image files: paths -> their image scores.
FitScorer = Callable[[list[Path]], Callable[[list[Path]], np.ndarray]]


def out_of_fold_scores(paths: Sequence[Path], folds: int, seed: int, fit: FitScorer) -> OutOfFold:
    """Each of `paths` scored by a model `fit` on the folds it is not in."""
    fold = assign_folds(len(paths), folds, seed)
    scores = np.empty(len(paths))
    for k in range(folds):
        held = [i for i, f in enumerate(fold) if f == k]
        log.info("cross-fitting for calibration: fold %d of %d, %d images scored by a model fitted on the other %d",
                 k + 1, folds, len(held), len(paths) - len(held))
        score = fit([p for p, f in zip(paths, fold, strict=True) if f != k])
        scores[held] = score([paths[i] for i in held])
    return OutOfFold(folds, fold, scores)
