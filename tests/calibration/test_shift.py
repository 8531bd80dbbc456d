"""The calibration's good scores as the record keeps them, and the test that compares a camera's first scores with
them: a changed image (the whole distribution moves) shows, a minority of defective parts does not."""

from __future__ import annotations

import numpy as np
import pytest

from stream_ad.calibration.shift import SAMPLE_SIZE, GoodScores, compare_scores

SIGNIFICANCE = 0.001


def test_the_record_keeps_the_sorted_scores_and_reads_back() -> None:
    scores = np.random.default_rng(0).normal(20.0, 1.0, size=190)
    good = GoodScores.of(scores)
    record = good.record()
    assert record["sample"] == sorted(scores.tolist()) and record["n"] == 190
    assert record["median"] == pytest.approx(np.median(scores)) and record["p95"] == pytest.approx(
        np.quantile(scores, 0.95))
    assert GoodScores.from_record({"value": 22.0, "good_scores": record}) == good
    assert GoodScores.from_record({"value": 22.0}) is None and GoodScores.from_record(22.0) is None


def test_many_scores_are_kept_as_quantiles() -> None:
    scores = np.random.default_rng(1).normal(size=5 * SAMPLE_SIZE)
    good = GoodScores.of(scores)
    assert good.n == 5 * SAMPLE_SIZE and len(good.sample) == SAMPLE_SIZE
    assert good.sample[0] == scores.min() and good.sample[-1] == scores.max()
    assert good.median == pytest.approx(np.median(scores), abs=0.01)


def test_same_camera_passes_and_a_shifted_one_is_found() -> None:
    rng = np.random.default_rng(2)
    reference = GoodScores.of(rng.normal(20.0, 1.0, size=190))
    same = compare_scores(reference, rng.normal(20.0, 1.0, size=50))
    shifted = compare_scores(reference, rng.normal(21.5, 1.0, size=50))
    assert not same.shifted(SIGNIFICANCE)
    assert shifted.shifted(SIGNIFICANCE) and shifted.p_value < 1e-6
    assert shifted.live_median > shifted.reference_median == pytest.approx(reference.median)
    assert shifted.n_live == 50 and shifted.live_p95 > shifted.live_median


def test_a_minority_of_defects_however_high_does_not_count_as_a_shift() -> None:
    rng = np.random.default_rng(3)
    reference = GoodScores.of(rng.normal(20.0, 1.0, size=190))
    live = np.r_[rng.normal(20.0, 1.0, size=40), np.full(10, 1e6)]  # a fifth of the parts defective
    assert not compare_scores(reference, live).shifted(SIGNIFICANCE)
    # What it cannot do (documented): a window of defective parts only looks like a shifted camera.
    assert compare_scores(reference, np.full(50, 1e6)).shifted(SIGNIFICANCE)


def test_no_live_scores_is_an_error() -> None:
    with pytest.raises(ValueError, match="no live scores"):
        compare_scores(GoodScores.of([1.0, 2.0, 3.0]), [])
