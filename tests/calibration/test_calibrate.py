"""`stream-ad fit` + `stream-ad calibrate` on real magnetic_tile images, as a user runs them: the threshold's stated
false-alarm bound holds on a further held-out good split (test/good, never seen by fit or calibration), and images
the model was fitted on are refused."""

from __future__ import annotations

import numpy as np
import pytest

from tests.calibration.conftest import Calibrated, cli, cli_env, fit_and_calibrate, small_magnetic_tile
from tests.conftest import MAGNETIC_TILE

TRAIN_IMAGES = 140  # spread over train/good: 80 held out (>= the 59 a 5 % target needs at 95 %), 60 fitted
HOLDOUT = 80
TARGET_FPR = 0.05
DEFECTS_PER_TYPE = 8


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Calibrated:
    work = tmp_path_factory.mktemp("calibrate")
    root = small_magnetic_tile(work, TRAIN_IMAGES, DEFECTS_PER_TYPE)
    env = cli_env(root, work, holdout_fraction=HOLDOUT / TRAIN_IMAGES, target_fpr=TARGET_FPR)
    run = fit_and_calibrate(root, work, env, "--pixel-target-fpr", "0.01")
    assert f"fitted on {TRAIN_IMAGES - HOLDOUT} good images, {HOLDOUT} held out" in run.fit_stdout
    return run


def test_threshold_and_how_it_was_set_are_in_the_artefact(calibrated: Calibrated) -> None:
    t = calibrated.manifest["threshold"]
    assert t == calibrated.record
    assert t["method"] == "clopper-pearson" and t["target_fpr"] == TARGET_FPR and t["confidence"] == 0.95
    assert t["n_good"] == HOLDOUT and t["fpr_upper_bound"] <= TARGET_FPR
    assert t["value"] > 0 and t["calibrated_at"] and t["pixel"]["value"] > 0
    # Calibrated on exactly the images the fit held out, none of which it was fitted on.
    split = calibrated.manifest["data_split"]
    held = [e["path"] for e in split["held_out"]]
    assert t["images"]["paths"] == held and len(held) == HOLDOUT
    assert not {e["sha256"] for e in split["fitted"]} & {e["sha256"] for e in split["held_out"]}
    # Labelled defects: recall at this threshold and the max-F1 threshold, reported.
    d = t["defects"]
    assert d["n_defective"] == 5 * DEFECTS_PER_TYPE and 0 < d["recall_at_threshold"] <= 1
    assert d["max_f1"] >= d["f1_at_threshold"]
    assert f"threshold {t['value']:.4f}" in calibrated.stdout and "upper bound" in calibrated.stdout


def test_false_alarm_rate_on_unseen_good_images_is_within_the_bound(calibrated: Calibrated) -> None:
    """test/good (191 images) was neither fitted on nor calibrated on: its measured false-alarm rate at the
    calibrated threshold stays within the stated bound."""
    from stream_ad.artefact import load_model
    from stream_ad.settings import load_settings

    model = load_model(calibrated.model, load_settings(**{"data": {"root": str(calibrated.root)},
                                                          "runtime": {"threads": 2}}))
    good = sorted((MAGNETIC_TILE / "test" / "good").iterdir())
    scores = np.concatenate([p.scores for p in model.predict_files(good)])
    t = calibrated.manifest["threshold"]
    measured = float((scores > t["value"]).mean())
    print(f"threshold {t['value']:.4f} from {t['n_good']} good images, target {t['target_fpr']}, bound "
          f"{t['fpr_upper_bound']:.4f} at {t['confidence']:.0%}; measured FPR on {len(good)} unseen good images "
          f"{measured:.4f}")
    assert len(good) == 191
    assert measured <= t["fpr_upper_bound"]


def test_images_the_model_was_fitted_on_are_refused(calibrated: Calibrated) -> None:
    out = cli("calibrate", "--good", str(calibrated.root / "train" / "good"), env=calibrated.env)
    assert out.returncode == 2
    used = f"{TRAIN_IMAGES - HOLDOUT} of the {TRAIN_IMAGES} calibration images were used to fit this model"
    assert used in out.stderr


def test_too_few_good_images_for_the_target_rate_names_the_number(calibrated: Calibrated) -> None:
    before = (calibrated.model / "manifest.json").read_text()
    out = cli("calibrate", "--target-fpr", "0.01", env=calibrated.env)
    assert out.returncode == 2
    assert f"{HOLDOUT} good images cannot show a false-alarm rate of at most 0.01" in out.stderr
    assert "at least 299" in out.stderr
    assert (calibrated.model / "manifest.json").read_text() == before  # the artefact keeps its threshold
