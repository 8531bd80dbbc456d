"""`python -m benchmarks.strip_set OUT --category DIR`: a set of frames far from square (default 500 x 1250, h x w) in
the MVTec AD layout, built from one category with masks (magnetic_tile, say), for the side-by-side on strip-shaped
frames (`python -m benchmarks patchcore` with data.root OUT).

Two layouts:
- stack (default): CELLS images side by side along the long edge, each resized to its cell. train/good: frames of
  random train/good images; test/good: frames of random test/good images; test/<defect>: one frame per defective
  image, that image in a random cell among test/good ones, its mask placed likewise in ground_truth/<defect>/.
- stretch: every image (and mask) stretched to the whole frame, one frame per source image.
Masks are resized with nearest neighbour, so they stay 0/255. Deterministic for a seed; writes only under OUT.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from benchmarks.tile_set import write
from stream_ad.data import MVTecCategory, Sample, read_image, read_mask


def fit(image: np.ndarray, h: int, w: int, mask: bool = False) -> np.ndarray:
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST if mask else cv2.INTER_AREA)


class Strips:
    def __init__(self, height: int, width: int, cells: int, rng: np.random.Generator) -> None:
        self.height, self.width, self.cells, self.rng = height, width, cells, rng
        self.wide = width >= height
        long_edge = width if self.wide else height
        if long_edge % cells:
            raise ValueError(f"{cells} cells do not divide the long edge ({long_edge} px)")
        self.cell = (height, width // cells) if self.wide else (height // cells, width)

    def join(self, cells: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(cells, axis=1 if self.wide else 0)

    def good(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [fit(images[i], *self.cell) for i in self.rng.integers(len(images), size=self.cells)]

    def defect(self, image: np.ndarray, mask: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`image` in a random cell among `others` (good images), and its mask at the same place."""
        cells, masks = self.good(others), [np.zeros(self.cell, dtype=np.uint8) for _ in range(self.cells)]
        k = int(self.rng.integers(self.cells))
        cells[k], masks[k] = fit(image, *self.cell), fit(mask, *self.cell, mask=True)
        return self.join(cells), self.join(masks)


def build(category: Path, out: Path, layout: str, height: int, width: int, cells: int, train: int, test_good: int,
          seed: int) -> None:
    source = MVTecCategory(category)
    tests = source.labelled_images().samples
    if layout == "stretch":
        for sample in source.train():
            write(out / "train" / "good" / f"{sample.path.stem}.png", fit(read_image(sample.path), height, width))
        for sample in tests:
            image = read_image(sample.path)
            write(out / "test" / sample.defect / f"{sample.path.stem}.png", fit(image, height, width))
            if sample.label:
                write_mask(out, sample, fit(as_uint8(sample, image), height, width, mask=True))
        return
    strips = Strips(height, width, cells, np.random.default_rng(seed))
    train_images = [read_image(s.path) for s in source.train()]
    good_images = [read_image(s.path) for s in tests if not s.label]
    for i in range(train):
        write(out / "train" / "good" / f"{i:04d}.png", strips.join(strips.good(train_images)))
    for i in range(test_good):
        write(out / "test" / "good" / f"{i:04d}.png", strips.join(strips.good(good_images)))
    for sample in (s for s in tests if s.label):
        image = read_image(sample.path)
        frame, mask = strips.defect(image, as_uint8(sample, image), good_images)
        write(out / "test" / sample.defect / f"{sample.path.stem}.png", frame)
        write_mask(out, sample, mask)


def as_uint8(sample: Sample, image: np.ndarray) -> np.ndarray:
    return read_mask(sample, image.shape[:2]).astype(np.uint8) * 255


def write_mask(out: Path, sample: Sample, mask: np.ndarray) -> None:
    write(out / "ground_truth" / sample.defect / f"{sample.path.stem}_mask.png", mask)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.strip_set", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the new category folder (outside the repository, e.g. /tmp/...)")
    parser.add_argument("--category", type=Path, required=True, help="a category folder with masks (MVTec AD layout)")
    parser.add_argument("--layout", choices=("stack", "stretch"), default="stack")
    parser.add_argument("--height", type=int, default=500)
    parser.add_argument("--width", type=int, default=1250)
    parser.add_argument("--cells", type=int, default=5, help="images per frame along the long edge (stack; 5)")
    parser.add_argument("--train", type=int, default=200, help="train/good frames (stack; default 200)")
    parser.add_argument("--test-good", type=int, default=64, help="test/good frames (stack; default 64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.category, args.out, args.layout, args.height, args.width, args.cells, args.train, args.test_good,
          args.seed)
    print(f"{args.out}: {args.layout} frames of {args.height} x {args.width} (h x w) from {args.category}")


if __name__ == "__main__":
    main()
