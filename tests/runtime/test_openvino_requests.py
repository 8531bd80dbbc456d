"""Requests: one compiled model's pool of infer requests, called from several threads at once (the infer stage runs
batches side by side), gives each caller its own batch's results."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stream_ad.runtime.openvino import Requests, compile_for_cpu

ov = pytest.importorskip("openvino")


def _model() -> object:
    """x (N, 64) -> (x @ W (N, 64), its row sums (N,)): enough work per call that calls overlap."""
    from openvino import opset13 as ops

    weights = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    x = ops.parameter(ov.PartialShape([-1, 64]), ov.Type.f32, name="x")
    product = ops.matmul(x, ops.constant(weights), False, False)
    sums = ops.reduce_sum(product, ops.constant(np.array([1], np.int64)), keep_dims=False)
    return ov.Model([product, sums], [x], "rows"), weights


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_threads_sharing_the_requests_each_get_their_own_batch(streams: int) -> None:
    model, weights = _model()
    compiled = compile_for_cpu(model, threads=2, streams=streams)
    requests = Requests(compiled, streams)
    outputs = list(compiled.outputs)
    rng = np.random.default_rng(1)
    # Batch sizes from 1 to 7: single calls, calls split across the free requests, and more calls than requests.
    batches = [rng.standard_normal((1 + i % 7, 64)).astype(np.float32) for i in range(120)]

    def run(x: np.ndarray) -> list[np.ndarray]:
        return requests.run_batch(x, outputs, most=2)

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, batches))
    for x, (product, sums) in zip(batches, got):
        want = x @ weights
        np.testing.assert_allclose(product, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(sums, want.sum(axis=1), rtol=1e-4, atol=1e-3)
    assert requests._free.qsize() == streams  # every request back in the pool


def test_a_failed_call_returns_its_requests_to_the_pool() -> None:
    model, _ = _model()
    compiled = compile_for_cpu(model, threads=2, streams=2)
    requests = Requests(compiled, 2)
    with pytest.raises(Exception):  # noqa: B017 - OpenVINO's own error type for a wrong input shape
        requests.run_batch(np.zeros((4, 63), np.float32), list(compiled.outputs))
    assert requests._free.qsize() == 2
    assert requests.run_batch(np.ones((4, 64), np.float32), list(compiled.outputs))[0].shape == (4, 64)


def test_a_profiled_compile_times_each_layer_of_the_graph_at_its_static_batch() -> None:
    """What benchmarks.line's breakdown reads: the graph compiled as the line compiles it (one image a call), with
    per-layer counters; without `profile` the counters stay at zero."""
    model, _ = _model()
    x = np.ones((1, 64), np.float32)
    layer_seconds = {}
    for profile in (True, False):
        compiled = compile_for_cpu(model, threads=1, batch=1, profile=profile)
        assert compiled.input(0).get_partial_shape().is_static
        request = compiled.create_infer_request()
        request.infer({0: x})
        layer_seconds[profile] = sum(i.real_time.total_seconds() for i in request.get_profiling_info())
    assert layer_seconds[True] > 0.0 and layer_seconds[False] == 0.0


@pytest.mark.parametrize("streams", [1, 2])
def test_a_compiled_model_leaves_its_threads_unpinned(streams: int) -> None:
    """Pinned, each process's threads went to cores it chose alone: two infer processes on one core, another idle."""
    model, _ = _model()
    compiled = compile_for_cpu(model, threads=1, streams=streams)
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
