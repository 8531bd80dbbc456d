"""`stream-ad calibrate` on a plain-folder fit: its hold-out found in the folder it was fitted from, or other good
pictures with --good (--images still works); a wrong folder is a one-line error naming --good and the path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.commands.conftest import CATEGORY, GOOD_IMAGES, FolderFit, cli, copy_images


def manifest(model: Path) -> dict:
    return json.loads((model / "manifest.json").read_text())


def test_the_hold_out_of_a_folder_fit_calibrates_it(calibrated_fit: Path, folder_fit: FolderFit) -> None:
    threshold = manifest(calibrated_fit)["threshold"]
    held_out = [e["path"] for e in manifest(folder_fit.model)["data_split"]["held_out"]]
    assert threshold["n_good"] == GOOD_IMAGES // 2 and threshold["value"] > 0
    assert f"of {folder_fit.good.resolve()} held out of fitting" in threshold["images"]["source"]
    # No recall report: data.root/test is not this model's data set.
    assert threshold["defects"] is None
    assert sorted(Path(p).resolve() for p in threshold["images"]["paths"]) == sorted(
        (folder_fit.good / p).resolve() for p in held_out)


def test_other_good_pictures_given_with_good_or_images(folder_fit: FolderFit, tmp_path: Path) -> None:
    others = copy_images(sorted((CATEGORY / "test" / "good").iterdir()), tmp_path / "more good")
    for flag in ("--good", "--images"):
        model = tmp_path / flag.strip("-")
        shutil.copytree(folder_fit.model, model)
        run = cli("-c", folder_fit.config, "calibrate", "--model", model, flag, tmp_path / "more good")
        assert run.code == 0, run.stderr
        threshold = manifest(model)["threshold"]
        assert threshold["n_good"] == len(others)
        assert threshold["images"]["source"] == f"{len(others)} good images under {tmp_path / 'more good'}"


@pytest.mark.parametrize("case", ["missing", "file", "empty"])
def test_a_wrong_good_folder_is_one_line_naming_flag_and_path(folder_fit: FolderFit, tmp_path: Path,
                                                              case: str) -> None:
    path = tmp_path / "good"
    if case == "file":
        path.write_bytes(b"")
    elif case == "empty":
        path.mkdir()
    run = cli("-c", folder_fit.config, "calibrate", "--model", folder_fit.model, "--good", path)
    assert run.error.startswith("stream-ad: --good: ") and str(path) in run.error
    assert manifest(folder_fit.model)["threshold"] is None
