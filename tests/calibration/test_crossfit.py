"""Cross-fitted calibration (calibration.folds) on real magnetic_tile images, through `stream-ad fit` and `stream-ad
calibrate` as a user runs them: every good image is fitted on and also scored by a model that never saw it, the
threshold comes from those out-of-fold scores, and its false-alarm bound holds on good images nobody saw."""

from __future__ import annotations

import numpy as np
import pytest

from stream_ad.artefact import load_model
from stream_ad.calibration.crossfit import assign_folds
from stream_ad.errors import CalibrationError
from stream_ad.model import AnomalyModel
from stream_ad.settings import ConfigError, Settings, load_settings
from tests.calibration.conftest import Calibrated, cli, cli_env, fit_and_calibrate, small_magnetic_tile
from tests.conftest import MAGNETIC_TILE

GOOD_IMAGES = 60  # >= the 59 a 5 % target needs at 95 %: with a hold-out, 80 would have to be held out of 140
FOLDS = 3
TARGET_FPR = 0.05
DEFECTS_PER_TYPE = 4


@pytest.fixture(scope="module")
def crossfitted(tmp_path_factory: pytest.TempPathFactory) -> Calibrated:
    work = tmp_path_factory.mktemp("crossfit")
    root = small_magnetic_tile(work, GOOD_IMAGES, DEFECTS_PER_TYPE)
    run = fit_and_calibrate(root, work, cli_env(root, work, folds=FOLDS, target_fpr=TARGET_FPR))
    assert f"fitted on {GOOD_IMAGES} good images, {FOLDS} folds' out-of-fold scores" in run.fit_stdout
    return run


def _served(run: Calibrated) -> tuple[AnomalyModel, Settings]:
    """The cross-fitted artefact as it serves, and the settings it was loaded with."""
    settings = load_settings(data={"root": str(run.root)}, runtime={"threads": 2})
    return load_model(run.model, settings), settings


def test_each_image_is_scored_by_a_model_fitted_without_its_fold(crossfitted: Calibrated) -> None:
    split = crossfitted.manifest["data_split"]
    crossed = split["cross_fit"]
    assert split["held_out"] == [] and len(split["fitted"]) == GOOD_IMAGES  # the served model saw every image
    assert crossed["folds"] == FOLDS and sorted(np.bincount(crossed["fold"])) == [20, 20, 20]
    paths = [crossfitted.root / e["path"] for e in split["fitted"]]
    fold = np.asarray(crossed["fold"])
    recorded = np.asarray(crossed["scores"])
    served, settings = _served(crossfitted)
    # Fold 0 again, fitted on the other folds as `fit` fitted it: the same scores as recorded.
    refit = AnomalyModel(settings)
    refit.fit([p for p, f in zip(paths, fold, strict=True) if f != 0])
    held = [p for p, f in zip(paths, fold, strict=True) if f == 0]
    np.testing.assert_allclose(refit.score_files(held), recorded[fold == 0], rtol=1e-4)
    # The served model was fitted on those images: its scores of them are lower, which calibrating on them would
    # mistake for what new good parts score.
    lower = served.score_files(held) < recorded[fold == 0]
    print(f"fitted on: {lower.sum()} of {lower.size} images score lower than out of fold")
    assert lower.mean() >= 0.8


def test_the_threshold_comes_from_every_image_s_out_of_fold_score(crossfitted: Calibrated) -> None:
    t = crossfitted.manifest["threshold"]
    scores = np.sort(crossfitted.manifest["data_split"]["cross_fit"]["scores"])[::-1]
    assert t == crossfitted.record  # what calibrate printed as JSON is what the artefact holds
    assert t["n_good"] == GOOD_IMAGES and t["cross_fit_folds"] == FOLDS
    assert t["value"] == pytest.approx(scores[t["allowed_false_alarms"]])
    assert t["fpr_upper_bound"] <= TARGET_FPR
    assert f"each scored by a model fitted on the other {FOLDS - 1} of {FOLDS} folds" in t["description"]
    assert f"threshold {t['value']:.4f}" in crossfitted.stdout
    assert t["defects"]["n_defective"] == 5 * DEFECTS_PER_TYPE


def test_false_alarm_rate_on_unseen_good_images_is_within_the_bound(crossfitted: Calibrated) -> None:
    """test/good (191 images): neither fitted on nor scored for calibration, by the served model or a fold's."""
    served, _ = _served(crossfitted)
    good = sorted((MAGNETIC_TILE / "test" / "good").iterdir())
    t = crossfitted.manifest["threshold"]
    measured = float((served.score_files(good) > t["value"]).mean())
    print(f"cross-fitted threshold {t['value']:.4f} from {t['n_good']} out-of-fold scores, bound "
          f"{t['fpr_upper_bound']:.4f}; measured FPR on {len(good)} unseen good images {measured:.4f}")
    assert len(good) == 191
    assert measured <= t["fpr_upper_bound"]


def test_a_pixel_threshold_is_refused_naming_the_setting(crossfitted: Calibrated) -> None:
    before = (crossfitted.model / "manifest.json").read_text()
    out = cli("calibrate", "--pixel-target-fpr", "0.01", env=crossfitted.env)
    assert out.returncode == 2
    assert "calibration.pixel_target_fpr needs the maps of good images the model never saw" in out.stderr
    assert f"calibration.folds {FOLDS}" in out.stderr and "--good DIR" in out.stderr
    assert (crossfitted.model / "manifest.json").read_text() == before


def test_folds_are_dealt_evenly_and_reproducibly() -> None:
    fold = assign_folds(62, 4, seed=0)
    assert sorted(np.bincount(fold)) == [15, 15, 16, 16]
    assert fold == assign_folds(62, 4, seed=0) and fold != assign_folds(62, 4, seed=1)
    assert fold != sorted(fold)  # shuffled, not blocks of the sorted names
    with pytest.raises(CalibrationError, match="calibration.folds 4 needs at least 4 good images, got 3"):
        assign_folds(3, 4, seed=0)


def test_one_fold_is_an_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="calibration.folds: .*one fold leaves no image to fit on"):
        load_settings(calibration={"folds": 1})


def test_an_int8_export_quantises_on_the_fitted_images_and_will_not_reuse_the_threshold(
        crossfitted: Calibrated) -> None:
    """Nothing was held out: INT8 ranges come from the fitted good images, and the threshold, which only fold models
    could score again, is refused with what to do instead."""
    from stream_ad.commands.errors import CommandError
    from stream_ad.commands.export_int8 import calibration_inputs, int8_threshold

    served, _ = _served(crossfitted)
    inputs, named = calibration_inputs(served, crossfitted.model, None)
    assert named["count"] == GOOD_IMAGES == inputs.shape[0] and "cross-fitted" in named["source"]
    with pytest.raises(CommandError, match=rf"cross-fitting \(calibration.folds {FOLDS}\).*calibrate --good DIR"):
        int8_threshold(crossfitted.manifest["threshold"], served, crossfitted.model, None)  # refused before scoring


def test_too_few_for_the_target_names_only_what_can_help(crossfitted: Calibrated) -> None:
    """Every good image already has its score: holding out more or cross-fitting is no way out."""
    out = cli("calibrate", "--target-fpr", "0.01", env=crossfitted.env)
    assert out.returncode == 2
    assert f"{GOOD_IMAGES} good images cannot show a false-alarm rate of at most 0.01" in out.stderr
    assert "give more good images (--good)" in out.stderr
    assert "holdout_fraction" not in out.stderr and "calibration.folds 4" not in out.stderr
