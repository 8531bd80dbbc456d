"""Fit and score each candidate on the validation set within a time budget, then choose: the default (the first
candidate) unless another beats its image AUROC beyond the validation set's noise, or its pixel AUROC where image
AUROC cannot tell them apart (saturated, or none beats it beyond noise; stream_ad.tuning.guard)."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stream_ad.evaluation import image_auroc, pixel_auroc
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings
from stream_ad.tuning.candidates import Candidate, settings_for
from stream_ad.tuning.guard import (
    SATURATED,
    Interval,
    PixelHistograms,
    intervals_against_default,
    pixel_intervals_against_default,
)
from stream_ad.tuning.validation import ValidationSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Figures:
    fit_s: float
    score_s: float
    image_auroc: float
    pixel_auroc: float | None  # None where the defects have no masks
    scores: tuple[float, ...]  # per validation image, in its order: what the guard resamples
    # The maps' pixels per validation image, binned (guard.PixelHistograms): what the guard resamples where image
    # AUROC saturates; None where the defects have no masks. Not in the report.
    pixels: PixelHistograms | None = None

    @property
    def frame_ms(self) -> float:
        """Milliseconds to score one validation frame (score_s over them all)."""
        return 1000.0 * self.score_s / len(self.scores)


class RankedOn(enum.StrEnum):
    IMAGE_AUROC = "image AUROC"
    PIXEL_AUROC = "pixel AUROC"


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
    interval: Interval | None = None  # its difference from the default; None: the default, or not run
    ranked_on: RankedOn = RankedOn.IMAGE_AUROC  # what `interval` is of, the same for every outcome of a ranking
    image_interval: Interval | None = None  # its image AUROC's difference from the default, whatever it was ranked on


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
    pixel, pixels = None, None
    if validation.masks is not None:
        pixel = pixel_auroc(validation.masks, maps).value
        pixels = PixelHistograms.count(validation.masks, maps)
    return Figures(round(fit_s, 2), round(score_s, 2), image_auroc(validation.labels, scores), pixel,
                   tuple(float(s) for s in scores), pixels)


def _cost_kind(candidate: Candidate) -> str:
    """Candidates whose seconds per input pixel are alike: the methods on the frozen backbone share one (their time
    is its passes over the images, and what follows them), but tile mode has its own (its coreset chosen among a
    sample of the patches, each frame read once for many tiles: the resize candidates' seconds per pixel, coreset and
    reading included, put its time at 16 times resize 224's on 640 x 640 frames); a method that trains a network has
    its own (its time is its training steps, held within RECONSTRUCTION_STEPS whatever the images)."""
    if candidate.epochs is not None:
        return candidate.method
    return "frozen backbone, tiles" if candidate.mode == "tile" else "frozen backbone"


def ratio_bound(candidate: Candidate, tried: Sequence[tuple[Candidate, float]]) -> float | None:
    """About the most seconds `candidate` can take, from those of a tried candidate that differs from it only by a
    smaller coreset ratio: what grows with the ratio (the greedy coreset's centres, the bank every validation patch
    is searched in) grows in proportion to it, the rest (the backbone's passes) not at all; only the bank's items'
    search for each other's neighbours grows faster, and takes seconds at these sizes. None where none was tried.
    Seconds per pixel alone put tile 224 at ratio 0.01 at ratio 0.002's time (300 frames of 640 x 640: 144 s,
    against 394 s measured); this bound says at most 720 s."""
    ratio = candidate.coreset_ratio
    if ratio is None:
        return None
    bounds = [seconds * ratio / other.coreset_ratio for other, seconds in tried
              if other.coreset_ratio is not None and other.coreset_ratio < ratio
              and replace(other, coreset_ratio=ratio) == candidate]
    return max(bounds, default=None)


def run_order(candidates: Sequence[Candidate]) -> list[int]:
    """The order search runs `candidates` in: theirs, but the first in tile mode right after the first (the
    default). On frames large enough for tiles, tile mode is what finds small defects (README, "Resize, letterbox,
    aspect or tile?": boards of 640 x 640 at image AUROC 0.44 resized, 0.87 tiled), and the grid's resize and letterbox
    candidates at ratio 0.1 could spend the budget before it (300 such frames: 449 s for resize 320 at 0.1). The
    ranking keeps the grid's order, cheapest to score first, for its ties."""
    tile = next((i for i, c in enumerate(candidates) if c.mode == "tile"), 0)
    if tile == 0:  # none, or the default itself
        return list(range(len(candidates)))
    return [0, tile] + [i for i in range(1, len(candidates)) if i != tile]


def search(
    base: Settings, candidates: Sequence[Candidate], fit: Sequence[Path], validation: ValidationSet,
    budget_s: float, max_pixels: int,
) -> list[Trial]:
    """Every candidate tried (in run_order) while the budget lasts: the first always; a later one only if its
    expected time fits in what is left, or, the first of its kind, if any budget is left. Its expected time: the most
    seconds per input pixel of those of its kind tried so far (_cost_kind) times its own input pixels, or its
    ratio_bound where that is more. The others are listed as skipped, with why. The trials come back in the
    candidates' order."""
    start = time.monotonic()
    h, w = validation.shape
    overlap = base.preprocess.tile_overlap
    tried: list[tuple[Candidate, float]] = []  # each candidate run, and its seconds
    trials: dict[int, Trial] = {}
    for number in tqdm(run_order(candidates), desc="tune", unit="candidate"):
        candidate = candidates[number]
        elapsed = time.monotonic() - start
        pixels = candidate.input_pixels(h, w, overlap)
        kind = _cost_kind(candidate)
        rates = [seconds / c.input_pixels(h, w, overlap) for c, seconds in tried if _cost_kind(c) == kind]
        per_pixel = max(rates) * pixels if rates else None
        expected = max((e for e in (per_pixel, ratio_bound(candidate, tried)) if e is not None), default=None)
        if trials and elapsed + (expected or 0.0) > budget_s:
            why = (f"budget: {elapsed:.0f} s of {budget_s:.0f} s spent"
                   + ("" if expected is None else f", this one would take about {expected:.0f} s"))
            log.info("skipping %s (%s)", candidate.name, why)
            trials[number] = Trial(candidate, None, why)
            continue
        log.info("trying %s", candidate.name)
        began = time.monotonic()
        model, fit_s = fit_candidate(settings_for(base, candidate), fit, max_pixels)
        figures = figures_on(model, validation, fit_s)
        tried.append((candidate, time.monotonic() - began))
        log.info("%s: image AUROC %.4f, pixel AUROC %s, fit %.1f s", candidate.name, figures.image_auroc,
                 "-" if figures.pixel_auroc is None else f"{figures.pixel_auroc:.4f}", figures.fit_s)
        trials[number] = Trial(candidate, figures)
    return [trials[i] for i in range(len(candidates))]


def _default_why(default: Figures, confidence: float, better: int, ranked_on: RankedOn, slow_better: int) -> str:
    if better:
        return f"default: {better} candidate(s) beat it beyond noise"
    if slow_better:
        return f"default kept: {slow_better} candidate(s) beat it beyond noise, each too slow for --max-frame-ms"
    if ranked_on is RankedOn.PIXEL_AUROC:
        because = (f"its image AUROC {default.image_auroc:.4f} is saturated" if default.image_auroc >= SATURATED
                   else "no candidate beats its image AUROC beyond noise")
        return (f"default kept: no candidate beats its pixel AUROC beyond noise at {confidence:.0%} (ranked on pixel "
                f"AUROC: {because})")
    if default.image_auroc == 1.0:
        return "default kept: its image AUROC is 1.0 (saturated), so no candidate can beat it"
    return f"default kept: no candidate beats it beyond noise at {confidence:.0%}"


def _why(interval: Interval, image: Interval | None, winner: Interval | None, chosen: bool, confidence: float,
         compared: int, too_slow: str | None) -> str:
    """Why (not), beside the interval the report shows in its own column; `image`: the image-AUROC interval where
    the ranking is on pixel AUROC; `too_slow`: why the candidate could not be chosen for its speed."""
    level = f"{confidence:.0%} over {compared} candidate{'' if compared == 1 else 's'}"
    if chosen:
        return f"beats the default beyond noise ({level}), by the largest lower bound"
    if too_slow is not None:
        return too_slow
    if interval.worse:
        return f"worse than the default ({level})"
    if not interval.beats_default:
        return f"not beyond noise ({level})"
    if image is not None and image.worse:
        return f"beats the default's pixel AUROC, but its image AUROC is worse beyond noise ({level}): {image}"
    assert winner is not None  # one that beats the default means there is a winner
    if interval.low == winner.low:
        return "beats the default, ties the chosen one's lower bound; the chosen one is cheaper (tried first)"
    return f"beats the default, by a lower bound below the chosen one's {winner.low:+.4f}"


def ranked_on(default: Figures, image_decides: bool) -> RankedOn:
    """Pixel AUROC where the defects have masks and image AUROC cannot tell the candidates from the default: the
    default's is saturated (guard.SATURATED), or none that could be chosen beats it beyond noise
    (`image_decides` False); then the maps decide between configurations that detect alike."""
    if default.pixels is not None and (default.image_auroc >= SATURATED or not image_decides):
        return RankedOn.PIXEL_AUROC
    return RankedOn.IMAGE_AUROC


def _too_slow(figures: Figures, max_frame_ms: float | None) -> str | None:
    if max_frame_ms is None or figures.frame_ms <= max_frame_ms:
        return None
    return f"too slow: {figures.frame_ms:.1f} ms a frame, above --max-frame-ms {max_frame_ms:g}"


def rank(trials: Sequence[Trial], labels: Sequence[int], confidence: float = 0.95, seed: int = 0,
         max_frame_ms: float | None = None) -> list[Outcome]:
    """The trials in their order, one chosen, each with why (not). The first trial is the default and must have run
    (search always runs it); another is chosen only if the lower end of its image-AUROC difference from the default
    is above 0 (guard.py: a paired bootstrap at `confidence`, Bonferroni over the candidates run). Where image AUROC
    cannot tell them apart (ranked_on: the default's is saturated, or no candidate beats it beyond noise), it is the
    pixel AUROC's difference instead, and a candidate whose image AUROC is worse beyond noise is not chosen. Of
    several, the one with the largest lower bound; ties (saturated candidates) go to the one tried first, the
    cheaper. A candidate that took longer than `max_frame_ms` to score a frame is not chosen (the default stays
    eligible: it is what the line runs untuned)."""
    default = trials[0].figures
    if default is None:
        raise ValueError("the default (first) candidate was not run")
    ran = [t for t in trials[1:] if t.figures is not None]
    figures = [t.figures for t in ran if t.figures is not None]
    slow = {id(t): _too_slow(f, max_frame_ms) for t, f in zip(ran, figures, strict=True)}
    image = dict(zip(map(id, ran), intervals_against_default(labels, default.scores, [f.scores for f in figures],
                                                             confidence, seed), strict=True))
    # With no other candidate run there is nothing to tell apart: the image ranking's why says so plainly.
    on = ranked_on(default, not ran or any(image[id(t)].beats_default and slow[id(t)] is None for t in ran))
    if on is RankedOn.PIXEL_AUROC:
        assert default.pixels is not None  # ranked_on
        pixels = [f.pixels for f in figures if f.pixels is not None]
        if len(pixels) != len(figures):
            raise ValueError("every candidate needs its maps' pixels to be ranked on pixel AUROC")
        of = dict(zip(map(id, ran), pixel_intervals_against_default(labels, default.pixels, pixels, confidence, seed),
                      strict=True))
    else:
        of = image
    beating = [t for t in ran if of[id(t)].beats_default and not image[id(t)].worse]
    better = [t for t in beating if slow[id(t)] is None]
    # max() keeps the first of equal keys: the one tried first, the cheaper.
    winner = max(better, key=lambda t: of[id(t)].low) if better else trials[0]
    why = _default_why(default, confidence, len(better), on, len(beating) - len(better))
    outcomes = [Outcome(trials[0], winner is trials[0], why, ranked_on=on)]
    for trial in trials[1:]:
        if trial.figures is None:
            outcomes.append(Outcome(trial, False, f"skipped: {trial.skipped}", ranked_on=on))
            continue
        interval = of[id(trial)]
        why = _why(interval, image[id(trial)] if on is RankedOn.PIXEL_AUROC else None, of.get(id(winner)),
                   trial is winner, confidence, len(ran), slow[id(trial)])
        outcomes.append(Outcome(trial, trial is winner, why, interval, on, image[id(trial)]))
    return outcomes
