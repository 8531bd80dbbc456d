"""The model artefact: round trips, refusals of a model that would mis-score, the manifest, folder naming."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from stream_ad.artefact import (
    ArtefactError,
    Manifest,
    default_model_dir,
    describe,
    fit_differences,
    load_model,
    model_info,
    read_manifest,
    save_model,
    save_threshold,
    serving_model_dir,
    verify_artefact,
    write_manifest,
)
from stream_ad.data import MVTecCategory, read_image
from stream_ad.geometry import RESAMPLING, map_score
from stream_ad.model import AnomalyModel
from stream_ad.runtime.checksums import sha256_bytes, sha256_file, write_sums
from stream_ad.settings import MAP_SCORE_FRACTION, Settings, load_settings
from tests.conftest import PIPED, WEIGHTS, FaultFigures

CATEGORY = PIPED / "PA_BDP01_TL"
# A model fitted with other preprocessing, taps and scoring params than the defaults: a pipeline file leaving them
# out shows that the artefact brings its own.
OWN = {"preprocess": {"image_size": 64}, "backbone": {"layers": ["features.6"]},
       "scorer": {"params": {"coreset_ratio": 0.2, "num_neighbors": 3, "blur_sigma": 2.0}}}


def settings_for(root: Path, **overrides: object) -> Settings:
    return load_settings(data={"root": str(root)}, **overrides)


@pytest.fixture(scope="module")
def own_settings_model(tmp_path_factory: pytest.TempPathFactory, shared: Path) -> tuple[AnomalyModel, Path]:
    model = AnomalyModel(settings_for(CATEGORY, **OWN))
    model.fit([s.path for s in MVTecCategory(CATEGORY).train()])
    return model, save_model(model, tmp_path_factory.mktemp("own") / "model")


def test_artefact_round_trip(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    model, path = piped_patchcore
    frames = [np.asarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3)), np.uint8)]
    loaded = load_model(path, model.settings)
    a, b = model.predict(frames), loaded.predict(frames)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)
    np.testing.assert_allclose(a.maps[0], b.maps[0], rtol=1e-4, atol=1e-5)
    assert Manifest.of(load_model(path), {}).backbone["weights_sha256"].startswith("3199495032c205ca")


def test_artefact_refuses_other_preprocessing(piped_patchcore: tuple[AnomalyModel, Path]) -> None:
    _, path = piped_patchcore
    other = settings_for(CATEGORY, preprocess={"image_size": 256}, scorer={"params": {"coreset_ratio": 0.1}})
    with pytest.raises(ArtefactError, match="preprocess.image_size: the artefact's 224, given 256"):
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
    with pytest.raises(ArtefactError, match=r"scorer.params.num_neighbors: the artefact's 9, given 3"):
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
    reseal_manifest(copy)
    with pytest.raises(ArtefactError, match="lacks preprocessing"):
        read_manifest(copy)
    (copy / "manifest.json").write_text("{not json")
    reseal_manifest(copy)
    with pytest.raises(ArtefactError, match="not valid JSON"):
        read_manifest(copy)


def reseal_manifest(folder: Path) -> None:
    """Record the manifest's present sum, as a writer that changed it on purpose would."""
    write_sums(folder, {"manifest.json": sha256_file(folder / "manifest.json")})


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
    other = load_model(v1)
    other.scorer.load_state_tensors({"memory_bank": other.scorer.state_tensors()["memory_bank"] * 2})
    save_model(other, v1)
    assert model_info(v1).version != info.version


def test_folder_naming(tmp_path: Path) -> None:
    settings = settings_for(CATEGORY, output_dir=str(tmp_path))
    assert default_model_dir(settings) == tmp_path / "PA_BDP01_TL-patchcore"
    assert serving_model_dir(settings) == default_model_dir(settings)
    assert serving_model_dir(settings_for(CATEGORY, pipeline={"model": "/srv/m"})) == Path("/srv/m")


