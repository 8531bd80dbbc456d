"""Teachings as artefact versions: saved with their sums and who/when, replayed by load_model, rolled back."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ad.artefact import (
    ArtefactError,
    load_model,
    model_info,
    read_manifest,
    rollback_teaching,
    taught_items,
    verify_artefact,
)
from stream_ad.data.folders import read_image
from tests.teaching import DEFECT, teach_defect


def test_a_restart_loads_the_taught_model(artefact_copy: Path) -> None:
    bank = load_model(artefact_copy).scorer.memory.shape[0]
    version, before = teach_defect(artefact_copy)
    manifest = verify_artefact(artefact_copy)  # every file, the taught ones too, against its sum
    entry = manifest.teaching[0]
    assert version == 1 and entry["operator"] == "anna" and entry["frame_id"] == 7
    assert entry["items"]["sha256"] == manifest.files[entry["items"]["file"]]
    assert (artefact_copy / entry["frame"]["file"]).is_file()
    reloaded = load_model(artefact_copy)
    assert reloaded.scorer.memory.shape[0] == bank + taught_items(manifest)
    assert float(reloaded.predict([read_image(DEFECT)]).scores[0]) <= before / 4
    assert "taught version 1" in model_info(artefact_copy).version


def test_a_changed_teaching_is_refused(artefact_copy: Path) -> None:
    teach_defect(artefact_copy)
    items = artefact_copy / read_manifest(artefact_copy).teaching[0]["items"]["file"]
    items.write_bytes(items.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtefactError, match="taught/0001.safetensors has sha256"):
        load_model(artefact_copy)


def test_rollback_restores_the_fitted_bank(artefact_copy: Path) -> None:
    bank = load_model(artefact_copy).scorer.memory.shape[0]
    teach_defect(artefact_copy, "anna")
    teach_defect(artefact_copy, "ben")
    with pytest.raises(ArtefactError, match=r"roll back to 0\.\.1, not 5"):
        rollback_teaching(artefact_copy, 5)
    removed = rollback_teaching(artefact_copy)
    assert [e["operator"] for e in removed] == ["ben"] and len(read_manifest(artefact_copy).teaching) == 1
    removed = rollback_teaching(artefact_copy, 0)
    assert [e["operator"] for e in removed] == ["anna"]
    assert not list((artefact_copy / "taught").iterdir())
    verify_artefact(artefact_copy)
    assert load_model(artefact_copy).scorer.memory.shape[0] == bank
    with pytest.raises(ArtefactError, match="never taught"):
        rollback_teaching(artefact_copy)
