"""`python -m benchmarks cameras`: its options and how it lays out the pipelines; the benchmark itself takes many
minutes and is run by hand (see docs/pipeline.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.__main__ import build_parser, options_of
from benchmarks.cameras import CamerasBenchOptions, pipeline_cameras, pipeline_settings, pooled_batch_mean
from benchmarks.pipeline import highest_sustained
from stream_ad.settings import Settings, load_settings


def test_parser_takes_camera_counts_and_refuses_zero() -> None:
    args = build_parser().parse_args(["cameras", "--cameras", "1,4", "--fps", "6", "--search-runs", "2"])
    options = options_of(args, CamerasBenchOptions)
    assert (options.cameras, options.fps, options.search_runs) == ((1, 4), 6.0, 2)
    assert options_of(build_parser().parse_args(["cameras"]), CamerasBenchOptions).cameras == (1, 2, 4, 8)
    assert options.max_p99_ms is None
    bounded = build_parser().parse_args(["cameras", "--max-p99-ms", "100", "--search-precision", "0.03"])
    assert (options_of(bounded, CamerasBenchOptions).max_p99_ms, bounded.search_precision) == (100.0, 0.03)
    for bad in ("0", "2,0", "two"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["cameras", "--cameras", bad])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cameras", "--search-precision", "1.5"])


@pytest.mark.parametrize("precision", [0.1, 0.03])
def test_the_rate_search_closes_its_bracket_to_the_precision_asked(precision: float) -> None:
    limit = 37.3  # the highest rate that holds
    tried: list[float] = []

    def sustains(rate: float) -> bool:
        tried.append(rate)
        return rate <= limit

    found = highest_sustained(sustains, 19.8, runs=20, precision=precision)
    assert limit * (1 - precision) <= found <= limit
    dropped = min(rate for rate in tried if rate > limit)
    assert dropped - found < precision * dropped


@pytest.mark.parametrize("mode", ["one", "separate"])
def test_each_pipeline_reads_back_as_its_child_process_does(mode: str, tmp_path: Path) -> None:
    settings = load_settings()
    layout = pipeline_cameras(mode, 3)
    assert sorted(cam for cameras in layout for cam in cameras) == ["cam0", "cam1", "cam2"]
    assert len(layout) == (1 if mode == "one" else 3)
    for cameras in layout:
        made = pipeline_settings(settings, tmp_path / "model", cameras, 7.5, 10.0, tmp_path / "v.jsonl", mode)
        child = Settings.model_validate_json(made.model_dump_json())  # the "one camera or many" check runs here
        sections = [cam for _, cam in child.pipeline.camera_sections()]
        assert [cam.camera for cam in sections] == cameras
        assert bool(child.pipeline.cameras) == (mode == "one")
        assert all(cam.fps == 7.5 and cam.loop and cam.preload and cam.kind == "folder" for cam in sections)
        assert child.pipeline.duration_s == 10.0 and not child.pipeline.metrics.enabled


def test_batch_mean_of_separate_pipelines_is_frames_over_batches() -> None:
    # 100 frames in batches of 2 (50 batches) and 30 frames one by one (30 batches): 130 frames / 80 batches.
    pipelines = [{"scored": 100, "infer_batch_mean": 2.0}, {"scored": 30, "infer_batch_mean": 1.0}]
    assert pooled_batch_mean(pipelines) == pytest.approx(130 / 80)
    assert pooled_batch_mean([{"scored": 0, "infer_batch_mean": None}]) is None
