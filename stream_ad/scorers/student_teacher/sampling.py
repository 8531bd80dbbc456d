"""The good images both methods train on: the validation split for score normalisation, crops, minibatches.

Randomness inside an epoch comes from torch's global generator, which the shared training loop seeds per phase and
saves in its checkpoints, so a resumed fit draws the same crops as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from stream_ad.settings import ConfigError


def split_validation(images: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation): every k-th image (k = round(1 / fraction)) validates, the rest train; deterministic and
    spread over the set (files come sorted, so a block at the end could be one batch of parts)."""
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 good images (training + validation for score normalisation), got {n}")
    step = max(2, round(1.0 / fraction))
    val = torch.zeros(n, dtype=torch.bool)
    val[step - 1 :: step] = True
    if not val.any():
        val[-1] = True
    return images[~val], images[val]


def crop_at(images: torch.Tensor, index: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, size, size): images[index[b], :, ys[b]:+size, xs[b]:+size]."""
    rows = ys[:, None] + torch.arange(size)  # (B, size)
    cols = xs[:, None] + torch.arange(size)
    picked = images[index]  # (B, 3, H, W)
    return picked[torch.arange(len(index))[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_positions(images: torch.Tensor, size: int, count: int, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`count` uniformly drawn (image index, top row, left column) of size x size crops."""
    n, _, h, w = images.shape
    index = torch.randint(n, (count,), generator=generator)
    ys = torch.randint(h - size + 1, (count,), generator=generator)
    xs = torch.randint(w - size + 1, (count,), generator=generator)
    return index, ys, xs


def random_crops(images: torch.Tensor, size: int, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return crop_at(images, *random_positions(images, size, count, generator), size)


def chunks(images: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, images.shape[0], size):
        yield images[start : start + size]


def check_input_size(what: str, needed: int, input_size: int) -> None:
    """A patch larger than the scorer's input cannot be placed on it: say which settings clash (a ConfigError, so
    the command line prints one line, not a traceback)."""
    if needed > input_size:
        raise ConfigError(
            f"{what} needs inputs of at least {needed} px but the scorer's input is {input_size} px "
            "(preprocess.image_size, or preprocess.tile_size in tile mode): raise the input size or pick smaller "
            "patches"
        )
