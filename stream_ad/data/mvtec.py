"""A category folder in the MVTec AD layout, read through the plain-folder reader (stream_ad.data.folders).

    CATEGORY/train/good/*            good parts to fit on
    CATEGORY/test/good/*             good parts to test on
    CATEGORY/test/<defect>/*         defective parts
    CATEGORY/ground_truth/<defect>/<stem>_mask.png   optional; 0 = normal, >0 = defect
"""

from __future__ import annotations

from pathlib import Path

from stream_ad.data.folders import (
    GOOD,
    DatasetError,
    GoodFolder,
    LabelledImages,
    Layout,
    Sample,
    image_files,
    labelled_images,
)
from stream_ad.errors import located
from stream_ad.imagefile import images_under


class MVTecCategory:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(
                f"data set folder not found (setting data.root, by default under shared_dir): {located(self.root)}")
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
        return [Sample(p, GOOD, None) for p in image_files(good, "data.root")]

    def good_folder(self) -> GoodFolder:
        """train/good, recorded relative to data.root (so a data set moved to another machine is found again)."""
        return GoodFolder(tuple(s.path for s in self.train()), self.root.resolve(), Layout.MVTEC)

    def test(self) -> list[Sample]:
        samples = self._test_samples(self._split_dir("test"))
        if not any(s.label == 0 for s in samples) or not any(s.label for s in samples):
            raise DatasetError(f"{self.root / 'test'} needs both test/good/ and at least one defect folder for "
                               "evaluation")
        return samples

    def labelled_images(self) -> LabelledImages:
        return LabelledImages(self.name, tuple(self.test()), self.has_masks)

    def defective(self) -> list[Sample]:
        """The labelled defective test images; none where there is no test/ folder (a line's own data)."""
        test = self.root / "test"
        has_test = test.is_dir() and images_under(test)
        return [s for s in self._test_samples(test) if s.label] if has_test else []

    def _test_samples(self, test: Path) -> list[Sample]:
        masks = self.root / "ground_truth" if self.has_masks else None
        return labelled_images(test, "data.root", masks, "data.root")

    def defect_types(self) -> list[str]:
        return sorted({s.defect for s in self.test() if s.label})
