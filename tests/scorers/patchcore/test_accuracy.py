"""Full-data accuracy (opt-in: `pytest -m accuracy`, minutes on 2 cores): the default settings on every shared set."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ad.data import MVTecCategory
from stream_ad.evaluation import evaluate
from stream_ad.model import AnomalyModel
from stream_ad.settings import load_settings
from tests.conftest import MAGNETIC_TILE, PIPED

pytestmark = pytest.mark.accuracy


def fit_and_evaluate(root: Path) -> dict[str, float]:
    model = AnomalyModel(load_settings(data={"root": str(root)}))
    category = MVTecCategory(root)
    model.fit([s.path for s in category.train()])
    return evaluate(model, category.labelled_images()).rows["overall"]


def test_magnetic_tile_beats_the_peer() -> None:
    # anomalib 2.7 PatchCore, same weights, 224 px, ratio 0.0025: 0.934 / 0.738 / 0.556.
    row = fit_and_evaluate(MAGNETIC_TILE)
    assert row["image_auroc"] >= 0.934 and row["pixel_auroc"] >= 0.738 and row["pro"] >= 0.556


@pytest.mark.parametrize("category", sorted(p.name for p in PIPED.iterdir()) if PIPED.is_dir() else [])
def test_piped_category(category: str) -> None:
    # Measured with the defaults: image AUROC 0.906-1.000, pixel AUROC 0.755 (PA_BRG03_TL) to 0.969.
    row = fit_and_evaluate(PIPED / category)
    assert row["image_auroc"] >= 0.9 and row["pixel_auroc"] >= 0.72
