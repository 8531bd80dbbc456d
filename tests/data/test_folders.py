"""Plain folders of images: found recursively, labelled by subfolder, masks beside them; each wrong folder is an
error naming the flag and the path."""

import shutil
from pathlib import Path

import pytest

from stream_ad.data import (
    DatasetError,
    folder_test_set,
    good_folder,
    image_paths,
    read_mask,
)
from stream_ad.data.folders import image_files
from tests.conftest import PIPED

CATEGORY = PIPED / "PA_BDP01_TL"


def copy_images(src: Path, dst: Path, count: int) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, dst)) for p in sorted(src.iterdir())[:count]]


def test_good_images_are_found_recursively_and_recorded_from_the_folder(tmp_path: Path, shared: Path) -> None:
    good = tmp_path / "good"
    flat = copy_images(CATEGORY / "train" / "good", good, 3)
    nested = copy_images(CATEGORY / "test" / "good", good / "line2" / "monday", 2)
    (good / "notes.txt").write_text("not an image")
    folder = good_folder(good, "--good")
    assert set(folder.paths) == set(flat + nested) and len(folder.paths) == 5
    assert folder.root == good.resolve() and folder.layout.value == "folder"


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no images"])
def test_a_wrong_folder_names_the_flag_and_the_path(tmp_path: Path, case: str) -> None:
    path = tmp_path / "pictures"
    if case == "file":
        path.write_bytes(b"")
    elif case == "empty":
        path.mkdir()
    elif case == "no images":
        path.mkdir()
        (path / "readme.txt").write_text("x")
    expected = {"missing": "no such folder", "file": "is a file", "empty": "is empty", "no images": "holds no images"}
    with pytest.raises(DatasetError, match=rf"^--good: .*{expected[case]}") as err:
        image_files(path, "--good")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_predict_paths_take_files_and_folders_in_order(tmp_path: Path, shared: Path) -> None:
    folder = copy_images(CATEGORY / "train" / "good", tmp_path / "a" / "b", 2)
    single = copy_images(CATEGORY / "test" / "good", tmp_path / "c", 1)[0]
    assert image_paths([single, tmp_path / "a"], "predict") == [single, *folder]
    with pytest.raises(DatasetError, match=f"predict: no such file or folder {tmp_path / 'absent.png'}"):
        image_paths([single, tmp_path / "absent.png"], "predict")


def defect_folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """good/, defects/<type>/ and loose defects, masks/ mirroring defects/ (one mask named as MVTec AD does, the
    others by the image's own stem)."""
    good, defects, masks = tmp_path / "good", tmp_path / "defects", tmp_path / "masks"
    copy_images(CATEGORY / "test" / "good", good, 3)
    images = sorted((CATEGORY / "test" / "defect").iterdir())[:3]
    for image, place in zip(images, ["scratch", "scratch", "."]):
        (defects / place).mkdir(parents=True, exist_ok=True)
        (masks / place).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, defects / place)
        mvtec_mask = CATEGORY / "ground_truth" / "defect" / f"{image.stem}_mask.png"
        name = mvtec_mask.name if place == "." else f"{image.stem}.png"
        shutil.copy(mvtec_mask, masks / place / name)
    return good, defects, masks


def test_defects_are_typed_by_subfolder_with_their_masks(tmp_path: Path, shared: Path) -> None:
    good, defects, masks = defect_folders(tmp_path)
    with_masks = folder_test_set(good, defects, masks)
    assert with_masks.has_masks and len(with_masks.samples) == 6
    assert sorted(s.defect for s in with_masks.samples) == ["defect", "good", "good", "good", "scratch", "scratch"]
    for s in with_masks.samples:
        assert (s.mask_path is None) == (s.label == 0)
        if s.label:
            assert s.mask_path.parent.name == s.path.parent.name.replace("defects", "masks")
            assert read_mask(s, (128, 128)).any()
    without = folder_test_set(good, defects)
    assert not without.has_masks and all(s.mask_path is None for s in without.samples)


def test_a_defect_without_its_mask_names_both(tmp_path: Path, shared: Path) -> None:
    good, defects, masks = defect_folders(tmp_path)
    lost = next((masks / "scratch").iterdir())
    lost.unlink()
    with pytest.raises(DatasetError, match=rf"^--masks: defective image .*{lost.stem}\.png has no mask .*{lost.name}"):
        folder_test_set(good, defects, masks)
    with pytest.raises(DatasetError, match=rf"^--masks: .*{tmp_path / 'absent'}"):
        folder_test_set(good, defects, tmp_path / "absent")
