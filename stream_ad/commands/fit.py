"""`stream-ad fit`: fit on train/good minus the calibration hold-out and save the artefact (the demo fits so too)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from stream_ad.artefact import default_model_dir, save_model
from stream_ad.calibration.holdout import split_good
from stream_ad.data import MVTecCategory
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings

log = logging.getLogger(__name__)


def fit_and_save(settings: Settings, out: Path) -> AnomalyModel:
    """Fit on the training side of the hold-out split, record the split in the artefact, save it to `out`."""
    category = MVTecCategory(settings.data.root)
    split = split_good([s.path for s in category.train()], settings.calibration)
    model = AnomalyModel(settings, calibration_images=split.fit)
    log.info("fitting %s on %d good images of %s (%d held out for calibration)", settings.scorer.method,
             len(split.fit), category.root, len(split.held_out))
    start = time.perf_counter()
    model.fit(split.fit)
    log.info("fitted in %.1f s", time.perf_counter() - start)
    model.data_split = split.manifest(category.root)
    save_model(model, out)
    return model


def fit(settings: Settings, out: Path | None = None) -> int:
    out = out or default_model_dir(settings)
    model = fit_and_save(settings, out)
    assert model.data_split is not None
    print(f"model artefact: {out} (fitted on {len(model.data_split['fitted'])} good images, "
          f"{len(model.data_split['held_out'])} held out for `stream-ad calibrate`)")
    return 0
