"""Calibrating a fitted model artefact: score good images it never saw, set the threshold, write it into the
manifest with how it was set. The decide stage then uses it; verdicts carry score / threshold for operators."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import stream_ad
from stream_ad.artefact import load_model, read_manifest, save_threshold, serving_settings, split_layout, split_root
from stream_ad.calibration.bounds import images_needed
from stream_ad.calibration.crossfit import OutOfFold
from stream_ad.calibration.holdout import CalibrationError, file_sha256, relative_to_root
from stream_ad.calibration.shift import GoodScores
from stream_ad.calibration.thresholds import defect_report, image_threshold, pixel_threshold, too_few_images
from stream_ad.data import Layout, MVTecCategory
from stream_ad.data.folders import image_files
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings

log = logging.getLogger(__name__)

METHOD = "clopper-pearson"


@dataclass(frozen=True)
class GoodImages:
    paths: list[Path]
    source: str  # where they came from, for the manifest and the report


def held_out_images(split: dict[str, Any] | None, data_root: Path) -> GoodImages:
    """The good images the artefact's fit held out (recorded paths, resolved against this machine's data.root, or
    against the folder given to `fit --good`)."""
    if split is None:
        raise CalibrationError(
            "this model artefact records no data split (fitted before calibration existed): refit it with "
            "`stream-ad fit`, or give good images it was not fitted on with --good DIR"
        )
    if not split["held_out"]:
        raise CalibrationError(
            "this model artefact held no images out of fitting (calibration.holdout_fraction was 0): refit with "
            "calibration.holdout_fraction > 0, or give good images it was not fitted on with --good DIR"
        )
    root, source = _split_folder(split, data_root)
    paths = [root / entry["path"] for entry in split["held_out"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        hint = ("point data.root at the data set the model was fitted from" if split_layout(split) is Layout.MVTEC
                else "give good images it was not fitted on with --good DIR")
        raise CalibrationError(f"{len(missing)} held-out image(s) not found under {root}, e.g. {missing[0]}: {hint}")
    return GoodImages(paths, f"{len(paths)} good images of {source} held out of fitting")


def _split_folder(split: dict[str, Any], data_root: Path) -> tuple[Path, str]:
    """Where a data split's recorded paths start here, and how its good images' folder is named for a reader."""
    root = split_root(split, data_root)
    return root, f"{root}/train/good" if split_layout(split) is Layout.MVTEC else str(root)


def folder_images(folder: Path) -> GoodImages:
    paths = image_files(folder, "--good")
    return GoodImages(paths, f"{len(paths)} good images under {folder}")


def check_good_images(good: GoodImages, split: dict[str, Any] | None, settings: Settings) -> None:
    """Enough images for the asked rate, and none the model was fitted on (by content: copies and renames count)."""
    cfg = settings.calibration
    if len(good.paths) < images_needed(cfg.target_fpr, cfg.confidence):
        raise too_few_images(len(good.paths), cfg.target_fpr, cfg.confidence)
    if split is None:
        raise CalibrationError(
            "this model artefact does not record which images it was fitted on, so calibration cannot make sure it "
            "never sees them: refit it with `stream-ad fit`"
        )
    fitted = {entry["sha256"] for entry in split["fitted"]}
    seen = [p for p in good.paths if file_sha256(p) in fitted]
    if seen:
        raise CalibrationError(
            f"{len(seen)} of the {len(good.paths)} calibration images were used to fit this model (e.g. {seen[0]}): "
            "their scores are optimistically low and would understate the false-alarm rate; calibrate on the "
            "held-out images (the default) or on other good images"
        )


def _score(model: AnomalyModel, paths: list[Path], keep_maps: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    scores: list[float] = []
    maps: list[np.ndarray] = []
    for pred in model.predict_files(paths):
        scores.extend(float(s) for s in pred.scores)
        if keep_maps:
            maps.extend(m.astype(np.float32) for m in pred.maps)
    return np.asarray(scores), maps


def calibrate(model: AnomalyModel, settings: Settings, good: GoodImages, *, defects: bool) -> dict[str, Any]:
    """Set model.threshold from `good` (and report on labelled defects when asked); returns the threshold record."""
    check_good_images(good, model.data_split, settings)
    record = threshold_record(functools.partial(_score, model), settings, good, defects=defects)
    model.threshold = record
    return record


# Image paths, whether to keep the maps -> their scores and (or no) maps.
Scoring = Callable[[list[Path], bool], tuple[np.ndarray, list[np.ndarray]]]


def threshold_record(score: Scoring, settings: Settings, good: GoodImages, *, defects: bool) -> dict[str, Any]:
    """The threshold record of the scores `score` gives `good` (and the recall report on data.root's labelled
    defects when asked): a model artefact's scores, or an exported INT8 graph's (stream_ad.commands.export)."""
    log.info("scoring %s", good.source)
    good_scores, good_maps = score(good.paths, settings.calibration.pixel_target_fpr is not None)
    return scores_record(good_scores, good_maps, score, settings, good, defects=defects)


def scores_record(good_scores: np.ndarray, good_maps: list[np.ndarray], score: Scoring, settings: Settings,
                  good: GoodImages, *, defects: bool) -> dict[str, Any]:
    """The threshold record of `good`'s scores (and maps, for a pixel threshold); `score` scores the labelled
    defects of the recall report."""
    cfg = settings.calibration
    image = image_threshold(good_scores, cfg.target_fpr, cfg.confidence)
    record: dict[str, Any] = {
        "value": image.value,
        "method": METHOD,
        "description": (
            f"the {ordinal(image.allowed_false_alarms + 1)} highest score of {good.source}: with "
            f"{cfg.confidence:.0%} confidence the false-alarm rate on good parts is at most "
            f"{image.fpr_upper_bound:.4f} (target {cfg.target_fpr:g}; exact one-sided Clopper-Pearson bound)"
        ),
        **image.record(),
        "images": {"source": good.source, "paths": [relative_to_root(p, settings.data.root) for p in good.paths]},
        # What the running pipeline compares its first frames' scores with (stream_ad.calibration.shift).
        "good_scores": GoodScores.of(good_scores).record(),
        "pixel": pixel_threshold(good_maps, cfg.pixel_target_fpr) if cfg.pixel_target_fpr is not None else None,
        "defects": None,
        "calibrated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "stream_ad_version": stream_ad.__version__,
    }
    if defects:
        samples = MVTecCategory(settings.data.root).defective()
        if samples:
            log.info("scoring %d labelled defective images for the recall report", len(samples))
            defect_scores, _ = score([s.path for s in samples], False)
            record["defects"] = defect_report(good_scores, defect_scores, image.value)
        else:
            log.info("no labelled defects under %s/test: no recall / F1 report", settings.data.root)
    return record


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def cross_fitted(split: dict[str, Any], settings: Settings) -> tuple[GoodImages, OutOfFold]:
    """A cross-fitted artefact's good images and their out-of-fold scores (recorded at fit: the fold models are not
    kept), checked against what calibration asks before any model loads."""
    crossed = OutOfFold.of(split["cross_fit"])
    cfg = settings.calibration
    if cfg.pixel_target_fpr is not None:
        raise CalibrationError(
            "calibration.pixel_target_fpr needs the maps of good images the model never saw, and a cross-fitted "
            f"artefact (calibration.folds {crossed.folds}) keeps only its folds' image scores: give other good images "
            "with --good DIR, or fit with a hold-out (calibration.folds 0)")
    if crossed.scores.size < images_needed(cfg.target_fpr, cfg.confidence):
        raise too_few_images(crossed.scores.size, cfg.target_fpr, cfg.confidence, cross_fitted=True)
    root, source = _split_folder(split, settings.data.root)
    paths = [root / entry["path"] for entry in split["fitted"]]
    return GoodImages(paths, f"{len(paths)} good images of {source}, each scored by a model fitted on the other "
                             f"{crossed.folds - 1} of {crossed.folds} folds"), crossed


def calibrate_fit(model: AnomalyModel, settings: Settings, *, defects: bool) -> dict[str, Any]:
    """Calibrate on what the model's fit set aside: its folds' out-of-fold scores (calibration.folds), else its
    held-out images."""
    split = model.data_split
    if split is None or "cross_fit" not in split:
        return calibrate(model, settings, held_out_images(split, settings.data.root), defects=defects)
    good, crossed = cross_fitted(split, settings)
    record = scores_record(crossed.scores, [], functools.partial(_score, model), settings, good, defects=defects)
    model.threshold = record | {"cross_fit_folds": crossed.folds}
    return model.threshold


def calibrate_artefact(settings: Settings, model_dir: Path, good: Path | None) -> dict[str, Any]:
    """Load the artefact, calibrate it on what its fit set aside (or on the folder `good`), rewrite its manifest."""
    settings = serving_settings(model_dir, settings)  # the artefact's data.root and calibration unless given
    split = read_manifest(model_dir).data_split
    # The recall report reads data.root/test: only the data set of an MVTec-layout fit is this model's.
    defects = settings.calibration.defects and split is not None and split_layout(split) is Layout.MVTEC
    if good is None and split is not None and "cross_fit" in split:
        cross_fitted(split, settings)  # checked before the model loads: a wrong call fails in a second
        model = load_model(model_dir, settings)
        record = calibrate_fit(model, settings, defects=defects)
    else:
        images = folder_images(good) if good is not None else held_out_images(split, settings.data.root)
        check_good_images(images, split, settings)  # before the model loads: a wrong call fails in a second
        model = load_model(model_dir, settings)
        record = calibrate(model, settings, images, defects=defects)
    save_threshold(model, model_dir)
    return record


def report(record: dict[str, Any]) -> str:
    """The calibration as an operator reads it."""
    lines = [
        f"threshold {record['value']:.4f} ({record['method']})",
        f"  good images: {record['images']['source']}",
        f"  target false-alarm rate {record['target_fpr']:g} at {record['confidence']:.0%} confidence: "
        f"{record['false_alarms']} of {record['n_good']} above the threshold (observed {record['observed_fpr']:.4f}),"
        f" upper bound {record['fpr_upper_bound']:.4f}",
    ]
    if record["pixel"]:
        px = record["pixel"]
        lines.append(f"  pixel threshold {px['value']:.4f} ({px['target_fpr']:g} of {px['n_pixels']} good pixels)")
    if record["defects"]:
        d = record["defects"]
        lines.append(
            f"  {d['n_defective']} labelled defects: recall {d['recall_at_threshold']:.3f} at this threshold "
            f"(F1 {d['f1_at_threshold']:.3f}); max F1 {d['max_f1']:.3f} at threshold {d['threshold_at_max_f1']:.4f} "
            f"(recall {d['recall_at_max_f1']:.3f})"
        )
    lines.append("  verdicts carry score_normalised = score / threshold (1.0 = the threshold)")
    return "\n".join(lines)

