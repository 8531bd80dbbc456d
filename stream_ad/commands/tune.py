"""`stream-ad tune`: try the settings' own configuration and a grid of preprocessings, coreset ratios and feature taps
on the line's own good images within a time budget; write the settings' own, or a candidate that beats it beyond
noise, as a pipeline YAML, with a report of every candidate (stream_ad.tuning)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stream_ad.calibration.holdout import split_good
from stream_ad.commands.errors import CommandError
from stream_ad.commands.fit import good_folder_of
from stream_ad.data import MVTecCategory
from stream_ad.data.folders import labelled_images
from stream_ad.data.synthetic import KINDS, checked_kinds
from stream_ad.settings import Settings
from stream_ad.settings.load import read_settings_file
from stream_ad.tuning import (
    Candidate,
    ValidationSet,
    default_candidate,
    labelled_validation,
    line_grid,
    rank,
    saturation_note,
    search,
    synthetic_validation,
    taps_note,
    with_candidate,
    with_default,
    write_reports,
)
from stream_ad.tuning.report import table

log = logging.getLogger(__name__)


def _validation(settings: Settings, held_out: Sequence[Path], good: Path | None, defects: Path | None,
                masks: Path | None, synthetic: bool, kinds: Sequence[str] | None) -> ValidationSet:
    """Labelled defects from --defects (or data.root's test/<defect> without --good), else synthetic ones of `kinds`
    (None: all kinds)."""
    max_pixels = settings.pipeline.source.max_image_pixels
    if defects is not None:
        samples = [s for s in labelled_images(defects, "--defects", masks, "--masks") if s.label]
        return labelled_validation(held_out, samples, str(defects), max_pixels)
    if good is None and not synthetic:
        samples = MVTecCategory(settings.data.root).defective()
        if samples and kinds is not None:
            raise CommandError(f"tune --synthetic-kinds is for synthetic defects, and without --good it ranks on "
                               f"{settings.data.root}/test's labelled ones: add --synthetic")
        if samples:
            return labelled_validation(held_out, samples, f"{settings.data.root}/test", max_pixels)
    return synthetic_validation(held_out, settings.calibration.seed, max_pixels, KINDS if kinds is None else kinds)


def _chosen_yaml(config: Path | None, candidate: Candidate) -> str:
    """The settings file tuned (or none) with the candidate's keys: what the user wrote stays as written
    (${shared_dir}, relative paths), and STREAM_AD_* variables keep applying on top rather than being frozen in."""
    tree = with_candidate(read_settings_file(config) if config is not None else {}, candidate)
    origin = f"{config} with" if config is not None else "the built-in defaults with"
    return (f"# written by `stream-ad tune`: {origin} the chosen candidate; see tune_report.md beside it\n"
            + yaml.safe_dump(tree, sort_keys=False))


@dataclass(frozen=True)
class Tuned:
    """What a tune wrote and chose: for `tune` to print and the demo to point at."""

    chosen: Candidate
    why: str
    pipeline: Path
    report_json: Path
    report_md: Path
    table: str
    candidates: int
    skipped: int
    seconds: float
    note: str | None  # tuning.saturation_note: the choice says little about real defects
    # Milliseconds to score a validation frame, the chosen candidate's and the default's (tile mode can cost 20x).
    frame_ms: tuple[float, float]


def _sample(paths: Sequence[Path], max_good: int | None, seed: int) -> list[Path]:
    """At most `max_good` of the good images, a seeded sample, logged: a shorter tune on fewer images."""
    if max_good is None or len(paths) <= max_good:
        return list(paths)
    keep = np.random.default_rng(seed).permutation(len(paths))[:max_good]
    log.info("tuning on %d of the %d good images (a seeded sample, max_good)", max_good, len(paths))
    return sorted(paths[i] for i in keep)


def tune_line(
    settings: Settings, out: Path, *, config: Path | None = None, good: Path | None = None, defects: Path | None = None,
    masks: Path | None = None, synthetic: bool = False, budget_min: float = 20.0,
    candidates: Sequence[Candidate] | None = None, confidence: float = 0.95, max_good: int | None = None,
    max_frame_ms: float | None = None, synthetic_kinds: Sequence[str] | None = None,
) -> Tuned:
    """`config`: the settings file `settings` were read from (the chosen pipeline.yaml is it with the chosen keys);
    `candidates`: the grid to try besides the settings' own configuration, which is always tried first and kept
    unless one beats it beyond noise at `confidence` (default: line_grid, the backbone's other taps and
    candidate_grid for the frames' size); `max_good`: at most this many good images (a seeded sample; None: all);
    `max_frame_ms`: no candidate slower than this to score a validation frame is chosen (None: no limit);
    `synthetic_kinds`: the synthetic defects' kinds where they are made (None: all of them)."""
    start = time.perf_counter()
    if max_good is not None and max_good < 2:
        raise CommandError(f"tune --max-good must be at least 2 (some to fit, some held out), not {max_good}")
    if max_frame_ms is not None and not max_frame_ms > 0:
        raise CommandError(f"tune --max-frame-ms must be above 0, not {max_frame_ms}")
    if not 0.5 <= confidence < 1.0:
        raise CommandError(f"tune --confidence must be in [0.5, 1), not {confidence}")
    if masks is not None and defects is None:
        raise CommandError("tune --masks needs --defects: the masks of the labelled defective images")
    if synthetic and defects is not None:
        raise CommandError("tune takes --defects or --synthetic, not both")
    if synthetic_kinds is not None and defects is not None:
        raise CommandError("tune --synthetic-kinds is for synthetic defects: it takes no --defects")
    try:
        kinds = None if synthetic_kinds is None else checked_kinds(synthetic_kinds)
    except ValueError as exc:
        raise CommandError(f"tune --synthetic-kinds: {exc}") from None
    images = good_folder_of(settings, good)
    split = split_good(_sample(images.paths, max_good, settings.calibration.seed), settings.calibration)
    if not split.held_out:
        raise CommandError(f"tune scores candidates on held-out good images, and calibration.holdout_fraction "
                           f"{settings.calibration.holdout_fraction} of {len(images.paths)} holds out none")
    validation = _validation(settings, split.held_out, good, defects, masks, synthetic, kinds)
    default = default_candidate(settings)
    backbone = settings.backbone.name
    if candidates is not None:
        grid = with_default(default, candidates)
        taps = "only the settings' own: the candidates were given"
    else:
        grid = line_grid(default, backbone, *validation.shape, len(split.fit), labelled=not validation.synthetic)
        taps = taps_note(default, backbone)
    log.info("feature taps (%s): %s", backbone, taps)
    log.info("tuning on %d good images of %s: %d candidates, scored on %d held-out good images and %s, budget %g "
             "min", len(split.fit), images.root, len(grid), len(split.held_out), validation.defects, budget_min)
    trials = search(settings, grid, split.fit, validation, budget_min * 60,
                    settings.pipeline.source.max_image_pixels)
    outcomes = rank(trials, validation.labels, confidence, settings.runtime.seed, max_frame_ms)
    winner = next(o for o in outcomes if o.chosen)
    chosen = winner.trial.candidate
    out.mkdir(parents=True, exist_ok=True)
    pipeline = out / "pipeline.yaml"
    pipeline.write_text(_chosen_yaml(config, chosen))
    extra = {"good_images": str(images.root), "fitted": len(split.fit), "held_out_good": len(split.held_out),
             "defects": validation.defects, "frame_size": "x".join(map(str, validation.shape[::-1])),
             "budget_min": budget_min, "cpu_cores": os.cpu_count(), "default": default.name, "taps": taps,
             "confidence": confidence, "max_frame_ms": max_frame_ms, "ranked_on": outcomes[0].ranked_on.value,
             "chosen": chosen.name}
    default_figures = outcomes[0].trial.figures
    assert default_figures is not None  # rank() refuses a default that did not run
    note = saturation_note(validation, default_figures.image_auroc, winner is outcomes[0])
    if note is not None:
        log.warning("tune: %s", note)
        extra["note"] = note
    assert winner.trial.figures is not None  # rank() chooses among those that ran
    chosen_ms, default_ms = (round(f.frame_ms, 1) for f in (winner.trial.figures, default_figures))
    extra["scoring_ms_per_frame"] = {"chosen": chosen_ms, "default": default_ms}
    json_path, md_path = write_reports(out, outcomes, extra)
    skipped = sum(o.trial.figures is None for o in outcomes)
    return Tuned(chosen, winner.why, pipeline, json_path, md_path, table(outcomes), len(outcomes), skipped,
                 time.perf_counter() - start, note, (chosen_ms, default_ms))


def tune(settings: Settings, out: Path, *, good: Path | None = None, budget_min: float = 20.0,
         **options: Any) -> int:
    """`stream-ad tune`: tune_line (its options), then its table, the choice and where it was written."""
    tuned = tune_line(settings, out, good=good, budget_min=budget_min, **options)
    print(tuned.table)
    if tuned.skipped:
        print(f"{tuned.skipped} of {tuned.candidates} candidates skipped to stay within the budget of "
              f"{budget_min:g} min")
    print(f"chosen: {tuned.chosen.name} ({tuned.why})\nsettings: {tuned.pipeline}\n"
          f"report: {tuned.report_json}, {tuned.report_md}")
    chosen_ms, default_ms = tuned.frame_ms
    limit = options.get("max_frame_ms")
    against = (f"limit --max-frame-ms {limit:g}" if limit is not None
               else "check it against the line's frame interval (--max-frame-ms)")
    print(f"scoring a frame here: {chosen_ms:g} ms, the default {default_ms:g} ms (tune's validation frames at "
          f"runtime.threads {settings.runtime.threads or 'all cores'}): {against}")
    if tuned.note is not None:
        print(f"note: {tuned.note}")
    good_flag = f" --good {good}" if good is not None else ""
    print(f"next: stream-ad fit -c {tuned.pipeline}{good_flag}, then stream-ad calibrate -c {tuned.pipeline}")
    return 0
