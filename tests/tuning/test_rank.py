"""Ranking: image AUROC first, pixel AUROC next, the faster fit last; skipped candidates listed with why."""

from __future__ import annotations

import pytest

from stream_ad.tuning import Candidate, Figures, Trial, rank


def trial(size: int, image: float, pixel: float | None, fit_s: float = 1.0) -> Trial:
    return Trial(Candidate("resize", size, 0.1), Figures(fit_s, 0.5, image, pixel))


def test_image_auroc_ranks_first_then_pixel_auroc_then_fit_time() -> None:
    trials = [trial(64, 0.9, 0.99), trial(96, 0.95, 0.80), trial(128, 0.95, 0.90), trial(160, 0.95, 0.90, 0.5),
              Trial(Candidate("tile", 224, 0.1), None, "budget spent")]
    outcomes = rank(trials)
    assert [o.chosen for o in outcomes] == [False, False, False, True, False]
    assert [o.trial for o in outcomes] == trials  # in the order tried
    whys = [o.why for o in outcomes]
    assert whys[0] == "image AUROC 0.9000 below the chosen 0.9500"
    assert whys[1] == "same image AUROC; pixel AUROC 0.8000 below the chosen 0.9000"
    assert whys[2] == "same AUROCs; fit 1.0 s, the chosen one's 0.5 s"
    assert whys[4] == "skipped: budget spent"


def test_without_masks_image_auroc_alone_decides() -> None:
    outcomes = rank([trial(64, 0.7, None), trial(96, 0.8, None)])
    assert [o.chosen for o in outcomes] == [False, True]


def test_nothing_run_is_an_error() -> None:
    with pytest.raises(ValueError, match="no candidate was run"):
        rank([Trial(Candidate("resize", 224, 0.1), None, "budget spent")])
