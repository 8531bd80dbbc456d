"""Choosing: the default (the first trial) is kept unless a candidate's image AUROC beats it beyond the validation
set's noise (a paired bootstrap), or its pixel AUROC where image AUROC cannot tell them apart (the default's is
saturated, or none beats it beyond noise); of several that do, the largest lower bound, ties to the one tried first;
skipped candidates listed with why."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from stream_ad.evaluation import image_auroc
from stream_ad.tuning import Candidate, Figures, PixelHistograms, RankedOn, Trial, intervals_against_default, rank

# A validation set of tune's size on a PIPED category: 8 held-out good images, 24 synthetic defects.
LABELS = (0,) * 8 + (1,) * 24
RNG = np.random.default_rng(0)
# The default separates them fairly: defects score higher on average, with overlap (image AUROC about 0.85).
DEFAULT = tuple(np.concatenate([RNG.normal(0.0, 1.0, 8), RNG.normal(1.5, 1.0, 24)]))


def trial(size: int, scores: tuple[float, ...], fit_s: float = 1.0) -> Trial:
    return Trial(Candidate("resize", size, 0.01), Figures(fit_s, 0.5, image_auroc(LABELS, scores), None, scores))


def noise_better(scores: tuple[float, ...]) -> tuple[float, ...]:
    """The same scores but for the lowest-scoring defect lifted just above the highest good image it was below: one
    good-defect pair more in order, image AUROC up by 1/192."""
    s = np.asarray(scores)
    worst = 8 + int(np.argmin(s[8:]))
    above = s[:8][s[:8] > s[worst]]
    s[worst] = above.min() + 1e-6
    return tuple(s)


def separated(scores: tuple[float, ...]) -> tuple[float, ...]:
    """Every defect above every good image: image AUROC 1.0."""
    s = np.asarray(scores)
    return tuple(np.concatenate([s[:8], s[8:] + s[:8].max() - s[8:].min() + 1.0]))


def test_a_candidate_only_noise_better_leaves_the_default_chosen() -> None:
    slightly = noise_better(DEFAULT)
    assert image_auroc(LABELS, slightly) > image_auroc(LABELS, DEFAULT)  # higher, as the old ranking would take
    outcomes = rank([trial(224, DEFAULT), trial(320, slightly)], LABELS)
    assert [o.chosen for o in outcomes] == [True, False]
    interval = outcomes[1].interval
    assert interval is not None and interval.difference == pytest.approx(1 / 192)
    assert interval.low <= 0.0 < interval.high  # 0 inside: noise
    assert outcomes[0].why == "default kept: no candidate beats it beyond noise at 95%"
    assert outcomes[1].why == "not beyond noise (95% over 1 candidate)"


def test_a_clearly_better_candidate_is_chosen_with_its_interval() -> None:
    outcomes = rank([trial(224, DEFAULT), trial(320, separated(DEFAULT))], LABELS)
    assert [o.chosen for o in outcomes] == [False, True]
    interval = outcomes[1].interval
    assert interval is not None and 0.0 < interval.low <= interval.difference <= interval.high
    assert interval.difference == pytest.approx(1.0 - image_auroc(LABELS, DEFAULT))
    assert outcomes[0].why == "default: 1 candidate(s) beat it beyond noise"
    assert outcomes[1].why == "beats the default beyond noise (95% over 1 candidate), by the largest lower bound"


def test_a_saturated_default_is_kept_and_saturated_candidates_tie_to_the_first_tried() -> None:
    perfect = separated(DEFAULT)
    kept = rank([trial(224, perfect), trial(320, separated(perfect))], LABELS)
    assert [o.chosen for o in kept] == [True, False]
    assert kept[0].why == "default kept: its image AUROC is 1.0 (saturated), so no candidate can beat it"
    # Below a default at 0.85, two candidates at 1.0 tie on every resample: the cheaper (first tried) wins.
    tied = rank([trial(224, DEFAULT), trial(320, perfect, fit_s=9.0), trial(448, perfect, fit_s=0.1)], LABELS)
    assert [o.chosen for o in tied] == [False, True, False]
    assert tied[2].why.endswith("ties the chosen one's lower bound; the chosen one is cheaper (tried first)")


def test_the_correction_covers_every_candidate_compared() -> None:
    one, five = (intervals_against_default(LABELS, DEFAULT, [noise_better(DEFAULT)] * k, 0.95, 0) for k in (1, 5))
    assert one[0].level == pytest.approx(0.95) and five[0].level == pytest.approx(0.99)
    assert five[0].low <= one[0].low and five[0].high >= one[0].high  # wider for more comparisons


def test_a_candidate_no_better_than_the_default_is_chosen_at_most_about_the_stated_rate() -> None:
    """Under the null (candidate and default draw their scores from the same distributions), the guard should leave
    the default in about 5 % of validation sets at 95 % confidence; the percentile bootstrap runs a little liberal
    on 8 good images, hence the margin."""
    rng = np.random.default_rng(1)
    draws = 300

    def scores() -> np.ndarray:
        return np.concatenate([rng.normal(0.0, 1.0, 8), rng.normal(1.5, 1.0, 24)])

    switched = sum(intervals_against_default(LABELS, scores(), [scores()], 0.95, i)[0].beats_default
                   for i in range(draws))
    assert switched / draws <= 0.10


def test_skipped_candidates_are_listed_with_why() -> None:
    outcomes = rank([trial(224, DEFAULT), Trial(Candidate("tile", 224, 0.002), None, "budget spent")], LABELS)
    assert [o.chosen for o in outcomes] == [True, False]
    assert outcomes[1].why == "skipped: budget spent" and outcomes[1].interval is None


def test_an_unrun_default_is_an_error() -> None:
    with pytest.raises(ValueError, match="the default \\(first\\) candidate was not run"):
        rank([Trial(Candidate("resize", 224, 0.1), None, "budget spent")], LABELS)


# ---- where image AUROC cannot tell them apart: ranked on pixel AUROC ----

MASKS = tuple(np.zeros((16, 16), bool) for _ in range(8)) + tuple(
    np.pad(np.ones((4, 4), bool), ((r, 12 - r), (c, 12 - c))) for r, c in RNG.integers(0, 12, (24, 2)))


def maps(contrast: float, seed: int) -> tuple[np.ndarray, ...]:
    """Noise maps whose defect pixels are raised by `contrast` (standard deviations)."""
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(0.0, 1.0, m.shape) + contrast * m for m in MASKS)


def pixel_trial(size: int, scores: tuple[float, ...], contrast: float, seed: int) -> Trial:
    pixels = PixelHistograms.count(MASKS, maps(contrast, seed))
    return Trial(Candidate("resize", size, 0.01),
                 Figures(1.0, 0.5, image_auroc(LABELS, scores), pixels.auroc(), scores, pixels))


def test_binned_pixel_auroc_is_sklearns_within_its_stated_bound() -> None:
    for contrast in (0.0, 0.5, 2.0):
        amaps = maps(contrast, 1)
        pixels = PixelHistograms.count(MASKS, amaps)
        exact = roc_auc_score(np.concatenate([m.ravel() for m in MASKS]), np.concatenate([a.ravel() for a in amaps]))
        assert abs(pixels.auroc() - exact) <= pixels.max_error() <= 1e-3


def test_a_resample_counts_an_image_as_often_as_it_was_drawn() -> None:
    amaps = maps(1.0, 2)
    pixels = PixelHistograms.count(MASKS, amaps)
    weights = np.ones((1, len(MASKS)))
    weights[0, 3], weights[0, 20], weights[0, 21] = 0, 3, 0  # image 3 and 21 not drawn, image 20 three times
    drawn = [3 * [i] if i == 20 else [i] for i in range(len(MASKS)) if i not in (3, 21)]
    order = [i for group in drawn for i in group]
    exact = roc_auc_score(np.concatenate([MASKS[i].ravel() for i in order]),
                          np.concatenate([amaps[i].ravel() for i in order]))
    assert abs(pixels.resampled(weights)[0] - exact) <= 2 * pixels.max_error()


def test_a_saturated_default_is_ranked_on_pixel_auroc_and_clearly_better_maps_win() -> None:
    perfect = separated(DEFAULT)
    outcomes = rank([pixel_trial(224, perfect, 1.0, 3), pixel_trial(320, perfect, 1.0, 4),
                     pixel_trial(448, perfect, 3.0, 5)], LABELS)
    assert all(o.ranked_on is RankedOn.PIXEL_AUROC for o in outcomes)
    assert [o.chosen for o in outcomes] == [False, False, True]
    assert outcomes[1].why.startswith("not beyond noise")  # as good maps, other noise
    interval = outcomes[2].interval
    assert interval is not None and interval.low > 0.0
    assert interval.difference == pytest.approx(outcomes[2].trial.figures.pixel_auroc
                                                - outcomes[0].trial.figures.pixel_auroc)


def test_better_maps_do_not_buy_a_worse_image_auroc() -> None:
    outcomes = rank([pixel_trial(224, separated(DEFAULT), 1.0, 3), pixel_trial(448, DEFAULT, 3.0, 5)], LABELS)
    assert [o.chosen for o in outcomes] == [True, False]
    assert "its image AUROC is worse beyond noise" in outcomes[1].why
    assert outcomes[0].why.startswith("default kept: no candidate beats its pixel AUROC beyond noise")


def test_below_saturation_the_maps_decide_where_image_auroc_cannot() -> None:
    """No candidate beats the default's image AUROC beyond noise: the clearly better maps are chosen."""
    outcomes = rank([pixel_trial(224, DEFAULT, 1.0, 3), pixel_trial(320, noise_better(DEFAULT), 1.0, 4),
                     pixel_trial(448, DEFAULT, 3.0, 5)], LABELS)
    assert all(o.ranked_on is RankedOn.PIXEL_AUROC for o in outcomes)
    assert [o.chosen for o in outcomes] == [False, False, True]
    assert outcomes[1].why.startswith("not beyond noise")  # as good maps, and an image AUROC only noise-better
    kept = rank([pixel_trial(224, DEFAULT, 1.0, 3), pixel_trial(320, noise_better(DEFAULT), 1.0, 4)], LABELS)
    assert [o.chosen for o in kept] == [True, False]
    assert kept[0].why == ("default kept: no candidate beats its pixel AUROC beyond noise at 95% (ranked on pixel "
                           "AUROC: no candidate beats its image AUROC beyond noise)")


