"""Image files -> preprocessed batches, for fitting and for scoring files."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch

from stream_ad.data.folders import read_image
from stream_ad.data.preprocess import Preprocessor


class ImageBatches:
    """Image files -> preprocessed batches, decoded by a small thread pool (OpenCV releases the GIL)."""

    def __init__(self, paths: Sequence[Path], preprocessor: Preprocessor, batch_size: int, max_pixels: int) -> None:
        self.paths = list(paths)
        self.preprocessor = preprocessor
        self.batch_size = batch_size
        self.read = partial(read_image, max_pixels=max_pixels)

    def __len__(self) -> int:
        return (len(self.paths) + self.batch_size - 1) // self.batch_size

    def frames(self) -> Iterator[list[np.ndarray]]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for start in range(0, len(self.paths), self.batch_size):
                yield list(pool.map(self.read, self.paths[start : start + self.batch_size]))

    def __iter__(self) -> Iterator[torch.Tensor]:
        for frames in self.frames():
            yield self.preprocessor(frames).inputs
