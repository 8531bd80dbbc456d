"""Where each effective setting came from: default, the file, or a STREAM_AD_* variable (which wins)."""

from __future__ import annotations

from pathlib import Path

from stream_ad.settings import load_settings
from stream_ad.settings.origins import DEFAULT, value_origins


def test_each_leaf_names_its_origin(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("runtime:\n  batch_size: 4\n  device: cpu\nscorer:\n  params: {}\n"
                    "pipeline:\n  sink:\n    outputs: [{kind: stdout}]\n")
    env = {"STREAM_AD_RUNTIME__DEVICE": "cuda", "STREAM_AD_SCORER__PARAMS__CORESET_RATIO": "0.2"}
    tree = load_settings(path).model_dump(mode="json")
    tree["scorer"]["params"] = {"coreset_ratio": 0.2, "num_neighbors": 9}  # as the method fills them in
    origins = value_origins(tree, path, env)
    assert origins[("runtime", "batch_size")] == str(path)
    assert origins[("runtime", "device")] == "STREAM_AD_RUNTIME__DEVICE"  # the environment wins over the file
    assert origins[("scorer", "params", "coreset_ratio")] == "STREAM_AD_SCORER__PARAMS__CORESET_RATIO"
    assert origins[("scorer", "params", "num_neighbors")] == DEFAULT  # `params: {}` in the file sets nothing
    assert origins[("pipeline", "sink", "outputs")] == str(path)
    assert origins[("runtime", "seed")] == DEFAULT and origins[("output_dir",)] == DEFAULT


def test_a_whole_section_in_one_variable_sets_every_leaf_below_it() -> None:
    tree = load_settings().model_dump(mode="json")
    origins = value_origins(tree, None, {"STREAM_AD_PIPELINE__METRICS": '{"port": 0}'})
    assert origins[("pipeline", "metrics", "port")] == "STREAM_AD_PIPELINE__METRICS"
    assert origins[("pipeline", "metrics", "host")] == "STREAM_AD_PIPELINE__METRICS"
    assert origins[("pipeline", "source", "fps")] == DEFAULT
