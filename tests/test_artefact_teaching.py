"""Teachings as artefact versions: saved with their sums and who/when, replayed by load_model, rolled back."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest

from stream_ad.artefact import (
    ArtefactError,
    Teaching,
    load_model,
    model_info,
    read_manifest,
    rollback_teaching,
    save_teaching,
    taught_items,
    verify_artefact,
)
from stream_ad.data.folders import read_image
from stream_ad.model import AnomalyModel
from tests.scorers.patchcore.test_teaching import DEFECT


@pytest.fixture
def artefact(piped_patchcore: tuple[AnomalyModel, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(piped_patchcore[1], tmp_path / "model"))


def _teach(directory: Path, operator: str = "anna") -> tuple[int, float]:
    """One teaching of the defect image as the infer stage does it; (version, the frame's score before)."""
    model = load_model(directory)
    frame = read_image(DEFECT)
    before = float(model.predict([frame]).scores[0])
    items = model.scorer.add_good(model.preprocessor([frame]).inputs, within=before / 4, limit=500)
    after = float(model.predict([frame]).scores[0])
    png = cv2.imencode(".png", frame)[1].tobytes()
    return save_teaching(directory, items, Teaching(operator, "cam0", 7, before, after, png)), before


def test_a_restart_loads_the_taught_model(artefact: Path) -> None:
    bank = load_model(artefact).scorer.memory.shape[0]
    version, before = _teach(artefact)
    manifest = verify_artefact(artefact)  # every file, the taught ones too, against its sum
    entry = manifest.teaching[0]
    assert version == 1 and entry["operator"] == "anna" and entry["frame_id"] == 7
    assert entry["items"]["sha256"] == manifest.files[entry["items"]["file"]]
    assert (artefact / entry["frame"]["file"]).is_file()
    reloaded = load_model(artefact)
    assert reloaded.scorer.memory.shape[0] == bank + taught_items(manifest)
    assert float(reloaded.predict([read_image(DEFECT)]).scores[0]) <= before / 4
    assert "taught version 1" in model_info(artefact).version


def test_a_changed_teaching_is_refused(artefact: Path) -> None:
    _teach(artefact)
    items = artefact / read_manifest(artefact).teaching[0]["items"]["file"]
    items.write_bytes(items.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtefactError, match="taught/0001.safetensors has sha256"):
        load_model(artefact)


def test_rollback_restores_the_fitted_bank(artefact: Path) -> None:
    bank = load_model(artefact).scorer.memory.shape[0]
    _teach(artefact, "anna")
    _teach(artefact, "ben")
    with pytest.raises(ArtefactError, match=r"roll back to 0\.\.1, not 5"):
        rollback_teaching(artefact, 5)
    removed = rollback_teaching(artefact)
    assert [e["operator"] for e in removed] == ["ben"] and len(read_manifest(artefact).teaching) == 1
    removed = rollback_teaching(artefact, 0)
    assert [e["operator"] for e in removed] == ["anna"]
    assert not list((artefact / "taught").iterdir())
    verify_artefact(artefact)
    assert load_model(artefact).scorer.memory.shape[0] == bank
    with pytest.raises(ArtefactError, match="never taught"):
        rollback_teaching(artefact)
