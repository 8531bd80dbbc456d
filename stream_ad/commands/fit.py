"""`stream-ad fit`: fit on the good images (a plain folder, or data.root/train/good) minus the calibration hold-out
and save the artefact (the demo fits so too)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from stream_ad.artefact import default_model_dir, save_model
from stream_ad.calibration.bounds import images_needed
from stream_ad.calibration.crossfit import out_of_fold_scores
from stream_ad.calibration.holdout import HoldoutSplit, split_good
from stream_ad.data import GoodFolder, MVTecCategory, good_folder
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings

log = logging.getLogger(__name__)


def good_folder_of(settings: Settings, good: Path | None) -> GoodFolder:
    """The folder given with --good, else data.root's train/good."""
    return good_folder(good, "--good") if good is not None else MVTecCategory(settings.data.root).good_folder()


def fit_and_save(settings: Settings, out: Path, good: Path | None = None) -> AnomalyModel:
    """Fit on the training side of the hold-out split (or, with calibration.folds, on every image after the folds'
    out-of-fold scores), record the split in the artefact, save it to `out`."""
    images = good_folder_of(settings, good)
    cfg = settings.calibration
    split = split_good(images.paths, cfg) if not cfg.folds else HoldoutSplit(sorted(images.paths), [], 0.0, cfg.seed)
    crossed = out_of_fold_scores(split.fit, cfg.folds, cfg.seed, lambda paths: _fitted(settings, paths).score_files) \
        if cfg.folds else None
    needed = images_needed(cfg.target_fpr, cfg.confidence)
    if not crossed and len(split.held_out) < needed:
        log.warning("%d held-out good images cannot show calibration.target_fpr %g at %g confidence (%d needed): "
                    "`stream-ad calibrate` will refuse them; cross-fitting (calibration.folds 4) calibrates on all %d",
                    len(split.held_out), cfg.target_fpr, cfg.confidence, needed, len(images.paths))
    log.info("fitting %s on %d good images of %s (%s)", settings.scorer.method, len(split.fit), images.root,
             f"all of them, calibrated by {cfg.folds} folds" if crossed else f"{len(split.held_out)} held out for "
             "calibration")
    start = time.perf_counter()
    model = _fitted(settings, split.fit)
    log.info("fitted in %.1f s", time.perf_counter() - start)
    model.data_split = split.manifest(images.root, images.layout) | (
        {"cross_fit": crossed.record()} if crossed else {})
    save_model(model, out)
    return model


def _fitted(settings: Settings, paths: list[Path]) -> AnomalyModel:
    model = AnomalyModel(settings, calibration_images=paths, max_image_pixels=settings.pipeline.source.max_image_pixels)
    model.fit(paths)
    return model


def fit(settings: Settings, out: Path | None = None, good: Path | None = None) -> int:
    out = out or default_model_dir(settings, good.resolve().name if good is not None else None)
    model = fit_and_save(settings, out, good)
    assert model.data_split is not None
    split = model.data_split
    calibration = (f"{split['cross_fit']['folds']} folds' out-of-fold scores" if "cross_fit" in split
                   else f"{len(split['held_out'])} held out") + " for `stream-ad calibrate`"
    print(f"model artefact: {out} (fitted on {len(split['fitted'])} good images, {calibration})")
    return 0
