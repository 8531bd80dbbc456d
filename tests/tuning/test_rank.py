"""Choosing: the default (the first trial) is kept unless a candidate's image AUROC beats it beyond the validation
set's noise (a paired bootstrap); of several that do, the largest lower bound, ties to the one tried first; skipped
candidates listed with why."""

from __future__ import annotations

import numpy as np
import pytest

from stream_ad.evaluation import image_auroc
from stream_ad.tuning import Candidate, Figures, Trial, intervals_against_default, rank

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
