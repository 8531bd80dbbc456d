"""INT8 post-training quantisation of an exported scoring graph with NNCF, calibrated on good images
(`stream-ad export --int8`). The line PC only runs the result: nncf is needed where the export runs, never on the line.

With Int8Scope.ALL (`--int8`) the networks' convolutions are quantised, but not all of them, and a nearest-neighbour
search's matmul where the graph rechecks what it picks in float32; the rest stays float32 (KEPT_FP32 says which).
With Int8Scope.SEARCH (`--int8 search`) the search matmul alone. Measured on the PIPED categories (224 px,
MobileNetV2, PatchCore): quantising everything NNCF would (the distance matmul whose result was the distance, the
softmax, the map's interpolation) or every convolution moved the scores by a median 15 % and cost up to 0.038 image
AUROC; keeping the scorer's math, the depthwise convolutions and the first full-resolution ones in float32, with
NNCF's mixed preset (asymmetric activations), moved them by under 1 %.

Weights keep to 7 of their 8 bits on every layer (NNCF's overflow fix; its default fixes the first layer only; WEIGHTS).
A CPU without VNNI (AVX2 alone, as on many line PCs) multiplies u8 activations by s8 weights and adds each
pair of products in saturating 16 bits, which 2 x 255 x 127 overflows: there, with 8-bit weights, INT8 scores moved
from float32's by a median 2.9-5.2 % instead of 0.3-0.7 % on a VNNI CPU, so a threshold set again on one CPU would not
hold on the other. With 7 bits the graph computes the same on both, and the convolutions on inputs of a quarter of the
input's side (LARGE_INPUT; half before) stay float32 to win back the precision: on an AVX2-only AMD EPYC, 7-bit
weights with the half-side rule lost 0.0091 image AUROC on PA_BRG03_TL (full bias correction 0.035), the quarter-side
rule at most 0.0039 (PA_FVN01_TL), scores a median 0.31-0.54 % from float32's (`python -m benchmarks int8-accuracy`).

PatchCore's search matmul (4.0 of its 7.3 ms an image in float32, one core) only picks candidates, a few per patch,
whose distances the graph recomputes in float32 (patchcore.graph.ScoringGraph): quantised, it takes 1.6 ms with the
picking, and a patch's distance is always its distance to a real bank item, exact where the nearest item is among
the candidates and never below it elsewhere. The search alone quantised (the networks in float32, so scores and maps
are float32's but for the patches whose nearest item the candidates miss), the whole path took 2.4 ms an image
against 3.9 in float32 and 2.0 with the networks quantised too (the demo model's graphs timed side by side, 2
threads, batch 1).

Each activation's range is the lowest and highest value over all the calibration images (ACTIVATION_RANGES), not
NNCF's default, the mean over the images of each one's own extremes: that clips whatever lies beyond the average good
image, and a defect's features lie there. Measured with `python -m benchmarks int8-accuracy` (magnetic_tile and the 11
PIPED categories, PatchCore defaults, calibrated on each model's held-out good images): NNCF's default lost up to
0.0091 image AUROC (PA_BRG03_TL); these ranges keep every set within 0.004 of float32 (0.0039 at most, calibrated on
all the train images as well), at the same speed: the same ops are quantised (123.3 vs 123.2 images/s at batch 1, one
thread, magnetic_tile, side by side). Clipping more (mean quantiles) lost 0.039; the performance preset (symmetric
activations), keeping the last block or the taps' convolutions in float32, full bias correction, or more calibration
images alone each left some set 0.005-0.014 off.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class Int8Scope(StrEnum):
    """What `stream-ad export --int8 SCOPE` quantises."""

    ALL = "all"  # the networks' convolutions (but those KEPT_FP32 names) and a search matmul
    SEARCH = "search"  # a search matmul alone: scores and maps stay float32's but where its picks miss the nearest


KEPT_FP32 = {
    Int8Scope.ALL: "the scorer's math outside the networks (distances, softmax, pooling, the map) but for its search "
                   "matmul, depthwise convolutions and convolutions on inputs of at least a quarter of the input size",
    Int8Scope.SEARCH: "everything but the search matmul",
}
WEIGHTS = "7 of 8 bits on every layer (NNCF's overflow fix)"  # why: above
LARGE_INPUT = 0.25  # convolutions on inputs of at least this share of the input's side stay float32 (why: above)
ACTIVATION_RANGES = "min and max over the calibration images"  # NNCF's MINMAX range estimator (why: above)
NETWORK_PREFIX = "__module."  # how the OpenVINO converter names the ops of a module's submodules (the networks)


@dataclass(frozen=True)
class Quantised:
    model: Any  # the INT8 openvino.Model (FakeQuantize nodes the CPU plugin runs as int8)
    scope: Int8Scope
    kept_fp32: int  # ops the rule keeps in float32 (NNCF's ignored scope)
    fake_quantize: int  # quantised inputs

    def record(self, calibration: dict[str, Any]) -> dict[str, Any]:
        """What the runtime manifest says about the quantisation: tool, preset, what stayed float32, on what."""
        import nncf

        return {"tool": f"nncf {nncf.__version__}", "preset": "mixed", "weights": WEIGHTS,
                "activation_ranges": ACTIVATION_RANGES,
                "scope": self.scope.value, "kept_fp32": KEPT_FP32[self.scope],
                "kept_fp32_ops": self.kept_fp32, "fake_quantize_ops": self.fake_quantize, "calibration": calibration}


def _input_side(op: Any) -> int | None:
    shape = op.get_input_partial_shape(0)
    return shape[2].get_length() if shape.rank.is_static and shape[2].is_static else None


def _searches(op: Any, search_constants: Collection[str]) -> bool:
    """Whether `op` is a MatMul against one of `search_constants` (by the converter's names)."""
    return op.get_type_name() == "MatMul" and any(
        port.get_source_output().get_node().get_friendly_name() in search_constants for port in op.inputs())


def fp32_ops(ov_model: Any, input_size: int, scope: Int8Scope = Int8Scope.ALL,
             search_constants: Collection[str] = ()) -> list[str]:
    """The names of the ops KEPT_FP32[scope] keeps in float32; a MatMul against one of `search_constants` is
    quantised (Scorer.int8_search_constants)."""
    kept = []
    for op in ov_model.get_ops():
        name, kind = op.get_friendly_name(), op.get_type_name()
        side = _input_side(op) if kind == "Convolution" else None
        if _searches(op, search_constants):
            continue
        if (scope is Int8Scope.SEARCH or not name.startswith(NETWORK_PREFIX) or kind == "GroupConvolution"
                or (side is not None and side >= LARGE_INPUT * input_size)):
            kept.append(name)
    return kept


def quantise_int8(ov_model: Any, inputs: np.ndarray, input_size: int, scope: Int8Scope = Int8Scope.ALL,
                  search_constants: Collection[str] = ()) -> Quantised:
    """`ov_model` (one input, (B, 3, S, S) float32) quantised to INT8 within `scope`, calibrated on `inputs`
    (N, 3, S, S), each image one calibration sample, the MatMuls against `search_constants` quantised in either
    scope. `ov_model` itself is left as it was."""
    import nncf
    from nncf.common.logging import nncf_logger
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # NNCF logs a line per op it leaves unquantised at INFO (hundreds): its warnings are what an operator needs.
    nncf_logger.setLevel(logging.WARNING)
    kept = fp32_ops(ov_model, input_size, scope, search_constants)
    data = nncf.Dataset([np.ascontiguousarray(x[None], np.float32) for x in inputs])
    model = nncf.quantize(ov_model.clone(), data, preset=nncf.QuantizationPreset.MIXED,
                          target_device=nncf.TargetDevice.CPU, subset_size=len(inputs),
                          ignored_scope=nncf.IgnoredScope(names=kept, validate=False),
                          advanced_parameters=AdvancedQuantizationParameters(
                              overflow_fix=OverflowFix.ENABLE,
                              activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX))
    fq = sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return Quantised(model, scope, len(kept), fq)
