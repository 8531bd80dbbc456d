"""The model artefact: round trips, refusals of a model that would mis-score, the manifest, folder naming."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_ad.artefact import (
    ArtefactError,
    Manifest,
    default_model_dir,
    load_model,
    model_info,
    read_manifest,
    serving_model_dir,
    write_manifest,
)
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings, load_settings
from tests.conftest import PIPED, WEIGHTS

CATEGORY = PIPED / "PA_BDP01_TL"


def settings_for(root: Path, **overrides: object) -> Settings:
    return load_settings(data={"root": str(root)}, **overrides)


def test_artefact_round_trip(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    model, path = piped_patchcore
    frames = [np.asarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3)), np.uint8)]
    loaded = load_model(path, model.settings)
    a, b = model.predict(frames), loaded.predict(frames)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    np.testing.assert_allclose(a.maps[0], b.maps[0], rtol=1e-4, atol=1e-5)
    assert Manifest.of(load_model(path)).backbone["weights_sha256"].startswith("3199495032c205ca")


def test_artefact_refuses_other_preprocessing(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    _, path = piped_patchcore
    other = settings_for(CATEGORY, preprocess={"image_size": 256}, scorer={"params": {"coreset_ratio": 0.1}})
    with pytest.raises(ArtefactError, match="preprocess.image_size: fitted 224, now 256"):
        load_model(path, other)


def test_artefact_refuses_other_weights(piped_patchcore: tuple[AnomalyModel, Path], tmp_path: Path) -> None:
    _, path = piped_patchcore
    state = torch.load(WEIGHTS, weights_only=True)
    state["features.0.0.weight"] = state["features.0.0.weight"] * 1.01
    other_weights = tmp_path / "retrained.pth"
    torch.save(state, other_weights)
    other = settings_for(CATEGORY, backbone={"weights_path": str(other_weights)},
                         scorer={"params": {"coreset_ratio": 0.1}})
    with pytest.raises(ArtefactError, match="weights"):
        load_model(path, other)


def test_artefact_refuses_incomplete_or_foreign_folders(
    piped_patchcore: tuple[AnomalyModel, Path], tmp_path: Path
) -> None:
    _, path = piped_patchcore
    with pytest.raises(ArtefactError, match="manifest.json is missing"):
        load_model(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(path, broken)
    (broken / "state.safetensors").unlink()
    with pytest.raises(ArtefactError, match="incomplete"):
        load_model(broken)


def test_params_spelled_out_at_their_defaults_are_the_same_model(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    """The settings keep a method's params as written: the artefact compares them as the method reads them."""
    model, path = piped_patchcore
    spelled = {**model.scorer.params.model_dump(), "coreset_ratio": 0.1}
    loaded = load_model(path, settings_for(CATEGORY, scorer={"params": spelled}))
    assert loaded.scorer.params == model.scorer.params
    with pytest.raises(ArtefactError, match=r"scorer.params: fitted .*'num_neighbors': 9.*now .*'num_neighbors': 3"):
        load_model(path, settings_for(CATEGORY, scorer={"params": {**spelled, "num_neighbors": 3}}))


def test_manifest_round_trip_and_threshold(piped_patchcore: tuple[AnomalyModel, Path], tmp_path: Path) -> None:
    _, path = piped_patchcore
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    manifest = read_manifest(copy)
    assert manifest.method == "patchcore" and manifest.threshold is None and manifest.threshold_value is None
    write_manifest(copy, Manifest(**{**manifest.__dict__, "threshold": {"value": 1.25, "method": "clopper-pearson"}}))
    assert read_manifest(copy).threshold_value == 1.25
    assert load_model(copy).threshold == {"value": 1.25, "method": "clopper-pearson"}
    raw = json.loads((copy / "manifest.json").read_text())
    del raw["preprocessing"]
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtefactError, match="lacks preprocessing"):
        read_manifest(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(ArtefactError, match="not valid JSON"):
        read_manifest(copy)


def test_model_info_names_the_fitted_state_and_carries_the_pixel_threshold(
        piped_patchcore: tuple[AnomalyModel, Path], tmp_path: Path) -> None:
    _, path = piped_patchcore
    v1 = tmp_path / "line1-v1"
    shutil.copytree(path, v1)
    info = model_info(v1)
    assert info.version.startswith("line1-v1 patchcore state sha256:") and info.pixel_threshold is None
    # Through a symlink (the upgrade procedure's): the folder it points to; the same state, the same digest.
    (tmp_path / "line1").symlink_to(v1)
    assert model_info(tmp_path / "line1") == info
    manifest = read_manifest(v1)
    assert Manifest(**{**manifest.__dict__, "threshold": {"value": 2.0, "pixel": None}}).pixel_threshold_value is None
    record = {"value": 2.0, "pixel": {"value": 0.75, "target_fpr": 0.001}}
    write_manifest(v1, Manifest(**{**manifest.__dict__, "threshold": record}))
    assert read_manifest(v1).pixel_threshold_value == 0.75 and model_info(v1).pixel_threshold == 0.75
    # Another fit (other tensors) in a folder of the same name is another version.
    state = v1 / "state.safetensors"
    state.write_bytes(state.read_bytes() + b" ")
    assert model_info(v1).version != info.version


def test_folder_naming(tmp_path: Path) -> None:
    settings = settings_for(CATEGORY, output_dir=str(tmp_path))
    assert default_model_dir(settings) == tmp_path / "PA_BDP01_TL-patchcore"
    assert serving_model_dir(settings) == default_model_dir(settings)
    assert serving_model_dir(settings_for(CATEGORY, pipeline={"model": "/srv/m"})) == Path("/srv/m")
