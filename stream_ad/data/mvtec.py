"""A category folder in the MVTec AD layout, and image/mask reading with errors that name the file.

    CATEGORY/train/good/*            good parts to fit on
    CATEGORY/test/good/*             good parts to test on
    CATEGORY/test/<defect>/*         defective parts
    CATEGORY/ground_truth/<defect>/<stem>_mask.png   optional; 0 = normal, >0 = defect
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
GOOD = "good"


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    path: Path
    defect: str  # "good" or the defect type
    mask_path: Path | None  # None for good images, or where the category has no ground_truth folder

    @property
    def label(self) -> int:
        return int(self.defect != GOOD)


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3); grey images are replicated to three channels."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path} (missing, truncated or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    """Boolean defect mask (H, W) of the sample's image; all False for a good image."""
    if sample.mask_path is None:
        if sample.label:
            raise DatasetError(f"no ground-truth mask known for defective image {sample.path}")
        return np.zeros(shape, dtype=bool)
    mask = cv2.imread(str(sample.mask_path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DatasetError(f"cannot read mask {sample.mask_path}")
    if mask.shape != shape:
        raise DatasetError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {sample.path} is "
            f"{shape[1]}x{shape[0]}"
        )
    return mask > 0


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class MVTecCategory:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"data set folder not found: {self.root} (setting data.root)")
        self.name = self.root.name

    def _split_dir(self, split: str) -> Path:
        d = self.root / split
        if not d.is_dir():
            raise DatasetError(f"{self.root} has no {split}/ folder: expected the MVTec AD layout")
        return d

    @property
    def has_masks(self) -> bool:
        return (self.root / "ground_truth").is_dir()

    def train(self) -> list[Sample]:
        good = self._split_dir("train") / GOOD
        if not good.is_dir():
            raise DatasetError(f"{self.root} has no train/good/ folder of good images to fit on")
        samples = [Sample(p, GOOD, None) for p in _images_in(good)]
        if not samples:
            raise DatasetError(f"{good} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return samples

    def test(self) -> list[Sample]:
        test = self._split_dir("test")
        samples = self._test_samples(test)
        if not samples:
            raise DatasetError(f"{test} holds no test images")
        if not any(s.label == 0 for s in samples) or not any(s.label for s in samples):
            raise DatasetError(f"{test} needs both test/good/ and at least one defect folder for evaluation")
        return samples

    def defective(self) -> list[Sample]:
        """The labelled defective test images; none where there is no test/ folder (a line's own data)."""
        test = self.root / "test"
        return [s for s in self._test_samples(test) if s.label] if test.is_dir() else []

    def _test_samples(self, test: Path) -> list[Sample]:
        samples: list[Sample] = []
        for defect_dir in sorted(d for d in test.iterdir() if d.is_dir()):
            defect = defect_dir.name
            for path in _images_in(defect_dir):
                mask = None
                if defect != GOOD and self.has_masks:
                    mask = self.root / "ground_truth" / defect / f"{path.stem}_mask.png"
                    if not mask.is_file():
                        raise DatasetError(f"defective test image {path} has no mask {mask}")
                samples.append(Sample(path, defect, mask))
        return samples

    def defect_types(self) -> list[str]:
        return sorted({s.defect for s in self.test() if s.label})
