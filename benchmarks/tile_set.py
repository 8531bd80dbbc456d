"""`python -m benchmarks.tile_set OUT`: a 640 x 640 tile-mode measurement set in the MVTec AD layout, built from one
PIPED category (128 x 128 images) as 5 x 5 mosaics.

Each mosaic cell is an image of the category under a random one of the 8 rotations/flips (train and test alike, so
orientation alone is no anomaly). train/good: mosaics of train/good images (default 400: the fit's default 25 %
calibration hold-out leaves 300 to fit on). test/good: mosaics of test/good images. test/defect: one mosaic per
defective image, that image in a random cell among test/good ones, and its mask placed likewise in
ground_truth/defect/<stem>_mask.png. Defects then cover a few tens of pixels of a 640 x 640 frame, as on the boards
tile mode is for. Deterministic for a seed; writes only under OUT.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stream_ad.data import MVTecCategory, Sample, read_image, read_mask

GRID = 5


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 rotations/flips of a square image: k in 0..7."""
    turned = np.rot90(image, k % 4)
    return np.ascontiguousarray(turned[:, ::-1] if k >= 4 else turned)


def mosaic(cells: list[np.ndarray]) -> np.ndarray:
    rows = [np.concatenate(cells[r * GRID : (r + 1) * GRID], axis=1) for r in range(GRID)]
    return np.concatenate(rows, axis=0)


def good_mosaic(images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """GRID x GRID cells drawn from `images`, each under a random rotation/flip."""
    picks = rng.integers(len(images), size=GRID * GRID)
    return [dihedral(images[i], int(k)) for i, k in zip(picks, rng.integers(8, size=GRID * GRID))]


def write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image):
        raise OSError(f"could not write {path}")


def build(category: Path, out: Path, train: int, test_good: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    source = MVTecCategory(category)
    train_images = [read_image(s.path) for s in source.train()]
    tests = source.labelled_images().samples
    good_images = [read_image(s.path) for s in tests if not s.label]
    for i in range(train):
        write(out / "train" / "good" / f"{i:04d}.png", mosaic(good_mosaic(train_images, rng)))
    for i in range(test_good):
        write(out / "test" / "good" / f"{i:04d}.png", mosaic(good_mosaic(good_images, rng)))
    for i, sample in enumerate(s for s in tests if s.label):
        write_defect(out, f"{i:04d}", sample, good_mosaic(good_images, rng), rng)


def write_defect(out: Path, stem: str, sample: Sample, cells: list[np.ndarray], rng: np.random.Generator) -> None:
    """The defective image in a random cell of `cells`, and its mask at the same place of an empty mosaic."""
    image = read_image(sample.path)
    mask = read_mask(sample, image.shape[:2]).astype(np.uint8) * 255
    cell, k = int(rng.integers(GRID * GRID)), int(rng.integers(8))
    cells[cell] = dihedral(image, k)
    masks = [np.zeros(image.shape[:2], dtype=np.uint8) for _ in range(GRID * GRID)]
    masks[cell] = dihedral(mask, k)
    write(out / "test" / "defect" / f"{stem}.png", mosaic(cells))
    write(out / "ground_truth" / "defect" / f"{stem}_mask.png", mosaic(masks))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tile_set", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the new category folder (outside the repository, e.g. /tmp/...)")
    parser.add_argument("--category", type=Path, required=True, help="a PIPED category folder (MVTec AD layout)")
    parser.add_argument("--train", type=int, default=400, help="train/good mosaics (default 400)")
    parser.add_argument("--test-good", type=int, default=32, help="test/good mosaics (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.category, args.out, args.train, args.test_good, args.seed)
    print(f"{args.out}: {args.train} train/good, {args.test_good} test/good, defects as in {args.category}/test")


if __name__ == "__main__":
    main()
