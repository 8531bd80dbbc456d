"""Images in plain folders, as the commands and the MVTec AD reader take them: image files found recursively, good
and labelled defective samples, masks beside them, reading with errors that name the file (or the flag that named
the folder).

    GOOD/**/*                        good parts (fit --good, eval --good, calibrate --good)
    DEFECTS/<type>/**/*              defective parts by type; images directly in DEFECTS are of type "defect"
    MASKS/<type>/**/<stem>_mask.png  or <stem>.png: the mask of DEFECTS/<type>/**/<stem>.*, 0 = normal, >0 = defect
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from stream_ad.errors import DatasetError, located
from stream_ad.imagefile import IMAGE_SUFFIXES, ImageFileError, images_under, read_image_file
from stream_ad.settings import MAX_IMAGE_PIXELS

GOOD = "good"
LOOSE_DEFECT = "defect"  # the type of defective images lying directly in the defects folder
MASK_NAMES = ("{stem}_mask.png", "{stem}.png")  # MVTec AD's name first


class Layout(StrEnum):
    """How good images were given: data.root in the MVTec AD layout (relocatable: paths relative to this machine's
    data.root) or a plain folder (paths relative to that folder)."""

    MVTEC = "mvtec"
    FOLDER = "folder"


@dataclass(frozen=True)
class Sample:
    path: Path
    defect: str  # "good" or the defect type
    mask_path: Path | None  # None for good images, or where no masks were given

    @property
    def label(self) -> int:
        return int(self.defect != GOOD)


@dataclass(frozen=True)
class GoodFolder:
    """Good images to fit on, with the folder their recorded paths are relative to."""

    paths: tuple[Path, ...]
    root: Path
    layout: Layout


@dataclass(frozen=True)
class LabelledImages:
    """Labelled test images: good and defective, with masks for every defective one when has_masks."""

    name: str
    samples: tuple[Sample, ...]
    has_masks: bool


def read_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """RGB uint8 (H, W, 3); grey images are replicated to three channels. A file over `max_pixels` (from its header)
    is refused before it is decoded."""
    try:
        return read_image_file(path, max_pixels)
    except ImageFileError as exc:
        raise DatasetError(str(exc)) from None


def read_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray:
    """Boolean defect mask (H, W) of the sample's image; all False for a good image."""
    if sample.mask_path is None:
        if sample.label:
            raise DatasetError(f"no ground-truth mask known for defective image {sample.path}")
        return np.zeros(shape, dtype=bool)
    try:  # its image passed the limit: a mask is never larger, so the image's size (or the default) bounds it
        mask = read_image_file(sample.mask_path, max(MAX_IMAGE_PIXELS, shape[0] * shape[1]), grey=True)
    except ImageFileError as exc:
        raise DatasetError(f"mask: {exc}") from None
    if mask.shape != shape:
        raise DatasetError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {sample.path} is "
            f"{shape[1]}x{shape[0]}"
        )
    return mask > 0


def image_files(folder: Path, source: str) -> list[Path]:
    """The image files under `folder`; a missing folder, a file, an empty folder or one without images is an error
    naming `source` (the flag or setting that named it) and the path."""
    if not folder.exists():
        raise DatasetError(f"{source}: no such folder {located(folder)}")
    if not folder.is_dir():
        raise DatasetError(f"{source}: {folder} is a file; give a folder of images")
    paths = images_under(folder)
    if not paths:
        what = "is empty" if not any(folder.iterdir()) else f"holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        raise DatasetError(f"{source}: folder {folder} {what}")
    return paths


def image_paths(paths: Sequence[Path], source: str) -> list[Path]:
    """Files as given and folders expanded to their images (predict's PATH...), in the order given."""
    out: list[Path] = []
    for path in paths:
        if path.is_file():
            out.append(path)
        elif path.exists():
            out.extend(image_files(path, source))
        else:
            raise DatasetError(f"{source}: no such file or folder {located(path)}")
    return out


def good_folder(folder: Path, source: str) -> GoodFolder:
    return GoodFolder(tuple(image_files(folder, source)), folder.resolve(), Layout.FOLDER)


def _mask_of(image: Path, images: Path, masks: Path, source: str) -> Path:
    rel = image.relative_to(images)
    candidates = [masks / rel.parent / name.format(stem=rel.stem) for name in MASK_NAMES]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise DatasetError(f"{source}: defective image {image} has no mask {' or '.join(map(str, candidates))}")
    return found


def labelled_images(folder: Path, source: str, masks: Path | None = None, masks_source: str = "") -> list[Sample]:
    """The images under `folder` labelled by their first subfolder (a subfolder `good` holds good ones, images
    directly in `folder` are defects); with `masks`, the mask of each defective one, at the same relative place."""
    if masks is not None:
        image_files(masks, masks_source)  # a wrong masks folder is named as such, not as a missing mask
    samples = []
    for path in image_files(folder, source):
        rel = path.relative_to(folder)
        defect = rel.parts[0] if len(rel.parts) > 1 else LOOSE_DEFECT
        mask = None
        if defect != GOOD and masks is not None:
            mask = _mask_of(path, folder, masks, masks_source)
        samples.append(Sample(path, defect, mask))
    return samples


def folder_test_set(good: Path, defects: Path, masks: Path | None = None) -> LabelledImages:
    """eval's --good, --defects and --masks folders as a test set."""
    samples = [Sample(p, GOOD, None) for p in image_files(good, "--good")]
    samples += labelled_images(defects, "--defects", masks, "--masks")
    return LabelledImages(f"{good.resolve().name} / {defects.resolve().name}", tuple(samples), masks is not None)
