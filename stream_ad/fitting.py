"""Fitting a model the way `stream-ad fit` and the demo do: on train/good minus the calibration hold-out."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from stream_ad.calibration.holdout import split_good
from stream_ad.settings import Settings
from stream_ad.data import MVTecCategory
from stream_ad.model import AnomalyModel

log = logging.getLogger(__name__)


def fit_and_save(settings: Settings, out: Path) -> AnomalyModel:
    """Fit on the training side of the hold-out split, record the split in the artefact, save it to `out`."""
    category = MVTecCategory(settings.data.root)
    split = split_good([s.path for s in category.train()], settings.calibration)
    model = AnomalyModel(settings)
    log.info("fitting %s on %d good images of %s (%d held out for calibration)", settings.scorer.method,
             len(split.fit), category.root, len(split.held_out))
    start = time.perf_counter()
    model.fit(split.fit)
    log.info("fitted in %.1f s", time.perf_counter() - start)
    model.data_split = split.manifest(category.root)
    model.save(out)
    return model
