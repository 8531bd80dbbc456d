"""`stream-ad export --int8`: the scoring graph quantised with NNCF on the model's held-out good images, recorded in
the manifest, its threshold set again on INT8 scores, and good and defective images ranked as the float32 graph
ranks them (image AUROC within AUROC_TOLERANCE, the issue's target)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from stream_ad.artefact import read_manifest
from stream_ad.data import MVTecCategory, read_image
from stream_ad.evaluation.accuracy import image_auroc
from stream_ad.line.artefact import GRAPH_XML, read_runtime_manifest
from stream_ad.line.model import LineModel
from stream_ad.runtime.cpu import this_cpu_has_int8_dot_product
from stream_ad.runtime.quantise import ACTIVATION_RANGES, KEPT_FP32, WEIGHTS, Int8Scope
from tests.commands.conftest import CATEGORY, FolderFit, cli

AUROC_TOLERANCE = 0.005
MEDIAN_SCORE_CHANGE = 0.02  # INT8 image scores from float32's, relative (measured 0.3-0.6 % on PIPED)


def export_int8(calibrated_fit: Path, folder_fit: FolderFit, out: Path, *scope: str) -> Path:
    """`stream-ad export --int8 [SCOPE]` of the calibrated fit into `out`; its line says the scope and the threshold
    set again."""
    run = cli("-c", folder_fit.config, "export", calibrated_fit, "--out", out, "--int8", *scope)
    assert run.code == 0, run.stderr
    named = scope[0] if scope else "all"
    assert f"runtime artefact (int8 OpenVINO graph, INT8 scope {named}) of patchcore" in run.stdout
    assert f"quantised (scope {named}) on 12 good images" in run.stdout
    assert "threshold set again on INT8 scores" in run.stdout
    return out


@pytest.fixture(scope="module")
def int8(calibrated_fit: Path, folder_fit: FolderFit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_int8(calibrated_fit, folder_fit, tmp_path_factory.mktemp("export_int8") / "line1")


@pytest.fixture(scope="module")
def search_only(calibrated_fit: Path, folder_fit: FolderFit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_int8(calibrated_fit, folder_fit, tmp_path_factory.mktemp("export_int8_search") / "line1", "search")


@pytest.fixture(scope="module")
def fp32(calibrated_fit: Path, folder_fit: FolderFit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export_fp32") / "line1"
    assert cli("-c", folder_fit.config, "export", calibrated_fit, "--out", out).code == 0
    return out


def test_the_manifest_records_precision_and_the_calibration_images(int8: Path, calibrated_fit: Path) -> None:
    manifest = read_runtime_manifest(int8)
    assert manifest.graph["precision"] == "int8"
    quantisation = manifest.graph["quantisation"]
    held_out = read_manifest(calibrated_fit).data_split["held_out"]
    assert quantisation["calibration"]["count"] == len(held_out) == 12
    assert {i["sha256"] for i in quantisation["calibration"]["images"]} == {i["sha256"] for i in held_out}
    assert quantisation["tool"].startswith("nncf ") and quantisation["kept_fp32_ops"] > 0
    assert quantisation["activation_ranges"] == ACTIVATION_RANGES and quantisation["weights"] == WEIGHTS
    assert quantisation["score_change_vs_fp32"]["median_relative"] < MEDIAN_SCORE_CHANGE
    graph = ov.Core().read_model(int8 / GRAPH_XML)  # really quantised: int8 FakeQuantize nodes in the IR
    assert sum(op.get_type_name() == "FakeQuantize" for op in graph.get_ops()) == quantisation["fake_quantize_ops"] > 0


def sources(op: ov.Node) -> list[ov.Node]:
    return [port.get_source_output().get_node() for port in op.inputs()]


def test_the_search_matmul_is_quantised_and_the_map_s_are_not(int8: Path) -> None:
    """PatchCore's search matmul only picks candidates the graph rechecks in float32 (runtime.quantise): its patch
    features quantised, the bank stored as int8 weights; the map's matmuls (upsampling, blur) stay float32."""
    graph = ov.Core().read_model(int8 / GRAPH_XML)
    matmuls = [op for op in graph.get_ops() if op.get_type_name() == "MatMul"]
    quantised = [op for op in matmuls if any(s.get_type_name() == "FakeQuantize" for s in sources(op))]
    assert len(quantised) == 1 and len(matmuls) >= 3
    weights = sources(quantised[0])[1]  # NNCF's compressed weights: int8 constant -> Convert -> Multiply by scales
    stored = sources(sources(weights)[0])[0]
    memory = next(op for op in graph.get_ops() if op.get_friendly_name() == "self.memory")
    assert stored.get_element_type() == ov.Type.i8 and stored.get_output_shape(0) == memory.get_output_shape(0)


