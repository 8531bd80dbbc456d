from pathlib import Path

import pytest

from stream_ad.scorers import build_scorer, scorer_params
from stream_ad.settings import MAP_SCORE_FRACTION, ConfigError, load_settings, settings_from_record


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_demo(shared: Path) -> None:
    s = load_settings()
    assert s.scorer.method == "patchcore"
    assert s.data.root == shared / "datasets" / "magnetic_tile"
    assert s.backbone.weights_path == shared / "weights" / "mobilenet_v2_imagenet_tflite.pth"
    assert s.backbone.mean == (0.5, 0.5, 0.5)


def test_yaml_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "runtime:\n  batch_size: 4\nscorer:\n  params:\n    coreset_ratio: 0.05\n")
    s = load_settings(path)
    assert s.runtime.batch_size == 4
    assert scorer_params(s.scorer).coreset_ratio == 0.05
    monkeypatch.setenv("STREAM_AD_RUNTIME__BATCH_SIZE", "8")
    monkeypatch.setenv("STREAM_AD_SCORER__PARAMS__CORESET_RATIO", "0.2")
    s = load_settings(path)
    assert s.runtime.batch_size == 8
    assert scorer_params(s.scorer).coreset_ratio == 0.2


def test_recorded_settings_are_read_without_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a model artefact recorded stays as recorded, whatever STREAM_AD_* variables this process has; only what
    a process loads for itself has them applied, and marks them as given."""
    monkeypatch.setenv("STREAM_AD_PREPROCESS__IMAGE_SIZE", "256")
    recorded = settings_from_record({"preprocess": {"image_size": 64}, "scorer": {"params": {"coreset_ratio": 0.2}}})
    assert recorded.preprocess.image_size == 64 and recorded.scorer.params == {"coreset_ratio": 0.2}
    loaded = load_settings()
    assert loaded.preprocess.image_size == 256 and loaded.preprocess.model_fields_set == {"image_size"}
    assert loaded.backbone.model_fields_set == set()


def test_the_frame_score_is_the_map_s_unless_null_in_yaml_or_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default frame score is the map's top 1 %; `null`, in YAML or as a variable, is the method's own. A record
    from before the key existed holds the method's own (what it computed), one that names a value keeps it."""
    assert load_settings().preprocess.map_score_fraction == MAP_SCORE_FRACTION == 0.01
    in_yaml = load_settings(write(tmp_path, "preprocess: {map_score_fraction: null}\n"))
    assert in_yaml.preprocess.map_score_fraction is None
    monkeypatch.setenv("STREAM_AD_PREPROCESS__MAP_SCORE_FRACTION", "null")
    assert load_settings().preprocess.map_score_fraction is None
    monkeypatch.setenv("STREAM_AD_RUNTIME__BATCH_SIZE", "null")  # where None is no value: an error naming the key
    with pytest.raises(ConfigError, match="runtime.batch_size: Input should be a valid integer"):
        load_settings()
    assert settings_from_record({"preprocess": {"image_size": 64}}).preprocess.map_score_fraction is None
    named = settings_from_record({"preprocess": {"map_score_fraction": 0.05}})
    assert named.preprocess.map_score_fraction == 0.05


def test_unknown_yaml_key_names_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "preprocess:\n  image_sise: 256\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "preprocess.image_sise: unknown key" in str(err.value)
    assert str(path) in str(err.value)


def test_invalid_value_names_key(tmp_path: Path) -> None:
    path = write(tmp_path, "preprocess:\n  mode: stretchy\n")
    with pytest.raises(ConfigError, match=r"preprocess\.mode"):
        load_settings(path)


def test_method_params_are_validated_by_the_method(tmp_path: Path) -> None:
    path = write(tmp_path, "scorer:\n  params:\n    coreset_ration: 0.1\n")
    with pytest.raises(ConfigError, match=r"scorer\.params\.coreset_ration: unknown key"):
        scorer_params(load_settings(path).scorer)
    path = write(tmp_path, "scorer:\n  params:\n    coreset_ratio: 2.0\n")
    with pytest.raises(ConfigError, match=r"scorer\.params\.coreset_ratio"):
        scorer_params(load_settings(path).scorer)


def test_unknown_method_lists_the_registered_ones(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "scorer:\n  method: patchkore\n"))
    with pytest.raises(ConfigError, match=r"scorer\.method.*unknown scorer method 'patchkore'.*patchcore"):
        build_scorer(settings.scorer, None)  # type: ignore[arg-type] - fails on the name, before the context


def test_settings_load_without_torch_or_any_other_part_of_stream_ad() -> None:
    import subprocess
    import sys

    code = ("import sys; from stream_ad.settings import load_settings; load_settings(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' "
            "or (m.startswith('stream_ad.') and not m.startswith('stream_ad.settings'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_env_key_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_AD_RUNTIME__BACH_SIZE", "8")
    with pytest.raises(ConfigError, match="STREAM_AD_RUNTIME__BACH_SIZE"):
        load_settings()


def test_invalid_env_value_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_AD_RUNTIME__BATCH_SIZE", "many")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "runtime.batch_size" in str(err.value) and "STREAM_AD_RUNTIME__BATCH_SIZE" in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "a: [1,\n"))


def test_weights_file_requires_its_normalisation(tmp_path: Path) -> None:
    path = write(tmp_path, "backbone:\n  mean: null\n  std: null\n")
    with pytest.raises(ConfigError, match="backbone.mean and backbone.std must be set"):
        load_settings(path)


def test_shared_dir_expands_in_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_AD_SHARED_DIR", str(tmp_path))
    s = load_settings(write(tmp_path, "data:\n  root: ${shared_dir}/datasets/x\n"))
    assert s.data.root == tmp_path / "datasets" / "x"


def test_demo_pipeline_file_spells_out_the_defaults() -> None:
    from tests.conftest import REPO

    spelled, default = load_settings(REPO / "pipelines" / "demo.yaml"), load_settings()
    # Method params stay a mapping in the settings: compare them as the method reads them, defaults filled in.
    assert scorer_params(spelled.scorer) == scorer_params(default.scorer)
    assert spelled.scorer.params and not default.scorer.params
    assert spelled.model_dump(exclude={"scorer": {"params"}}) == default.model_dump(exclude={"scorer": {"params"}})
