"""`stream-ad fit`: fit on the good images (a plain folder, or data.root/train/good) minus the calibration hold-out
and save the artefact (the demo fits so too)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from stream_ad.artefact import default_model_dir, save_model
from stream_ad.calibration.holdout import split_good
from stream_ad.data import GoodFolder, MVTecCategory, good_folder
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings

log = logging.getLogger(__name__)


def good_folder_of(settings: Settings, good: Path | None) -> GoodFolder:
    """The folder given with --good, else data.root's train/good."""
    return good_folder(good, "--good") if good is not None else MVTecCategory(settings.data.root).good_folder()


def fit_and_save(settings: Settings, out: Path, good: Path | None = None) -> AnomalyModel:
    """Fit on the training side of the hold-out split, record the split in the artefact, save it to `out`."""
    images = good_folder_of(settings, good)
    split = split_good(images.paths, settings.calibration)
    model = AnomalyModel(settings, calibration_images=split.fit,
                         max_image_pixels=settings.pipeline.source.max_image_pixels)
    log.info("fitting %s on %d good images of %s (%d held out for calibration)", settings.scorer.method,
             len(split.fit), images.root, len(split.held_out))
    start = time.perf_counter()
    model.fit(split.fit)
    log.info("fitted in %.1f s", time.perf_counter() - start)
    model.data_split = split.manifest(images.root, images.layout)
    save_model(model, out)
    return model


def fit(settings: Settings, out: Path | None = None, good: Path | None = None) -> int:
    out = out or default_model_dir(settings, good.resolve().name if good is not None else None)
    model = fit_and_save(settings, out, good)
    assert model.data_split is not None
    print(f"model artefact: {out} (fitted on {len(model.data_split['fitted'])} good images, "
          f"{len(model.data_split['held_out'])} held out for `stream-ad calibrate`)")
    return 0
