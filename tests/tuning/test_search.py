"""tune's search within its budget, on real fits of a PIPED category: a candidate runs only if its expected time
(seconds per input pixel of its kind so far, or the bound from the same candidate at a smaller coreset ratio) fits in
what is left; the first of a kind whose time tune has not seen (a method that trains a network, or tile mode) runs
while any budget is left, the first tile candidate right after the default."""

from __future__ import annotations

import logging

import pytest

from stream_ad.calibration.holdout import split_good
from stream_ad.data import MVTecCategory
from stream_ad.settings import load_settings
from stream_ad.tuning import Candidate, search, synthetic_validation
from stream_ad.tuning.search import ratio_bound
from tests.commands.conftest import CATEGORY

FAST = {"device": "cpu", "threads": 2, "batch_size": 8, "accelerate": "eager"}


def test_a_method_of_another_kind_runs_where_one_of_a_known_kind_would_not_fit(shared: object) -> None:
    settings = load_settings(data={"root": str(CATEGORY)}, runtime=FAST)
    split = split_good(MVTecCategory(CATEGORY).good_folder().paths, settings.calibration)
    validation = synthetic_validation(split.held_out, 0, settings.pipeline.source.max_image_pixels)
    small = Candidate("resize", 64, 0.1)
    # 1024 times small's input pixels: at small's seconds per pixel, far beyond the budget left.
    huge = Candidate("resize", 2048, 0.1)
    vae = Candidate("resize", 64, None, "vae", epochs=1)  # trains a network: its time is not the backbone's
    budget_s = 120.0
    trials = search(settings, [small, huge, vae], split.fit, validation, budget_s,
                    settings.pipeline.source.max_image_pixels)
    assert [t.candidate for t in trials] == [small, huge, vae]
    assert trials[0].figures is not None and trials[2].figures is not None
    assert trials[1].figures is None
    expected = float(trials[1].skipped.split("would take about ")[1].split(" s")[0])
    assert expected > budget_s  # estimated from small's own seconds per pixel, times 1024
    assert trials[2].figures.fit_s > 0 and len(trials[2].figures.scores) == len(validation.labels)


def test_a_larger_coreset_ratio_is_expected_to_take_up_to_its_multiple_of_the_smaller_one_s_time(
        shared: object) -> None:
    """At the same input pixels seconds per pixel would expect ratio 1.0 to take ratio 0.001's time; the ratio's
    bound expects up to 1,000 times that, past the budget."""
    settings = load_settings(data={"root": str(CATEGORY)}, runtime=FAST)
    split = split_good(MVTecCategory(CATEGORY).good_folder().paths, settings.calibration)
    validation = synthetic_validation(split.held_out, 0, settings.pipeline.source.max_image_pixels)
    small, whole = Candidate("resize", 64, 0.001), Candidate("resize", 64, 1.0)
    budget_s = 60.0
    trials = search(settings, [small, whole], split.fit, validation, budget_s,
                    settings.pipeline.source.max_image_pixels)
    assert trials[0].figures is not None and trials[1].figures is None
    expected = float(trials[1].skipped.split("would take about ")[1].split(" s")[0])
    assert expected > budget_s
    assert ratio_bound(whole, [(small, 2.0)]) == pytest.approx(2000.0)
    assert ratio_bound(Candidate("resize", 96, 1.0), [(small, 2.0)]) is None  # another geometry
    assert ratio_bound(small, [(whole, 2.0)]) is None  # a smaller ratio: the per-pixel estimate holds


def test_the_first_tile_candidate_runs_right_after_the_default(shared: object,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Run order: the default, the first tile candidate, the rest; the trials come back in the grid's order (the
    ranking's)."""
    settings = load_settings(data={"root": str(CATEGORY)}, runtime=FAST)
    split = split_good(MVTecCategory(CATEGORY).good_folder().paths, settings.calibration)
    validation = synthetic_validation(split.held_out, 0, settings.pipeline.source.max_image_pixels)
    grid = [Candidate("resize", 64, 0.1), Candidate("resize", 96, 0.1), Candidate("tile", 64, 0.1),
            Candidate("tile", 64, 0.2)]
    with caplog.at_level(logging.INFO, logger="stream_ad.tuning.search"):
        trials = search(settings, grid, split.fit, validation, 600.0, settings.pipeline.source.max_image_pixels)
    assert [t.candidate for t in trials] == grid and all(t.figures is not None for t in trials)
    tried = [r.getMessage().removeprefix("trying ") for r in caplog.records if r.getMessage().startswith("trying ")]
    assert tried == [grid[0].name, grid[2].name, grid[1].name, grid[3].name]
