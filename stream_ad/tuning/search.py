"""Fit and score each candidate on the validation set within a time budget, then rank them: image AUROC first,
pixel AUROC (where the defects have masks) to break ties, the faster fit last."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stream_ad.evaluation import image_auroc, pixel_auroc
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings
from stream_ad.tuning.candidates import Candidate, settings_for
from stream_ad.tuning.validation import ValidationSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Figures:
    fit_s: float
    score_s: float
    image_auroc: float
    pixel_auroc: float | None  # None where the defects have no masks


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    figures: Figures | None  # None: not run
    skipped: str | None = None  # why it was not run


@dataclass(frozen=True)
class Outcome:
    trial: Trial
    chosen: bool
    why: str


def _score(model: AnomalyModel, validation: ValidationSet) -> tuple[np.ndarray, list[np.ndarray]]:
    batch = model.settings.runtime.batch_size
    scores, maps = [], []
    for i in range(0, len(validation.frames), batch):
        pred = model.predict(validation.frames[i:i + batch])
        scores.append(pred.scores)
        maps.extend(pred.maps)
    return np.concatenate(scores), maps


def fit_candidate(settings: Settings, fit: Sequence[Path], max_pixels: int) -> tuple[AnomalyModel, float]:
    """The model of `settings` fitted on `fit`, and the seconds that took."""
    start = time.perf_counter()
    model = AnomalyModel(settings, max_image_pixels=max_pixels)
    model.fit(fit)
    return model, time.perf_counter() - start


def figures_on(model: AnomalyModel, validation: ValidationSet, fit_s: float) -> Figures:
    """The fitted model's figures on `validation`."""
    start = time.perf_counter()
    scores, maps = _score(model, validation)
    score_s = time.perf_counter() - start
    pixel = None if validation.masks is None else pixel_auroc(validation.masks, maps).value
    return Figures(round(fit_s, 2), round(score_s, 2), image_auroc(validation.labels, scores), pixel)


def search(
    base: Settings, candidates: Sequence[Candidate], fit: Sequence[Path], validation: ValidationSet,
    budget_s: float, max_pixels: int,
) -> list[Trial]:
    """Every candidate tried in order while the budget lasts: the first always; a later one only if its expected
    time (the most seconds per input pixel of those tried so far, times its own input pixels) fits in what is
    left. The others are listed as skipped, with why."""
    start = time.monotonic()
    h, w = validation.shape
    overlap = base.preprocess.tile_overlap
    cost_per_pixel = 0.0
    trials = []
    for candidate in tqdm(candidates, desc="tune", unit="candidate"):
        elapsed = time.monotonic() - start
        pixels = candidate.input_pixels(h, w, overlap)
        expected = cost_per_pixel * pixels
        if trials and elapsed + expected > budget_s:
            why = f"budget: {elapsed:.0f} s of {budget_s:.0f} s spent, this one would take about {expected:.0f} s"
            log.info("skipping %s (%s)", candidate.name, why)
            trials.append(Trial(candidate, None, why))
            continue
        log.info("trying %s", candidate.name)
        began = time.monotonic()
        model, fit_s = fit_candidate(settings_for(base, candidate), fit, max_pixels)
        figures = figures_on(model, validation, fit_s)
        cost_per_pixel = max(cost_per_pixel, (time.monotonic() - began) / pixels)
        log.info("%s: image AUROC %.4f, pixel AUROC %s, fit %.1f s", candidate.name, figures.image_auroc,
                 "-" if figures.pixel_auroc is None else f"{figures.pixel_auroc:.4f}", figures.fit_s)
        trials.append(Trial(candidate, figures))
    return trials


def _key(figures: Figures) -> tuple[float, float, float]:
    return figures.image_auroc, -1.0 if figures.pixel_auroc is None else figures.pixel_auroc, -figures.fit_s


def _why_not(figures: Figures, best: Figures) -> str:
    if figures.image_auroc < best.image_auroc:
        return f"image AUROC {figures.image_auroc:.4f} below the chosen {best.image_auroc:.4f}"
    if figures.pixel_auroc is not None and best.pixel_auroc is not None and figures.pixel_auroc < best.pixel_auroc:
        return f"same image AUROC; pixel AUROC {figures.pixel_auroc:.4f} below the chosen {best.pixel_auroc:.4f}"
    return f"same AUROCs; fit {figures.fit_s:.1f} s, the chosen one's {best.fit_s:.1f} s"


def rank(trials: Sequence[Trial]) -> list[Outcome]:
    """The trials in their order, the best of those run marked chosen, each with why (not)."""
    ran = [t for t in trials if t.figures is not None]
    if not ran:
        raise ValueError("no candidate was run")
    best = max(ran, key=lambda t: _key(t.figures))  # type: ignore[arg-type]
    assert best.figures is not None
    outcomes = []
    for trial in trials:
        if trial.figures is None:
            outcomes.append(Outcome(trial, False, f"skipped: {trial.skipped}"))
        elif trial is best:
            outcomes.append(Outcome(trial, True, "highest image AUROC, then pixel AUROC, then fastest fit"))
        else:
            outcomes.append(Outcome(trial, False, _why_not(trial.figures, best.figures)))
    return outcomes
