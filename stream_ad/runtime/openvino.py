"""OpenVINO as stream_ad uses it on a CPU, without torch: the telemetry opt-out, saving IR at full precision, and
compiling for the CPU. Shared by runtime.accelerate (which converts torch modules) and the torch-free line runtime
(stream_ad.line, which only loads and runs exported IR)."""

from __future__ import annotations

import contextlib
import logging
import queue
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def decline_openvino_telemetry() -> None:
    """Opt out of OpenVINO's usage telemetry, through its own consent file (~/intel/openvino_telemetry, what its
    `opt_in_out --opt_out` writes), before the converter first runs.

    Without a consent file the converter sends an event per conversion to Google Analytics, each from a process forked
    off the caller: a line PC must send nothing off the machine, and on one with no route out the forks wait out
    their timeouts, copy-on-write faulting the parent's pages meanwhile (measured: OpenVINO calls 5-7x slower for
    ~12 s after a conversion, 2-core CPU).
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # an OpenVINO without its telemetry package sends nothing
        return
    checker = OptInChecker()
    if checker.check(enable_opt_in_dialog=False) == ConsentCheckResult.DECLINED:
        return
    if checker.update_result(ConsentCheckResult.DECLINED):
        log.info("openvino: declined its usage telemetry in %s (nothing leaves this machine)", checker.consent_file())
    else:
        log.warning("openvino: could not write %s to decline its usage telemetry; run `opt_in_out --opt_out` as "
                    "this service's user", checker.consent_file())


def save_ir(model: Any, xml: Path) -> None:
    """An OpenVINO model as IR (`xml` and its .bin beside it), weights in float32: the default compress_to_fp16
    would halve their precision on disk."""
    import openvino as ov

    ov.save_model(model, xml, compress_to_fp16=False)


def compile_for_cpu(model: Any, threads: int, streams: int = 1, batch: int | None = None,
                    profile: bool = False) -> Any:
    """An OpenVINO model (or the path of its IR) compiled for the CPU at f32 with `threads` inference threads; with
    `batch`, for that static batch size (its other dimensions as they are): OpenVINO picks faster kernels for static
    shapes (PatchCore's argmin over the bank, a TopK: 2.5 ms over a dynamic number of patches, 0.49 ms over a static
    one, one core), so a graph called one image at a time is compiled for exactly that.

    One stream (the default) is tuned for latency: one request at a time, all threads on it. `streams` > 1 runs that
    many requests side by side (OpenVINO's CPU streams, at least a thread each): a batch split across them takes
    about 1/streams of the time on as many free cores, where the threads of one request scale far worse (2 threads
    on one 224 px PatchCore request cost 1.4x the CPU of 1 thread per image, 2-core CPU); Requests runs them.

    No OpenVINO CACHE_DIR: its compiled blobs would be files it loads unchecked, and compiling from checked IR takes
    ~0.06 s (PatchCore's whole graph, 2-core CPU). `profile`: with OpenVINO's per-layer counters (PERF_COUNT), for
    a benchmark to read where a call's time goes in the graph as it runs here."""
    decline_openvino_telemetry()
    import openvino as ov

    if batch is not None:
        # A clone (0.6 ms for PatchCore's graph): reshape works in place, and the caller's model keeps its shapes.
        model = ov.Core().read_model(model) if isinstance(model, (str, Path)) else model.clone()
        shape = model.input(0).get_partial_shape()
        model.reshape({model.input(0): ov.PartialShape([batch, *list(shape)[1:]])})
    # f32: CPUs with bf16 units would otherwise run bf16. No pinning: OpenVINO pins its inference threads to cores
    # chosen in each process alone, so the infer processes of a line PC (one per model) landed on the same core
    # while another idled (two single-thread PatchCore processes, 2 cores: 17-21 images/s each pinned, 35-40 not).
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": profile, "ENABLE_CPU_PINNING": False}
    if streams > 1:
        config |= {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": max(threads, streams)}
    else:
        config |= {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    return ov.Core().compile_model(model, "CPU", config)


class Requests:
    """Calls of a compiled model on a pool of `streams` infer requests, safe to use from several threads at once:
    one thread's batch split across the free requests, or as many threads' batches side by side."""

    def __init__(self, compiled: Any, streams: int = 1) -> None:
        self.streams = streams
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(streams):
            self._free.put(compiled.create_infer_request())

    def run_batch(self, x: np.ndarray, outputs: Sequence[Any], most: int = 0) -> list[np.ndarray]:
        """A batch (N >= 1, ...) -> each of `outputs` for all N: in calls of at most `most` images (0: any number), in
        as many calls as there are streams where N allows, run side by side on the requests free at the time."""
        size = -(-len(x) // min(self.streams, len(x)))
        if most:
            size = min(size, most)
        calls = self._run([x[start : start + size] for start in range(0, len(x), size)], outputs)
        return calls[0] if len(calls) == 1 else [np.concatenate(out) for out in zip(*calls)]

    def _run(self, calls: Sequence[np.ndarray], outputs: Sequence[Any]) -> list[list[np.ndarray]]:
        if len(calls) == 1:  # infer() returns copies of the outputs
            request = self._free.get()
            try:
                result = request.infer([np.ascontiguousarray(calls[0])])
            finally:
                self._free.put(request)
            return [[result[port] for port in outputs]]
        # Started and collected from this thread, no completion callbacks: Python code on OpenVINO's threads can
        # run the garbage collector there, and a compiled model freed from its own thread aborts the process.
        results: list[list[np.ndarray]] = []
        running: deque[Any] = deque()
        try:
            for x in calls:
                try:
                    request = self._free.get_nowait()
                except queue.Empty:
                    # None free: reuse this call's oldest (never wait on the pool holding requests, which would
                    # deadlock two threads each waiting for the other's), else wait for another thread's.
                    request = self._collect(running, outputs, results) if running else self._free.get()
                running.append(request)
                request.start_async([np.ascontiguousarray(x)])
            while running:
                self._free.put(self._collect(running, outputs, results))
        finally:
            while running:  # a call failed: the others' requests go back to the pool once idle
                request = running.popleft()
                with contextlib.suppress(Exception):
                    request.wait()
                self._free.put(request)
        return results

    def _collect(self, running: deque[Any], outputs: Sequence[Any], results: list[list[np.ndarray]]) -> Any:
        """Wait for the oldest running request, keep copies of its outputs, and return it (to the pool if it
        failed)."""
        request = running.popleft()
        try:
            request.wait()
            # results are views of the request's buffers, which its next call overwrites
            results.append([np.array(request.results[port], copy=True) for port in outputs])
        except BaseException:
            self._free.put(request)
            raise
        return request
