"""`stream-ad eval --good DIR --defects DIR [--masks DIR]`: with masks pixel AUROC and PRO, without them image AUROC
only and the report says so; flags that do not go together are a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.commands.conftest import CATEGORY, FolderFit, cli, copy_images

DEFECTS = 8


def make_folders(root: Path) -> tuple[Path, Path, Path]:
    """good/, defects/<first|second>/ and masks/ at the same places, named as the images (not MVTec's _mask)."""
    good, defects, masks = root / "good", root / "defects", root / "masks"
    copy_images(sorted((CATEGORY / "test" / "good").iterdir())[:6], good)
    images = sorted((CATEGORY / "test" / "defect").iterdir())[:DEFECTS]
    for i, image in enumerate(images):
        kind = "first" if i < DEFECTS // 2 else "second"
        copy_images([image], defects / kind)
        (masks / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(CATEGORY / "ground_truth" / "defect" / f"{image.stem}_mask.png", masks / kind / image.name)
    return good, defects, masks


def test_eval_with_and_without_masks(folder_fit: FolderFit, tmp_path: Path) -> None:
    good, defects, masks = make_folders(tmp_path)
    common = ("-c", folder_fit.config, "eval", "--model", folder_fit.model, "--good", good, "--defects", defects)
    with_masks = cli(*common, "--masks", masks, "--json", tmp_path / "with.json")
    assert with_masks.code == 0, with_masks.stderr
    report = json.loads((tmp_path / "with.json").read_text())
    assert set(report["metrics"]) == {"first", "second", "overall"} and report["note"] is None
    overall = report["metrics"]["overall"]
    assert overall["images"] == 6 + DEFECTS and overall["image_auroc"] >= 0.9
    assert overall["pixel_auroc"] >= 0.8 and overall["pro"] > 0.3
    assert report["metrics"]["first"]["images"] == 6 + DEFECTS // 2

    without = cli(*common, "--json", tmp_path / "without.json")
    assert without.code == 0, without.stderr
    report = json.loads((tmp_path / "without.json").read_text())
    assert report["metrics"]["overall"]["image_auroc"] == overall["image_auroc"]
    assert all(r["pixel_auroc"] is None and r["pro"] is None for r in report["metrics"].values())
    assert "image AUROC only" in report["note"] and report["note"] in without.stdout


@pytest.mark.parametrize("case", ["no defects", "no model", "masks alone", "missing defects", "defects is a file"])
def test_flags_that_do_not_go_together_or_a_wrong_folder(folder_fit: FolderFit, tmp_path: Path, case: str) -> None:
    good, defects, masks = make_folders(tmp_path)
    missing, a_file = tmp_path / "absent", next(good.iterdir())
    args = {
        "no defects": ["--model", folder_fit.model, "--good", good],
        "no model": ["--good", good, "--defects", defects],
        "masks alone": ["--model", folder_fit.model, "--masks", masks],
        "missing defects": ["--model", folder_fit.model, "--good", good, "--defects", missing],
        "defects is a file": ["--model", folder_fit.model, "--good", good, "--defects", a_file],
    }[case]
    expected = {
        "no defects": "--good and --defects together", "no model": "needs --model", "masks alone": "--masks needs",
        "missing defects": f"--defects: no such folder {missing}", "defects is a file": f"--defects: {a_file} is a file",
    }[case]
    run = cli("-c", folder_fit.config, "eval", *args)
    assert expected in run.error
