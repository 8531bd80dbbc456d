"""`stream-ad tune` on a real PIPED category and real PatchCore fits: the settings' own configuration is tried first
and kept unless a candidate beats it beyond noise, the chosen pipeline.yaml loads, the report lists every candidate
with its interval against the default, a spent budget lists the skipped ones, labelled defects are used where the
user has them (with masks: pixel AUROC too), and bad inputs are one-line errors naming them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stream_ad.commands.tune import tune
from stream_ad.settings import MAP_SCORE_FRACTION, load_settings
from stream_ad.tuning import Candidate, default_candidate, taps_note
from stream_ad.tuning.candidates import TAP_SETS
from stream_ad.tuning.validation import SATURATED
from tests.commands.conftest import CATEGORY, cli

# Small inputs keep each fit to a few seconds on 2 cores.
SMALL = [Candidate("resize", 64, 0.1), Candidate("resize", 96, 0.1)]
FAST = "runtime: {device: cpu, threads: 2, batch_size: 8, accelerate: eager}\n"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(f"data: {{root: {CATEGORY}}}\npreprocess: {{pad_value: 114}}\n{FAST}")
    return path


def test_tune_with_synthetic_defects_writes_a_loadable_pipeline_and_every_candidates_figures(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], shared: Path
) -> None:
    out = tmp_path / "tuned"
    assert tune(load_settings(config), out, config=config, good=CATEGORY / "train" / "good", candidates=SMALL) == 0
    report = json.loads((out / "tune_report.json").read_text())
    assert "synthetic defects (cut_paste, perlin, scratch)" in report["defects"]
    default = default_candidate(load_settings(config))
    tried = [default, *SMALL]  # the settings' own configuration first
    assert report["default"] == default.name == ("patchcore resize 224 ratio 0.01 taps features.6+features.13 "
                                                 "score map top 1%")
    assert report["confidence"] == 0.95 and report["taps"] == "only the settings' own: the candidates were given"
    rows = report["candidates"]
    assert [r["name"] for r in rows] == [c.name for c in tried]
    assert sum(r["chosen"] for r in rows) == 1 and all(r["skipped"] is None for r in rows)
    for row in rows:
        figures = row["figures"]
        assert 0.5 < figures["image_auroc"] <= 1.0 and 0.5 < figures["pixel_auroc"] <= 1.0  # better than chance
        assert figures["fit_s"] > 0 and row["why"] and len(figures["scores"]) == 32  # 8 good held out, 24 defects
    # Each candidate's interval against the default, of image AUROC, or of pixel AUROC (binned as the ranking bins
    # it) where image AUROC cannot tell them apart: the default separates the synthetic defects almost perfectly, or
    # no candidate beats it beyond noise; one is chosen over the default only if its lower end is above 0.
    image_decides = any(r["image_versus_default"]["low"] > 0 for r in rows[1:])
    on_pixels = rows[0]["figures"]["image_auroc"] >= SATURATED or not image_decides
    assert report["ranked_on"] == ("pixel AUROC" if on_pixels else "image AUROC")
    assert rows[0]["versus_default"] is None and rows[0]["image_versus_default"] is None

    def ranked(row: dict) -> float:
        figures = row["figures"]
        if not on_pixels:
            return figures["image_auroc"]
        binned = figures["ranking_pixel_auroc"]
        assert abs(binned["value"] - figures["pixel_auroc"]) <= binned["max_error"] + 1e-4  # eval's bins are finer
        return binned["value"]

    for row in rows[1:]:
        interval = row["versus_default"]
        image = row["image_versus_default"]
        assert image["difference"] == pytest.approx(row["figures"]["image_auroc"] - rows[0]["figures"]["image_auroc"])
        assert on_pixels or image == {k: v for k, v in interval.items() if k != "of"}
        assert interval["low"] <= interval["difference"] <= interval["high"]
        assert interval["of"] == report["ranked_on"]
        assert interval["difference"] == pytest.approx(ranked(row) - ranked(rows[0]))
        assert (interval["low"] > 0) == ("beats the default" in row["why"])
    assert rows[0]["chosen"] == all(r["versus_default"]["low"] <= 0 or "image AUROC is worse" in r["why"]
                                    for r in rows[1:])
    chosen = next(c for c, r in zip(tried, rows, strict=True) if r["chosen"])
    # The user's file with the chosen keys: what they set stays, and it loads as `fit` and `run` load it.
    written = yaml.safe_load((out / "pipeline.yaml").read_text())
    assert written["data"] == {"root": str(CATEGORY)} and written["runtime"]["threads"] == 2
    settings = load_settings(out / "pipeline.yaml")
    assert (settings.preprocess.mode, settings.preprocess.image_size, settings.preprocess.pad_value) == (
        "resize", chosen.size, 114)
    assert settings.scorer.params == {"coreset_ratio": chosen.coreset_ratio}
    stdout = capsys.readouterr().out
    assert all(c.name in stdout for c in tried) and f"chosen: {chosen.name} (" in stdout
    assert "vs default [interval]" in stdout and "(the default)" in stdout
    # On synthetic defects the default separates almost perfectly, a note asks for real ones.
    too_easy = rows[0]["figures"]["image_auroc"] >= SATURATED
    assert ("note" in report) == too_easy == ("note: the synthetic defects are too easy" in stdout)
    ms = report["scoring_ms_per_frame"]
    assert ms["chosen"] > 0 and ms["default"] > 0
    assert f"scoring a frame here: {ms['chosen']:g} ms, the default {ms['default']:g} ms" in stdout
    markdown = (out / "tune_report.md").read_text()
    assert "| vs default [interval] |" in markdown and f"- default: {default.name}" in markdown


def test_tune_uses_the_labelled_defects_of_the_data_root(config: Path, tmp_path: Path, shared: Path) -> None:
    out = tmp_path / "tuned"
    tune(load_settings(config), out, config=config, candidates=SMALL[:1])
    report = json.loads((out / "tune_report.json").read_text())
    assert report["defects"] == f"48 labelled defects ({CATEGORY}/test)"
    assert all(r["figures"]["pixel_auroc"] is not None for r in report["candidates"])  # ground_truth/ masks used


def test_synthetic_kinds_choose_the_defects_made(config: Path, tmp_path: Path, shared: Path) -> None:
    out = tmp_path / "tuned"
    tune(load_settings(config), out, config=config, good=CATEGORY / "train" / "good", candidates=SMALL[:1],
         synthetic_kinds=("perlin", "scratch"))
    report = json.loads((out / "tune_report.json").read_text())
    assert report["defects"] == "24 synthetic defects (perlin, scratch)"


def test_a_spent_budget_runs_the_first_candidate_and_lists_the_skipped_ones(
    config: Path, tmp_path: Path, shared: Path
) -> None:
    """Through the CLI, with --defects and no --masks: image AUROC only."""
    out = tmp_path / "tuned"
    run = cli("-c", config, "tune", "--good", CATEGORY / "train" / "good", "--defects", CATEGORY / "test" / "defect",
              "--budget-min", "0", "--out", out)
    assert run.code == 0, run.stderr
    report = json.loads((out / "tune_report.json").read_text())
    assert report["defects"] == f"48 labelled defects ({CATEGORY / 'test' / 'defect'})"
    rows = report["candidates"]
    taps = len(TAP_SETS["mobilenet_v2"]) - 1  # the default's configuration with the other taps, tried second
    # then with the method's own frame score (the default's is the map's); 128 x 128 frames: resize 224 and 320,
    # PatchCore at two ratios and PaDiM; last the VAE's reconstruction, alone and with PatchCore (methods whose time
    # tune has not seen yet run only while budget is left)
    assert len(rows) == 1 + taps + 1 + 7
    assert rows[-2]["name"].startswith("vae resize 128 reconstruction ")
    assert rows[-1]["name"].startswith("patchcore_vae resize 224 ratio 0.01 reconstruction ")
    assert rows[0]["settings"]["preprocess"]["map_score_fraction"] == MAP_SCORE_FRACTION
    assert rows[1 + taps]["settings"]["preprocess"]["map_score_fraction"] is None
    assert rows[0]["chosen"] and rows[0]["figures"]["pixel_auroc"] is None
    assert all(r["figures"] is None and r["skipped"].startswith("budget: ") for r in rows[1:])
    assert all(r["settings"]["backbone"]["layers"] != rows[0]["settings"]["backbone"]["layers"]
               for r in rows[1:1 + taps])
    assert f"{taps + 8} of {taps + 9} candidates skipped to stay within the budget of 0 min" in run.stdout


def test_on_synthetic_defects_patchcore_with_the_vae_is_not_tried(config: Path, tmp_path: Path, shared: Path) -> None:
    out = tmp_path / "tuned"
    tune(load_settings(config), out, config=config, good=CATEGORY / "train" / "good", budget_min=0)
    report = json.loads((out / "tune_report.json").read_text())
    assert "synthetic defects" in report["defects"]
    names = [r["name"] for r in report["candidates"]]
    assert names[-1].startswith("vae resize 128 reconstruction ")  # the VAE alone is tried
    assert not [n for n in names if n.startswith("patchcore_vae")]


def test_the_settings_own_taps_are_the_default_and_written_to_pipeline_yaml(tmp_path: Path, shared: Path) -> None:
    """Settings with other taps than the built-in ones: theirs are the default, named in the report and written to
    pipeline.yaml beside the backbone keys the user set; the built-in taps are the alternative."""
    mine = ["features.6", "features.10", "features.13"]
    config = tmp_path / "line.yaml"
    config.write_text(f"data: {{root: {CATEGORY}}}\nbackbone: {{layers: {mine}, mean: [0.5, 0.5, 0.5], "
                      f"std: [0.5, 0.5, 0.5]}}\n{FAST}")
    out = tmp_path / "tuned"
    tune(load_settings(config), out, config=config, budget_min=0)  # the default alone runs, so it is chosen
    report = json.loads((out / "tune_report.json").read_text())
    named = f"patchcore resize 224 ratio 0.01 taps {'+'.join(mine)} score map top 1%"
    assert report["default"] == report["chosen"] == named
    assert report["taps"] == taps_note(default_candidate(load_settings(config)), "mobilenet_v2")
    assert report["candidates"][1]["name"] == ("patchcore resize 224 ratio 0.01 taps features.6+features.13 "
                                               "score map top 1%")
    written = yaml.safe_load((out / "pipeline.yaml").read_text())
    assert written["backbone"] == {"layers": mine, "mean": [0.5] * 3, "std": [0.5] * 3}
    assert load_settings(out / "pipeline.yaml").backbone.layers == mine
    assert f"taps {'+'.join(mine)}" in (out / "tune_report.md").read_text()


def test_an_empty_good_folder_is_an_error_naming_it(config: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    run = cli("-c", config, "tune", "--good", empty, "--out", tmp_path / "tuned")
    assert run.error == f"stream-ad: --good: folder {empty} is empty"
    assert not (tmp_path / "tuned").exists()


@pytest.mark.parametrize(("flags", "expected"), [
    (["--masks", "m"], "stream-ad: tune --masks needs --defects"),
    (["--defects", "d", "--synthetic"], "stream-ad: tune takes --defects or --synthetic, not both"),
    (["--confidence", "1"], "stream-ad: tune --confidence must be in [0.5, 1), not 1.0"),
    (["--max-frame-ms", "0"], "stream-ad: tune --max-frame-ms must be above 0, not 0.0"),
    (["--defects", "d", "--synthetic-kinds", "scratch"],
     "stream-ad: tune --synthetic-kinds is for synthetic defects: it takes no --defects"),
    (["--synthetic-kinds", "scratch,dent"], "stream-ad: tune --synthetic-kinds: synthetic defect kinds: 'dent'; the "
     "kinds are cut_paste, scratch, perlin"),
    (["--synthetic-kinds", ","], "stream-ad: tune --synthetic-kinds: synthetic defect kinds: none given"),
    (["--synthetic-kinds", "scratch"], f"stream-ad: tune --synthetic-kinds is for synthetic defects, and without "
     f"--good it ranks on {CATEGORY}/test's labelled ones: add --synthetic"),
])
def test_flags_that_do_not_go_together_are_named(flags: list[str], expected: str, config: Path,
                                                 tmp_path: Path) -> None:
    run = cli("-c", config, "tune", *flags, "--out", tmp_path / "tuned")
    assert run.error.startswith(expected)


def test_no_held_out_good_images_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text(f"data: {{root: {CATEGORY}}}\ncalibration: {{holdout_fraction: 0.0}}\n")
    run = cli("-c", config, "tune", "--out", tmp_path / "tuned")
    assert "calibration.holdout_fraction 0.0 of 32 holds out none" in run.error


def test_an_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "line.yaml"
    config.write_text("preprocess: {mdoe: tile}\n")
    run = cli("-c", config, "tune", "--out", tmp_path / "tuned")
    assert run.code == 2 and str(config) in run.error and "preprocess.mdoe: unknown key" in run.stderr
