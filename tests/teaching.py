"""Teaching a copy of the shared PIPED PatchCore as the infer stage does it: the helpers the artefact and command
tests share."""

from __future__ import annotations

from pathlib import Path

import cv2

from stream_ad.artefact import Teaching, load_model, save_teaching
from stream_ad.data.folders import read_image
from tests.conftest import PIPED

DEFECT = min((PIPED / "PA_BDP01_TL" / "test" / "defect").glob("*.png"))


def teach_defect(directory: Path, operator: str = "anna") -> tuple[int, float]:
    """The defect image taught as good; (the artefact's new version, the frame's score before)."""
    model = load_model(directory)
    frame = read_image(DEFECT)
    before = float(model.predict([frame]).scores[0])
    items = model.scorer.good_items(model.preprocessor([frame]).inputs, within=before / 4, limit=500)
    model.scorer.add_memory(items)
    after = float(model.predict([frame]).scores[0])
    png = cv2.imencode(".png", frame)[1].tobytes()
    return save_teaching(directory, items, Teaching(operator, "cam0", 7, before, after, png)), before
