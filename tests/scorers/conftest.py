"""What the scorers' tests share: one torch thread for small networks, and identical predictions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from stream_ad.geometry import FramePrediction


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small networks gain nothing from a second thread, and on a shared 2-core machine it costs a lot of waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_predictions(got: FramePrediction, want: FramePrediction) -> None:
    """The same scores and maps, bit for bit, frame by frame."""
    np.testing.assert_array_equal(got.scores, want.scores)
    for g, w in zip(got.maps, want.maps, strict=True):
        np.testing.assert_array_equal(g, w)
