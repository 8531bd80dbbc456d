"""`stream-ad predict PATH...` with a saved model: one line per image and a CSV row each that agree with the model's
own scores, an overlay PNG per image, a new folder per run; a missing path or a used --out is a one-line error."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_ad.overlay import MIN_SIDE
from tests.commands.conftest import CATEGORY, FolderFit, cli, copy_images

LINE = re.compile(r"^(?P<path>.+)  score (?P<score>\S+)  normalised (?P<normalised>\S+)  (?P<verdict>\S+)$")


def inputs(root: Path) -> tuple[list[Path], list[Path]]:
    """(the PATH arguments, the images they name in order): a single file, then a folder with a subfolder."""
    single = copy_images(sorted((CATEGORY / "test" / "good").iterdir())[:1], root / "one")[0]
    good = copy_images(sorted((CATEGORY / "test" / "good").iterdir())[1:4], root / "batch")
    defects = copy_images(sorted((CATEGORY / "test" / "defect").iterdir())[:6], root / "batch" / "suspect")
    return [single, root / "batch"], [single, *good, *defects]


def model_scores(folder_fit: FolderFit, model: Path, paths: list[Path]) -> np.ndarray:
    from stream_ad.artefact import load_model
    from stream_ad.settings import load_settings

    loaded = load_model(model, load_settings(folder_fit.config))
    return np.concatenate([p.scores for p in loaded.predict_files(paths)])


def threshold_of(model: Path) -> float:
    from stream_ad.artefact import read_manifest

    value = read_manifest(model).threshold_value
    assert value is not None
    return value


def read_csv(folder: Path) -> list[dict[str, str]]:
    with (folder / "predictions.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def check_overlays(folder: Path, rows: list[dict[str, str]]) -> None:
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(r["overlay"] for r in rows)
    for row in rows:
        picture = cv2.imread(str(folder / row["overlay"]))
        # The 128 px frame enlarged to stay legible, with the legend and colour bar around it.
        assert picture is not None and picture.ndim == 3 and min(picture.shape[:2]) >= MIN_SIDE


def test_calibrated_lines_and_csv_agree_with_the_model(calibrated_fit: Path, folder_fit: FolderFit,
                                                       tmp_path: Path) -> None:
    args, images = inputs(tmp_path)
    predict_dir = folder_fit.work / "runs" / "predict"  # the default parent of the run folders
    before = set(predict_dir.iterdir()) if predict_dir.is_dir() else set()
    run = cli("-c", folder_fit.config, "predict", *args, "--model", calibrated_fit)
    assert run.code == 0, run.stderr
    scores, threshold = model_scores(folder_fit, calibrated_fit, images), threshold_of(calibrated_fit)
    lines = [LINE.match(line) for line in run.stdout.splitlines()]
    assert all(lines) and [Path(m["path"]) for m in lines] == images
    verdicts = ["anomaly" if s > threshold else "ok" for s in scores]
    assert [m["verdict"] for m in lines] == verdicts and {"ok", "anomaly"} <= set(verdicts)
    assert [float(m["score"]) for m in lines] == pytest.approx(scores, abs=5e-5)
    assert [float(m["normalised"]) for m in lines] == pytest.approx(scores / threshold, abs=5e-4)

    runs = sorted(set(predict_dir.iterdir()) - before)
    assert len(runs) == 1 and f"in {runs[0]}" in run.stderr
    rows = read_csv(runs[0])
    assert [Path(r["path"]) for r in rows] == images and [r["verdict"] for r in rows] == verdicts
    assert [float(r["score"]) for r in rows] == pytest.approx(scores, rel=1e-6)
    assert [float(r["score_normalised"]) for r in rows] == pytest.approx(scores / threshold, rel=1e-6)
    check_overlays(runs[0], rows)

    # A second run writes a folder of its own and leaves the first as it was.
    first = {p.name: p.read_bytes() for p in runs[0].iterdir()}
    again = cli("-c", folder_fit.config, "predict", args[0], "--model", calibrated_fit)
    assert again.code == 0, again.stderr
    second = sorted(set(predict_dir.iterdir()) - before - {runs[0]})
    assert len(second) == 1 and len(read_csv(second[0])) == 1
    assert {p.name: p.read_bytes() for p in runs[0].iterdir()} == first


def test_an_uncalibrated_model_says_so(folder_fit: FolderFit, tmp_path: Path) -> None:
    args, images = inputs(tmp_path)
    run = cli("-c", folder_fit.config, "predict", *args, "--model", folder_fit.model, "--out", tmp_path / "out")
    assert run.code == 0, run.stderr
    scores = model_scores(folder_fit, folder_fit.model, images)
    lines = [LINE.match(line) for line in run.stdout.splitlines()]
    assert all(m and m["verdict"] == "uncalibrated" and m["normalised"] == "-" for m in lines)
    assert len(lines) == len(images) and "no threshold" in run.stderr
    rows = read_csv(tmp_path / "out")
    assert all(r["verdict"] == "uncalibrated" and r["score_normalised"] == "" for r in rows)
    assert [float(r["score"]) for r in rows] == pytest.approx(scores, rel=1e-6)
    check_overlays(tmp_path / "out", rows)


@pytest.mark.parametrize("case", ["missing path", "empty folder", "used --out", "no model"])
def test_errors_name_the_path(folder_fit: FolderFit, tmp_path: Path, case: str) -> None:
    image = copy_images(sorted((CATEGORY / "test" / "good").iterdir())[:1], tmp_path / "in")[0]
    (tmp_path / "empty").mkdir()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "predictions.csv").write_text("path\n")
    args, expected = {
        "missing path": ([image, tmp_path / "absent.png"], f"predict: no such file or folder {tmp_path / 'absent.png'}"),
        "empty folder": ([tmp_path / "empty"], f"predict: folder {tmp_path / 'empty'} is empty"),
        "used --out": ([image, "--out", tmp_path / "used"], f"--out: {tmp_path / 'used'} already exists"),
        "no model": ([image, "--model", tmp_path / "none"], f"{tmp_path / 'none' / 'manifest.json'} is missing"),
    }[case]
    model = [] if case == "no model" else ["--model", folder_fit.model]
    run = cli("-c", folder_fit.config, "predict", *model, *args)
    assert expected in run.error
    assert (tmp_path / "used" / "predictions.csv").read_text() == "path\n"
