"""benchmarks.int8_accuracy: one PIPED category fitted once, exported fp32 and INT8, both scored on its test images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.int8_accuracy import Int8AccuracyOptions, run_bench, set_roots
from stream_ad.artefact import MANIFEST
from stream_ad.settings import Settings, load_settings

CATEGORY = "PA_BDP01_TL"


@pytest.fixture
def settings(shared: Path, tmp_path: Path) -> Settings:
    return load_settings(shared_dir=str(shared), output_dir=str(tmp_path), runtime={"threads": 1})


def test_a_set_is_fitted_once_and_measured_at_both_precisions(settings: Settings, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    options = Int8AccuracyOptions(sets=CATEGORY, models=tmp_path / "models", json=tmp_path / "figures.json")
    assert run_bench(settings, options) == 0
    manifest = tmp_path / "models" / CATEGORY / MANIFEST
    fitted_at = manifest.stat().st_mtime_ns
    row = json.loads(options.json.read_text())["sets"][CATEGORY]  # type: ignore[union-attr]
    assert row["test_images"] == 64 and row["difference"] == row["int8_auroc"] - row["fp32_auroc"]
    assert 0 < row["median_relative_score_change"] < 0.02  # INT8 scores, not fp32's again
    # Maps against the masks: figures of real maps (PIPED's defects are found), the INT8 ones not fp32's again.
    assert 0.8 < row["fp32_pixel_auroc"] <= 1 and 0.8 < row["int8_pixel_auroc"] <= 1 and 0 < row["fp32_pro"] <= 1
    assert row["pixel_difference"] == row["int8_pixel_auroc"] - row["fp32_pixel_auroc"] != 0
    assert 0 < row["map_pixels_moved"] <= 1 and 0 < row["map_largest_relative_change"] < 1
    assert (f"worst difference: {row['difference']:+.4f} ({CATEGORY}); largest |difference|: "
            f"{abs(row['difference']):.4f} ({CATEGORY})") in capsys.readouterr().out
    assert run_bench(settings, options) == 0
    assert manifest.stat().st_mtime_ns == fitted_at  # the cached model artefact reused, not fitted again


def test_sets_are_magnetic_tile_and_the_piped_categories(settings: Settings) -> None:
    assert list(set_roots(settings, None))[:2] == ["magnetic_tile", "PA_BDP01_TL"]
    assert len(set_roots(settings, None)) == 12
    with pytest.raises(SystemExit, match="unknown set"):
        set_roots(settings, "PA_NOPE")
