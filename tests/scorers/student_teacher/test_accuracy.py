"""Student-teacher accuracy with the example pipelines' settings (opt-in: `pytest -m accuracy`, minutes on 2 cores)."""

from __future__ import annotations

import pytest

from stream_ad.data import MVTecCategory
from stream_ad.evaluation import evaluate
from stream_ad.model import AnomalyModel
from stream_ad.settings import load_settings
from tests.conftest import PIPED, REPO

pytestmark = pytest.mark.accuracy


def test_uninformed_students_on_a_piped_category() -> None:
    # Measured on PA_BDP01_TL with these settings: see the README (student-teacher figures).
    root = PIPED / "PA_BDP01_TL"
    settings = load_settings(REPO / "pipelines" / "uninformed_students.yaml", data={"root": str(root)})
    model = AnomalyModel(settings)
    category = MVTecCategory(root)
    model.fit([s.path for s in category.train()])
    row = evaluate(model, category.labelled_images()).rows["overall"]
    assert row["image_auroc"] >= 0.95 and row["pixel_auroc"] >= 0.9 and row["pro"] >= 0.6


def test_efficientad_on_a_piped_category() -> None:
    # Measured image AUROC 1.00 (local map 1.00, autoencoder map 0.77) on PA_BDP01_TL with 4 teacher and 6
    # student epochs; 0.63 after 2 and 4.
    root = PIPED / "PA_BDP01_TL"
    settings = load_settings(REPO / "pipelines" / "efficientad.yaml", data={"root": str(root)},
                             scorer={"params": {"teacher_steps": 100, "steps": 150}})
    model = AnomalyModel(settings)
    category = MVTecCategory(root)
    model.fit([s.path for s in category.train()])
    row = evaluate(model, category.labelled_images()).rows["overall"]
    assert row["image_auroc"] >= 0.95