def test_a_candidate_that_beats_the_image_auroc_is_ranked_on_it_whatever_the_maps() -> None:
    trials = [pixel_trial(224, DEFAULT, 1.0, 3), pixel_trial(320, separated(DEFAULT), 1.0, 4),
              pixel_trial(448, DEFAULT, 3.0, 5)]
    outcomes = rank(trials, LABELS)
    assert all(o.ranked_on is RankedOn.IMAGE_AUROC for o in outcomes)
    assert [o.chosen for o in outcomes] == [False, True, False]  # better detection, though 448 has better maps
    # The same one too slow for the line (500 ms a frame): image AUROC decides nothing, so the maps do.
    better = trials[1].figures
    slow = [trials[0], Trial(trials[1].candidate, replace(better, score_s=32 * 0.5)), trials[2]]
    outcomes = rank(slow, LABELS, max_frame_ms=100)
    assert outcomes[0].ranked_on is RankedOn.PIXEL_AUROC and [o.chosen for o in outcomes] == [False, False, True]


def test_a_candidate_too_slow_for_the_line_is_not_chosen() -> None:
    """--max-frame-ms: a clearly better candidate that took longer to score a frame is passed over for the next
    best; the default stays eligible however slow."""
    slow = Trial(Candidate("tile", 224, 0.01), Figures(1.0, 32 * 0.5, 1.0, None, separated(DEFAULT)))  # 500 ms
    quick = Trial(Candidate("resize", 320, 0.01), Figures(1.0, 32 * 0.01, 1.0, None, separated(DEFAULT)))  # 10 ms
    outcomes = rank([trial(224, DEFAULT), slow, quick], LABELS, max_frame_ms=100)
    assert [o.chosen for o in outcomes] == [False, False, True]
    assert outcomes[1].why == "too slow: 500.0 ms a frame, above --max-frame-ms 100"
    alone = rank([trial(224, DEFAULT), slow], LABELS, max_frame_ms=100)
    assert [o.chosen for o in alone] == [True, False]
    assert alone[0].why == "default kept: 1 candidate(s) beat it beyond noise, each too slow for --max-frame-ms"
    assert rank([trial(224, DEFAULT), slow], LABELS, max_frame_ms=1e-3)[0].chosen  # the default runs untuned anyway
    assert rank([trial(224, DEFAULT), slow], LABELS)[1].chosen  # no limit: the better one
