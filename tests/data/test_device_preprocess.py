"""Preprocessing as tensor operations (the GPU path), checked on CPU tensors against the CPU path: same geometry,
the same resampling (antialiased bilinear in float32), the same PatchCore verdicts; and on CUDA where there
is one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_ad.data import MVTecCategory, Preprocessor, read_image
from stream_ad.settings import PreprocessSettings
from tests.conftest import MAGNETIC_TILE

HALF = (0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Grey magnetic_tile frames of many sizes (shrunk and enlarged), and one frame twice (a same-shape group)."""
    test = MVTecCategory(MAGNETIC_TILE).test()[::50]
    images = [read_image(s.path) for s in test]
    return images + [images[0]]


@pytest.mark.parametrize("mode", ["resize", "letterbox", "tile", "aspect"])
def test_tensor_path_matches_cpu_path(frames: list[np.ndarray], mode: str) -> None:
    cfg = PreprocessSettings(mode=mode, image_size=96, tile_size=128)
    cpu = Preprocessor(cfg, HALF, HALF)(frames)
    tensors = Preprocessor(cfg, HALF, HALF, on_device=True)(frames)
    assert tensors.placements == cpu.placements and tensors.frame_shapes == cpu.frame_shapes
    assert tensors.inputs.shape == cpu.inputs.shape
    grey_levels = (tensors.inputs - cpu.inputs).abs() * 127.5  # mean/std 0.5: one unit is 127.5 grey levels
    # One filter in float32 on both paths: OpenCV's resampling, rounded, differed by 0.3-1 grey level on average.
    assert float(grey_levels.max()) < 0.01
    if mode == "resize":  # the repeated frame went through the batched same-shape path: identical rows
        assert torch.equal(tensors.inputs[-1], tensors.inputs[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: frames uploaded through pinned memory")
@pytest.mark.parametrize("mode", ["resize", "letterbox", "tile", "aspect"])
def test_cuda_preprocessing_matches_cpu_tensors(frames: list[np.ndarray], mode: str) -> None:
    cfg = PreprocessSettings(mode=mode, image_size=96, tile_size=128)
    want = Preprocessor(cfg, HALF, HALF, on_device=True)(frames)
    for _ in range(2):  # the second call reuses the pinned buffer
        got = Preprocessor(cfg, HALF, HALF, "cuda")(frames)
        assert got.inputs.device.type == "cuda" and got.placements == want.placements
        torch.testing.assert_close(got.inputs.cpu(), want.inputs, rtol=1e-4, atol=1e-3)
