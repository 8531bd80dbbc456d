"""`stream-ad eval --good DIR --defects DIR [--masks DIR]`: with masks pixel AUROC and PRO, without them image AUROC
only and the report says so; flags that do not go together are a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_ad.evaluation.tally import WORST
from tests.browser import headless_chromium
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


def test_eval_writes_a_self_contained_html_report_that_chromium_shows(
    folder_fit: FolderFit, calibrated_fit: Path, tmp_path: Path
) -> None:
    good, defects, masks = make_folders(tmp_path)
    folders = ("--good", good, "--defects", defects, "--masks", masks)
    calibrated = cli("-c", folder_fit.config, "eval", "--model", calibrated_fit, *folders, "--json", tmp_path / "c.json")
    assert calibrated.code == 0, calibrated.stderr
    assert f"pictures: {tmp_path / 'c.html'}" in calibrated.stdout
    report = json.loads((tmp_path / "c.json").read_text())
    threshold = report["threshold"]
    assert threshold is not None and set(report["recall"]["overall"]) == {
        "defective_images", "at_threshold", "at_fpr_0.01", "at_fpr_0.05"}
    assert report["pixel_metrics"]["max_error"]["pixel_auroc"] < 1e-3
    html = (tmp_path / "c.html").read_text()
    assert f"threshold {threshold:.4g}" in html  # stated, and marked on the histograms
    # This model separates the test images: no miss, no false alarm at its threshold, and the page says so.
    assert report["recall"]["overall"]["at_threshold"] == 1.0 and "none: every defective image" in html
    n_good = sum(1 for _ in good.iterdir())
    assert report["false_alarms_at_threshold"] == {"good_images": n_good, "above_threshold": 0}
    assert f"0 false alarms on the {n_good} good images" in html
    assert f"recall 1.000, 0 false alarms on {n_good} good images" in calibrated.stdout

    # Uncalibrated, the lowest-scored defective and highest-scored good images stand in: WORST of each.
    plain = cli("-c", folder_fit.config, "eval", "--model", folder_fit.model, *folders, "--json", tmp_path / "p.json")
    assert plain.code == 0, plain.stderr
    assert json.loads((tmp_path / "p.json").read_text())["false_alarms_at_threshold"] is None
    assert "at the calibrated threshold" not in plain.stdout
    page = tmp_path / "p.html"
    html = page.read_text()
    assert "<script" not in html and "<link" not in html and 'src="http' not in html  # nothing fetched
    images = html.count("<img ")
    assert images == 2 + 2 * WORST  # the curves, the histograms, the misses and false alarms

    loaded, text, screenshot = show_in_chromium(page)
    assert len(loaded) == images and all(complete and width > 0 for complete, width in loaded), loaded
    assert "Worst misses" in text and "no calibrated threshold" in text
    shot = cv2.imdecode(np.frombuffer(screenshot, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert shot.std() > 10  # not a blank page


def show_in_chromium(page: Path) -> tuple[list[tuple[bool, int]], str, bytes]:
    """(per image: loaded, natural width), the page's text and a screenshot, from headless Debian chromium."""
    with headless_chromium() as driver:
        driver.set_page_load_timeout(60)
        driver.get(page.as_uri())
        loaded = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);")
        return [(bool(c), int(w)) for c, w in loaded], driver.find_element("tag name", "body").text, \
            driver.get_screenshot_as_png()
