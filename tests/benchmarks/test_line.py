"""benchmarks.line's summary of the line rows: each whole path's time against the bare backbone's, from the rows'
images/s, and the float32 target judged."""

from __future__ import annotations

from benchmarks.line import BACKBONE_ROW, WHOLE_PATH, time_against_backbone


def rows(backbone: float, fp32: float, int8: float) -> dict[str, dict[str, float]]:
    return {BACKBONE_ROW: {"images_per_s_b1": backbone}, WHOLE_PATH + "fp32": {"images_per_s_b1": fp32},
            WHOLE_PATH + "INT8": {"images_per_s_b1": int8}}


def test_each_path_s_time_is_given_against_the_backbone_s() -> None:
    line = time_against_backbone(rows(768.4, 247.9, 462.6))
    assert "fp32 3.10x, INT8 1.66x" in line and "NOT reached" in line


def test_the_float32_target_is_judged_on_float32_alone() -> None:
    assert "<= 2x, reached" in time_against_backbone(rows(600.0, 300.0, 100.0))  # INT8 at 6x does not count
    assert "NOT reached" in time_against_backbone(rows(600.0, 299.0, 600.0))
