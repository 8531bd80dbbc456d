import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_ad.data import DatasetError, MVTecCategory, read_image, read_mask
from tests.conftest import MAGNETIC_TILE, PIPED


def test_piped_category_layout(shared: Path) -> None:
    cat = MVTecCategory(PIPED / "PA_BDP01_TL")
    assert len(cat.train()) == 32
    test = cat.test()
    assert sum(s.label == 0 for s in test) == 16 and sum(s.label for s in test) == 48
    sample = next(s for s in test if s.label)
    img = read_image(sample.path)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    assert read_mask(sample, img.shape[:2]).any()


def test_magnetic_tile_grey_images_of_varying_size(shared: Path) -> None:
    cat = MVTecCategory(MAGNETIC_TILE)
    assert cat.defect_types() == ["blowhole", "break", "crack", "fray", "uneven"]
    shapes = {read_image(s.path).shape for s in cat.train()[:40]}
    assert len(shapes) > 1 and all(s[2] == 3 for s in shapes)


def copy_category(tmp_path: Path) -> Path:
    root = tmp_path / "cat"
    shutil.copytree(PIPED / "PA_BDP01_TL", root)
    return root


def test_missing_split_is_named(tmp_path: Path, shared: Path) -> None:
    root = copy_category(tmp_path)
    shutil.rmtree(root / "train")
    with pytest.raises(DatasetError, match="no train/ folder"):
        MVTecCategory(root).train()
    with pytest.raises(DatasetError, match="data.root"):
        MVTecCategory(tmp_path / "absent")


def test_unreadable_image_is_named(tmp_path: Path, shared: Path) -> None:
    root = copy_category(tmp_path)
    bad = sorted((root / "train" / "good").iterdir())[0]
    bad.write_bytes(b"\x89PNG truncated")
    with pytest.raises(DatasetError, match=bad.name):
        read_image(bad)


def test_mask_of_wrong_size_names_both_files(tmp_path: Path, shared: Path) -> None:
    root = copy_category(tmp_path)
    sample = next(s for s in MVTecCategory(root).test() if s.label)
    cv2.imwrite(str(sample.mask_path), np.zeros((64, 64), np.uint8))
    with pytest.raises(DatasetError, match=rf"{sample.mask_path.name}.*64x64.*{sample.path.name}"):
        read_mask(sample, read_image(sample.path).shape[:2])


def test_missing_mask_is_named(tmp_path: Path, shared: Path) -> None:
    root = copy_category(tmp_path)
    sample = next(s for s in MVTecCategory(root).test() if s.label)
    sample.mask_path.unlink()
    with pytest.raises(DatasetError, match=sample.mask_path.name):
        MVTecCategory(root).test()


def test_a_decompression_bomb_is_a_one_line_error_naming_the_file(tmp_path: Path, shared: Path) -> None:
    from tests.sources.test_poison import bomb

    path = tmp_path / "bomb.png"
    path.write_bytes(bomb())
    with pytest.raises(DatasetError, match=r"bomb\.png refused: its header says 20000 x 20000") as exc:
        read_image(path)
    assert "\n" not in str(exc.value)
    real = min((copy_category(tmp_path) / "train" / "good").iterdir())
    assert read_image(real, max_pixels=128 * 128).shape == (128, 128, 3)
    with pytest.raises(DatasetError, match="over the limit of 16383"):
        read_image(real, max_pixels=128 * 128 - 1)