def test_the_artefact_runs_with_its_own_settings(own_settings_model: tuple[AnomalyModel, Path], tmp_path: Path) -> None:
    """A pipeline file naming none of the model's settings runs it as fitted; how it runs is the file's."""
    model, path = own_settings_model
    given = settings_for(CATEGORY, output_dir=str(tmp_path), runtime={"batch_size": 4, "device": "cpu"})
    loaded = load_model(path, given)
    assert loaded.preprocessor.input_size == 64 and loaded.scorer.params == model.scorer.params
    assert loaded.settings.backbone.layers == ["features.6"]
    assert loaded.settings.runtime == given.runtime and loaded.settings.output_dir == tmp_path
    frames = [np.asarray(np.random.default_rng(1).integers(0, 255, (96, 80, 3)), np.uint8)]
    np.testing.assert_allclose(loaded.predict(frames).scores, model.predict(frames).scores, rtol=1e-5)


def test_training_only_settings_are_never_refused(own_settings_model: tuple[AnomalyModel, Path],
                                                  tmp_path: Path) -> None:
    model, path = own_settings_model
    other_root = tmp_path / "other_line"
    given = settings_for(other_root, scorer={"params": {"coreset_ratio": 0.5, "projection_dim": 64, "seed": 7}},
                         runtime={"seed": 3, "checkpoint_dir": str(tmp_path)}, calibration={"target_fpr": 0.1})
    loaded = load_model(path, given)
    assert loaded.scorer.params == model.scorer.params  # the artefact's coreset, not the file's
    assert loaded.settings.calibration.target_fpr == 0.1 and loaded.settings.data.root == other_root
    assert load_model(path, settings_for(CATEGORY)).settings.data.root == CATEGORY  # not given: the artefact's


