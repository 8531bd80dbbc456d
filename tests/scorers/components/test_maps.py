"""anomaly_maps: per-position scores to maps as one matrix per axis, equal to upsampling then blurring, and held as
constants in a converted graph."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stream_ad.scorers.components.blur import gaussian_blur
from stream_ad.scorers.components.maps import anomaly_maps


def upsampled_then_blurred(scores: torch.Tensor, grid: tuple[int, int, int], out_size: tuple[int, int],
                           sigma: float) -> torch.Tensor:
    b, h, w = grid
    up = F.interpolate(scores.view(b, 1, h, w), size=out_size, mode="bilinear", align_corners=False)
    return gaussian_blur(up, sigma)[:, 0]


@pytest.mark.parametrize(("grid", "out_size", "sigma"), [
    ((2, 28, 28), (224, 224), 4.0),  # PatchCore at 224 px
    ((1, 16, 40), (128, 320), 4.0),  # a strip
    ((3, 7, 5), (7, 5), 4.0),  # no upsampling; the radius clamped to the map
    ((1, 28, 28), (224, 224), 0.0),  # no blur
    ((2, 4, 4), (32, 3), 2.0),  # a map narrower than its grid
    ((1, 80, 80), (640, 640), 4.0),
])
def test_maps_equal_upsampling_then_blurring(grid: tuple[int, int, int], out_size: tuple[int, int],
                                             sigma: float) -> None:
    scores = torch.rand(grid[0], grid[1] * grid[2], generator=torch.Generator().manual_seed(0)) * 5
    want = upsampled_then_blurred(scores, grid, out_size, sigma)
    got = anomaly_maps(scores, grid, out_size, sigma)
    assert got.shape == want.shape == (grid[0], *out_size)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


class Pooled(nn.Module):
    """Input (B, 3, 64, 64) -> a (B, 8 x 8) score grid -> maps: anomaly_maps inside a traced graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = F.avg_pool2d(x.mean(dim=1, keepdim=True), 8)
        return anomaly_maps(scores.flatten(1), (x.shape[0], 8, 8), (64, 64), 4.0)


def test_a_converted_graph_holds_the_operators_as_constants() -> None:
    """Traced twice by the converter (its check), cached once: the graph must still convert, and compute the maps
    as two matmuls with constants, not by interpolating and convolving on every call."""
    pytest.importorskip("openvino")
    import openvino as ov

    from stream_ad.runtime.accelerate import to_openvino

    model = to_openvino(Pooled(), 64)
    kinds = {op.get_type_name() for op in model.get_ops()}
    assert not kinds & {"Interpolate", "Convolution", "Pad", "Eye"}, kinds
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    # f32 asked for: on CPUs with AVX512_BF16 OpenVINO would otherwise compute in bf16.
    got = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x.numpy())[0]
    torch.testing.assert_close(torch.from_numpy(got), Pooled()(x), rtol=1e-5, atol=1e-6)
