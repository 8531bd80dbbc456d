"""runtime.quantise: NNCF on a small network converted as the scoring graphs are, its activation ranges from the
calibration images' extremes (ACTIVATION_RANGES: a defect's features lie beyond the average good image's)."""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov
import pytest
import torch

from stream_ad.runtime.accelerate import to_openvino
from stream_ad.runtime.openvino import compile_for_cpu
from stream_ad.runtime.quantise import Quantised, quantise_int8

SIDE = 16  # the network's input; quantise_int8 is told a far larger input size, so no convolution is kept float32


class Wrapped(torch.nn.Module):
    """A network as a submodule: the converter names its ops as it names the scoring graphs' networks."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    """Four images in [0, 1], one of them ten times brighter: its extremes are not the average image's."""
    images = np.random.default_rng(0).random((4, 3, SIDE, SIDE), dtype=np.float32)
    images[0] *= 10.0
    return images


@pytest.fixture(scope="module")
def graphs(calibration: np.ndarray) -> tuple[Any, Quantised]:
    """The float32 graph and its INT8 quantisation on `calibration`."""
    fp32 = to_openvino(Wrapped().eval(), SIDE)
    return fp32, quantise_int8(fp32, calibration, input_size=224)


def input_range(model: Any) -> tuple[float, float]:
    """input_low and input_high of the FakeQuantize on the graph's input (the first convolution's activation)."""
    fq = next(op for op in model.get_ops()
              if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() == "Parameter")
    low, high = (float(fq.input_value(i).get_node().get_data().min()) for i in (1, 2))
    return low, high


def test_activation_ranges_cover_every_calibration_image(graphs: tuple[Any, Quantised],
                                                          calibration: np.ndarray) -> None:
    quantised = graphs[1]
    assert quantised.fake_quantize > 0
    low, high = input_range(quantised.model)
    # The brightest image's highest value, not the mean of the images' highest values (about 3.3 here).
    assert high == pytest.approx(float(calibration.max()), rel=0.02) and low <= float(calibration.min()) + 0.02


def test_the_quantised_graph_computes_what_float32_computes(graphs: tuple[Any, Quantised],
                                                            calibration: np.ndarray) -> None:
    fp32, quantised = graphs
    want, got = (compile_for_cpu(m, 1).create_infer_request().infer({0: calibration})[0]
                 for m in (fp32, quantised.model))
    assert not np.array_equal(got, want)  # really run in INT8
    np.testing.assert_allclose(got, want, atol=0.05 * float(np.abs(want).max()))


def test_every_layer_s_weights_keep_to_7_bits(graphs: tuple[Any, Quantised]) -> None:
    """NNCF's overflow fix on every layer (WEIGHTS): without VNNI, a CPU sums pairs of u8 x s8 products in
    saturating 16 bits, and 255 x 127 x 2 overflows it; on such a CPU 8-bit weights past the first layer moved the
    INT8 scores by a median 5 % instead of under 1 %."""
    weights = [op.get_data() for op in graphs[1].model.get_ops()
               if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    assert len(weights) == 2  # both convolutions, the second not the first layer
    largest = [int(np.abs(w).max()) for w in weights]
    assert all(2 * 255 * m <= 2**15 - 1 for m in largest), largest  # a pair of products fits int16