def test_model_settings_given_otherwise_are_refused_by_key(own_settings_model: tuple[AnomalyModel, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit in the file or the environment, and different: each named with both values. Given as the artefact
    has them, they pass."""
    _, path = own_settings_model
    assert load_model(path, settings_for(CATEGORY, **OWN)).preprocessor.input_size == 64
    monkeypatch.setenv("STREAM_AD_PREPROCESS__IMAGE_SIZE", "256")
    monkeypatch.setenv("STREAM_AD_SCORER__PARAMS__BLUR_SIGMA", "4")
    given = settings_for(CATEGORY, backbone={"layers": ["features.6", "features.13"]})
    with pytest.raises(ArtefactError) as refused:
        load_model(path, given)
    assert all(part in str(refused.value) for part in (
        "preprocess.image_size: the artefact's 64, given 256",
        "backbone.layers: the artefact's ['features.6'], given ['features.6', 'features.13']",
        "scorer.params.blur_sigma: the artefact's 2.0, given 4.0",
    )), str(refused.value)
    monkeypatch.delenv("STREAM_AD_PREPROCESS__IMAGE_SIZE")
    monkeypatch.delenv("STREAM_AD_SCORER__PARAMS__BLUR_SIGMA")
    with pytest.raises(ArtefactError, match="scorer.method: the artefact's 'patchcore', given 'vae'"):
        load_model(path, settings_for(CATEGORY, scorer={"method": "vae"}))


def test_calibration_rewrites_only_the_threshold(own_settings_model: tuple[AnomalyModel, Path],
                                                 tmp_path: Path) -> None:
    _, path = own_settings_model
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    loaded = load_model(copy, settings_for(tmp_path, runtime={"batch_size": 2}, calibration={"target_fpr": 0.1}))
    loaded.threshold = {"value": 0.5, "method": "clopper-pearson"}
    save_threshold(loaded, copy)
    before, after = read_manifest(path), read_manifest(copy)
    assert after.threshold_value == 0.5 and after.settings == before.settings  # how it was fitted, as it was


def test_fit_differences_count_training_settings_too(own_settings_model: tuple[AnomalyModel, Path]) -> None:
    """What the demo's model cache refits on: any setting that would fit another model."""
    _, path = own_settings_model
    assert fit_differences(path, settings_for(CATEGORY, **OWN)) == []
    assert fit_differences(path, settings_for(CATEGORY, **{**OWN, "scorer": {"params": {"coreset_ratio": 0.5}}})) == [
        "scorer.params.coreset_ratio: the artefact's 0.2, given 0.5",
        "scorer.params.num_neighbors: the artefact's 3, given 9",
        "scorer.params.blur_sigma: the artefact's 2.0, given 4.0",
    ]


@pytest.fixture()
def copy_of(piped_patchcore: tuple[AnomalyModel, Path], tmp_path: Path) -> Path:
    shutil.copytree(piped_patchcore[1], tmp_path / "model")
    return tmp_path / "model"


def test_a_flipped_bit_in_the_state_is_refused_naming_the_file_and_both_sums(
    copy_of: Path, fault_figures: Callable[[FaultFigures], None]
) -> None:
    state = copy_of / "state.safetensors"
    want = sha256_file(state)
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit of the memory bank
    state.write_bytes(bytes(data))
    for load in (load_model, verify_artefact):
        with pytest.raises(ArtefactError) as refused:
            load(copy_of)
        assert f"{state} has sha256 {sha256_bytes(bytes(data))} but manifest.json records {want}" in str(refused.value)
    fault_figures(FaultFigures("model tampering: a flipped bit in state.safetensors", "one bit of the memory bank",
                               "refused at load, naming the file and both sums (the run never starts)", 0))


def test_an_edited_manifest_is_refused_naming_both_sums(copy_of: Path) -> None:
    """The probe's edits (threshold NaN, 1e30, -5) by hand: the manifest no longer matches its sum."""
    path = copy_of / "manifest.json"
    want = sha256_file(path)
    path.write_text(path.read_text().replace('"threshold": null', '"threshold": 1e30'))
    with pytest.raises(ArtefactError, match=f"{path} has sha256 {sha256_file(path)} but SHA256SUMS records {want}"):
        read_manifest(copy_of)


def test_missing_sums_and_the_format_before_them_are_refused(copy_of: Path) -> None:
    write_manifest(copy_of, dataclasses.replace(read_manifest(copy_of), files={}))
    with pytest.raises(ArtefactError, match="records no sha256 of state.safetensors"):
        load_model(copy_of)
    (copy_of / "SHA256SUMS").unlink()
    with pytest.raises(ArtefactError, match="has no sha256 of manifest.json in SHA256SUMS: it is incomplete"):
        read_manifest(copy_of)
    # An artefact written before the sums: format 1, no "files", no SHA256SUMS.
    raw = json.loads((copy_of / "manifest.json").read_text())
    del raw["files"]
    (copy_of / "manifest.json").write_text(json.dumps({**raw, "format_version": 1}))
    with pytest.raises(ArtefactError, match="has artefact format 1; .* reads format 2: refit the model"):
        load_model(copy_of)


def test_a_model_fitted_on_opencv_resampled_frames_is_refused(copy_of: Path) -> None:
    """Its manifest's preprocessing has no "resampling": served with today's antialiased inputs it would mis-score."""
    manifest = read_manifest(copy_of)
    before = {k: v for k, v in manifest.preprocessing.items() if k != "resampling"}
    write_manifest(copy_of, dataclasses.replace(manifest, preprocessing=before))
    with pytest.raises(ArtefactError, match=f"'resampling': '{RESAMPLING}'.*resampled otherwise; refit it"):
        load_model(copy_of)


def test_a_nan_in_the_memory_bank_is_refused_naming_the_tensor(copy_of: Path) -> None:
    """A bank row set to NaN after saving and re-summed: only the NaN check can catch it (the probe's bare
    IndexError)."""
    state = copy_of / "state.safetensors"
    tensors = load_safetensors(state.read_bytes())
    tensors["memory_bank"][3] = float("nan")
    data = save_safetensors(tensors)
    state.write_bytes(data)
    write_manifest(copy_of, dataclasses.replace(read_manifest(copy_of), files={"state.safetensors": sha256_bytes(data)}))
    bank = tensors["memory_bank"]
    message = f"tensor 'memory_bank' holds {bank.shape[1]} NaN or infinite value\\(s\\) of {bank.numel()}"
    for load in (load_model, verify_artefact):
        with pytest.raises(ArtefactError, match=message):
            load(copy_of)


def test_a_frame_score_from_the_map_is_the_artefact_s_own_and_the_line_s(tmp_path: Path, shared: Path) -> None:
    """preprocess.map_score_fraction: each frame scored by the mean of its map's top fraction, in the model artefact
    (recorded, and refused when a pipeline file names another), and in its runtime artefact alike; a model without it
    records nothing, as every artefact fitted before the setting."""
    from stream_ad.commands.export import export
    from stream_ad.line.model import LineModel

    fitted = settings_for(CATEGORY, preprocess={"image_size": 64, "map_score_fraction": 0.05},
                          runtime={"accelerate": "eager"}, output_dir=str(tmp_path))
    model = AnomalyModel(fitted)
    train = [s.path for s in MVTecCategory(CATEGORY).train()[:4]]
    model.fit(train)
    path = save_model(model, tmp_path / "model")
    frames = [read_image(s.path) for s in MVTecCategory(CATEGORY).test()[::16]]
    pred = load_model(path).predict(frames)
    np.testing.assert_allclose(pred.scores, [map_score(m, 0.05) for m in pred.maps], rtol=1e-6)
    assert read_manifest(path).preprocessing["map_score_fraction"] == 0.05
    assert "frame score the mean of the map's top 5.00%" in describe(read_manifest(path))
    with pytest.raises(ArtefactError, match="preprocess.map_score_fraction: the artefact's 0.05, given 0.01"):
        load_model(path, settings_for(CATEGORY, preprocess={"map_score_fraction": 0.01}))
    assert export(fitted, path, tmp_path / "runtime") == 0
    line = LineModel(tmp_path / "runtime", threads=1)
    np.testing.assert_allclose(line.predict(frames).scores, pred.scores, rtol=1e-4)
    np.testing.assert_allclose(line.score_frames(line.preprocessor(frames)), pred.scores, rtol=1e-4)


def _scored_by_the_method(folder: Path, *, named: bool) -> Path:
    """The artefact in `folder` recorded as fitted with the method's own frame score, resealed: `map_score_fraction:
    null` in its settings where `named`, else no key there (fitted before the setting existed); none in its
    preprocessing either way (Preprocessor.describe leaves a null out)."""
    raw = json.loads((folder / "manifest.json").read_text())
    del raw["preprocessing"]["map_score_fraction"]
    del raw["settings"]["preprocess"]["map_score_fraction"]
    if named:
        raw["settings"]["preprocess"]["map_score_fraction"] = None
    (folder / "manifest.json").write_text(json.dumps(raw))
    reseal_manifest(folder)
    return folder


def test_an_artefact_from_before_the_frame_score_setting_keeps_the_method_s_score(
        piped_patchcore: tuple[AnomalyModel, Path], tmp_path: Path) -> None:
    """The default frame score is the map's top 1 %. An artefact fitted before the setting existed records it in
    neither its settings nor its preprocessing: it scored frames by the method's own image score, and loads and
    scores so still, as one fitted with `map_score_fraction: null` does (whose preprocessing records nothing)."""
    _, path = piped_patchcore
    assert read_manifest(path).preprocessing["map_score_fraction"] == MAP_SCORE_FRACTION
    frames = [read_image(s.path) for s in MVTecCategory(PIPED / "PA_BDP01_TL").test()[::8]]
    by_map = load_model(path).predict(frames)
    np.testing.assert_allclose(by_map.scores, [map_score(m, MAP_SCORE_FRACTION) for m in by_map.maps], rtol=1e-6)
    copies = {}
    for name, named in (("before", False), ("null", True)):
        shutil.copytree(path, tmp_path / name)
        copies[name] = load_model(_scored_by_the_method(tmp_path / name, named=named))
    assert copies["before"].settings.preprocess.map_score_fraction is None
    before, null = (copies[name].predict(frames) for name in ("before", "null"))
    np.testing.assert_array_equal(before.scores, null.scores)
    np.testing.assert_allclose(np.stack(before.maps), np.stack(by_map.maps), rtol=1e-6)  # the same maps
    assert not np.allclose(before.scores, by_map.scores, rtol=1e-3)  # scored otherwise: by the method


