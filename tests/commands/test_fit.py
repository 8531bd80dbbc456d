"""`stream-ad fit --good DIR`: a plain folder of good pictures, searched recursively; the hold-out split recorded
relative to it; a wrong folder is a one-line error naming --good and the path."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.commands.conftest import GOOD_IMAGES, FolderFit, cli


def test_fit_on_a_plain_folder_records_its_split_relative_to_the_folder(folder_fit: FolderFit) -> None:
    half = GOOD_IMAGES // 2
    assert f"model artefact: {folder_fit.model} (fitted on {half} good images, {half} held out" in folder_fit.fit.stdout
    split = json.loads((folder_fit.model / "manifest.json").read_text())["data_split"]
    assert split["layout"] == "folder" and split["root"] == str(folder_fit.good.resolve())
    recorded = [e["path"] for e in split["fitted"] + split["held_out"]]
    on_disk = sorted(str(p.relative_to(folder_fit.good)) for p in folder_fit.good.rglob("*.png"))
    assert sorted(recorded) == on_disk and any(p.startswith("second_shift/") for p in recorded)


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no images"])
def test_a_wrong_good_folder_is_one_line_naming_flag_and_path(tmp_path: Path, case: str) -> None:
    path = tmp_path / "pictures"
    if case == "file":
        path.write_bytes(b"\x89PNG")
    elif case != "missing":
        path.mkdir()
        if case == "no images":
            (path / "list.csv").write_text("a,b\n")
    run = cli("fit", "--good", path, "--out", tmp_path / "model")
    assert run.error.startswith("stream-ad: --good: ") and str(path) in run.error
    assert not (tmp_path / "model").exists()


def test_a_hold_out_too_small_for_the_target_is_warned_of_at_fit_with_the_way_out(
        folder_fit: FolderFit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("STREAM_AD_CALIBRATION__TARGET_FPR", "0.02")
    with caplog.at_level(logging.WARNING, logger="stream_ad.commands.fit"):
        run = cli("-c", folder_fit.config, "fit", "--good", folder_fit.good, "--out", tmp_path / "model")
    assert run.code == 0, run.stderr
    half = GOOD_IMAGES // 2
    assert (f"{half} held-out good images cannot show calibration.target_fpr 0.02 at 0.95 confidence (149 needed): "
            f"`stream-ad calibrate` will refuse them; cross-fitting (calibration.folds 4) calibrates on all "
            f"{GOOD_IMAGES}") in caplog.text
    # And calibrate, refusing them, names the same way out.
    refused = cli("-c", folder_fit.config, "calibrate", "--model", tmp_path / "model")
    assert f"{half} good images cannot show a false-alarm rate of at most 0.02" in refused.error
    assert "cross-fit to calibrate on every good image (calibration.folds 4)" in refused.error