def test_int8_search_quantises_the_search_alone_and_keeps_float32_s_figures(search_only: Path, fp32: Path) -> None:
    """--int8 search: the networks stay float32, so maps and frame scores are float32's but where the quantised
    search's candidates miss a patch's nearest bank item, and there only higher (a farther item's distance)."""
    quantisation = read_runtime_manifest(search_only).graph["quantisation"]
    assert quantisation["scope"] == "search" and quantisation["kept_fp32"] == KEPT_FP32[Int8Scope.SEARCH]
    graph = ov.Core().read_model(search_only / GRAPH_XML)
    fake_quantize = [op for op in graph.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(fake_quantize) == 1  # the patch features into the search; the bank is stored as int8 weights
    frames = [read_image(s.path) for s in MVTecCategory(CATEGORY).test()]
    want, got = LineModel(fp32, threads=2).predict(frames), LineModel(search_only, threads=2).predict(frames)
    # Frame scores are the maps' top 1 % (the default): float32's but where a map rose, and there only higher.
    rise = (got.scores - want.scores) / want.scores
    assert rise.min() >= -1e-6 and rise.max() < 0.01, (rise.min(), rise.max())  # measured 0, 2.0e-4
    pairs = list(zip(got.maps, want.maps, strict=True))
    same = np.mean([np.mean(g == w) for g, w in pairs])  # measured 98.6 % of the pixels
    moved = [(g - w) / np.abs(w).max() for g, w in pairs]
    lowest, highest = min(float(m.min()) for m in moved), max(float(m.max()) for m in moved)
    assert same > 0.9 and lowest >= -1e-6 and 0 < highest < 0.01, (same, lowest, highest)  # measured 0, 1.7e-3


def test_the_threshold_is_set_again_on_int8_scores(int8: Path, calibrated_fit: Path) -> None:
    threshold, model = read_runtime_manifest(int8).threshold, read_manifest(calibrated_fit).threshold
    assert isinstance(threshold, dict) and isinstance(model, dict)
    assert threshold["scored_by"] == "this runtime artefact's INT8 graph"
    assert threshold["images"] == model["images"] and threshold["target_fpr"] == model["target_fpr"]
    paths = [Path(p) for p in threshold["images"]["paths"]]  # a folder fit's: absolute
    scores = LineModel(int8, threads=2).predict([read_image(p) for p in paths]).scores  # the INT8 graph's own
    np.testing.assert_allclose(sorted(scores), threshold["good_scores"]["sample"], rtol=1e-5)
    assert threshold["value"] == pytest.approx(model["value"], rel=0.05) and threshold["value"] != model["value"]


def test_int8_ranks_good_and_defective_images_as_fp32_does(int8: Path, fp32: Path) -> None:
    samples = MVTecCategory(CATEGORY).test()
    labels = [s.label for s in samples]
    assert 0 < sum(labels) < len(labels)
    frames = [read_image(s.path) for s in samples]
    want = image_auroc(labels, LineModel(fp32, threads=2).predict(frames).scores)
    got = image_auroc(labels, LineModel(int8, threads=2).predict(frames).scores)
    assert abs(got - want) <= AUROC_TOLERANCE, (got, want)


def test_an_int8_graph_on_a_cpu_without_vnni_is_said_to_be_slower(int8: Path, fp32: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="stream_ad.line.model"):
        LineModel(int8, threads=1), LineModel(fp32, threads=1)
    said = [r.getMessage() for r in caplog.records if "without VNNI" in r.getMessage()]
    if this_cpu_has_int8_dot_product() is False:  # this CPU's /proc/cpuinfo names no VNNI flag
        assert said == [f"{int8} is an INT8 graph on a CPU without VNNI, where INT8 ran slower than float32 (README, "
                        '"A line PC without torch"): export without --int8 for this line PC']
    else:
        assert said == []


def test_calibration_images_are_only_for_int8(calibrated_fit: Path, folder_fit: FolderFit, tmp_path: Path) -> None:
    run = cli("-c", folder_fit.config, "export", calibrated_fit, "--out", tmp_path / "x",
              "--calibration-images", folder_fit.good)
    assert "--calibration-images is for --int8" in run.error


def test_int8_quantises_on_the_images_given(folder_fit: FolderFit, tmp_path: Path) -> None:
    run = cli("-c", folder_fit.config, "export", folder_fit.model, "--out", tmp_path / "x", "--int8",
              "--calibration-images", folder_fit.good)
    assert run.code == 0, run.stderr
    calibration = read_runtime_manifest(tmp_path / "x").graph["quantisation"]["calibration"]
    assert calibration["source"] == str(folder_fit.good.resolve()) and calibration["count"] == 24
