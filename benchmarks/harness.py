"""The measuring side of the bench: one system per child process, prepared, fitted and timed the same way.

A system turns a frame into its own input tensors (untimed, like a camera thread would), fits on good-image batches
(timed: feature extraction + coreset + whatever else it needs before it can score) and scores a batch into image
scores and anomaly maps at the input's size (timed: backbone forward, nearest-neighbour search, image score, map
upsampling and smoothing, and the copy of both to host memory). Maps go back to each frame's own size through
stream_ad's Preprocessor.to_frames for every system, untimed, so pixel metrics compare like with like.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from stream_ad.data import Prepared, Preprocessor, read_image
from stream_ad.model import AnomalyModel
from stream_ad.settings import Settings

log = logging.getLogger(__name__)

ScoreFn = Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]


class BenchSystem(Protocol):
    geometry: Preprocessor  # maps scores back to frames (to_frames); also what prepare() placed where

    def prepare(self, frame: np.ndarray) -> Prepared: ...

    def fit(self, batches: list[torch.Tensor]) -> int | None:
        """Fit on good images; returns the memory bank's size (None if the method has none)."""

    def score(self, inputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, S, S) -> image scores (B,) and maps (B, S, S), both in host memory."""


class StreamAdSystem:
    """stream_ad as the product runs it (AnomalyModel, any method), with file decoding moved out of the timed part."""

    def __init__(self, settings: Settings) -> None:
        self.model = AnomalyModel(settings)
        self.geometry = self.model.preprocessor

    def prepare(self, frame: np.ndarray) -> Prepared:
        return self.geometry([frame])

    def fit(self, batches: list[torch.Tensor]) -> int | None:
        self.model.scorer.fit(batches)
        bank = self.model.scorer.state_tensors().get("memory_bank")
        return None if bank is None else int(bank.shape[0])

    def score(self, inputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = self.model.scorer.score(inputs)
        return out.image.float().cpu().numpy(), out.maps.float().cpu().numpy()


@dataclass(frozen=True)
class Job:
    """What one child measures. Settings travel pickled: re-validating them would re-read STREAM_AD_* variables."""

    system: str  # "stream_ad", "anomalib" or "anomalib_openvino"
    settings: Settings
    train: list[Path]
    test: list[Path]
    batch_sizes: tuple[int, ...]
    out: Path  # .npz with scores, maps and the figures


def build_system(name: str, settings: Settings) -> BenchSystem:
    if name == "stream_ad":
        return StreamAdSystem(settings)
    if name == "anomalib":
        from benchmarks.anomalib_peer import AnomalibPatchCore  # the only place anomalib gets imported

        return AnomalibPatchCore(settings)
    if name == "anomalib_openvino":
        from benchmarks.anomalib_openvino import AnomalibOpenVino

        return AnomalibOpenVino(settings)
    raise ValueError(f"unknown bench system {name!r}")


def timed_scoring(
    score: ScoreFn, inputs: Sequence[torch.Tensor], batch_size: int
) -> Iterator[tuple[int, float, np.ndarray, np.ndarray]]:
    """Score `inputs` (one tensor per image) `batch_size` images at a time.

    Yields (index of the batch's first image, seconds, scores, maps); only the `score` call is timed. Batches are
    stacked before the pass: a copy between timed calls leaves torch's OpenMP threads spinning into the next call,
    which costs a system with its own thread pool (OpenVINO) ~3 ms per call on 2 cores (measured).
    """
    starts = range(0, len(inputs), batch_size)
    batches = [torch.cat(list(inputs[start : start + batch_size])) for start in starts]
    score(batches[0])  # warm-up: the first call at a size allocates and picks kernels
    for start, batch in zip(starts, batches):
        t0 = time.perf_counter()
        scores, maps = score(batch)
        yield start, time.perf_counter() - t0, scores, maps


def _per_image(prepared: Sequence[Prepared], values: np.ndarray) -> list[np.ndarray]:
    """Split a batch's rows back into each image's rows (an image is several rows in tile mode)."""
    counts = [p.inputs.shape[0] for p in prepared]
    return np.split(values, np.cumsum(counts)[:-1])


def measure(
    system: BenchSystem, test: list[Prepared], batch_sizes: Sequence[int]
) -> tuple[dict[str, list[float]], np.ndarray, list[np.ndarray]]:
    """Per-batch seconds at each batch size, and the first pass's image scores and maps at frame size.

    Maps go back to frame size only after every timed pass: torch work between timed calls leaves its OpenMP threads
    spinning, and they would steal the cores from the next call of a system with its own thread pool (OpenVINO).
    """
    seconds: dict[str, list[float]] = {}
    first_pass: list[tuple[int, np.ndarray, np.ndarray]] = []
    for n, batch_size in enumerate(batch_sizes):
        times = seconds.setdefault(str(batch_size), [])
        for start, dt, s, m in timed_scoring(system.score, [p.inputs for p in test], batch_size):
            times.append(dt)
            if n == 0:  # every pass scores the same images; one copy of the results is enough
                first_pass.append((start, s, m))
    scores: list[float] = []
    maps: list[np.ndarray] = []
    for start, s, m in first_pass:
        chunk = test[start : start + batch_sizes[0]]
        for p, ps, pm in zip(chunk, _per_image(chunk, s), _per_image(chunk, m)):
            frame_score, frame_map = system.geometry.to_frames(p, ps, pm)
            scores.append(float(frame_score[0]))
            maps.append(frame_map[0])
    return seconds, np.asarray(scores, dtype=np.float64), maps


def _fit_batches(system: BenchSystem, paths: Sequence[Path], batch_size: int) -> list[torch.Tensor]:
    # Concatenated batch by batch, so the per-image tensors and the batches never both exist in full.
    return [
        torch.cat([system.prepare(read_image(p)).inputs for p in paths[i : i + batch_size]])
        for i in range(0, len(paths), batch_size)
    ]


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM).

    Not getrusage's ru_maxrss: Linux carries the pre-exec high-water mark over execve, so a spawned child's
    ru_maxrss starts at its parent's RSS at fork time (measured: a 2 GB parent gives a 32 MB child 1.9 GB).
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line: peak RSS is measured on Linux only")


def run_job(job: Job) -> None:
    """Child process entry: measure one system and write its results to job.out."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = job.settings
    if settings.runtime.threads:
        torch.set_num_threads(settings.runtime.threads)
    system = build_system(job.system, settings)
    fit_batches = _fit_batches(system, job.train, settings.runtime.batch_size)
    test = [system.prepare(read_image(p)) for p in job.test]
    rss_before_fit = peak_rss_mb()

    torch.manual_seed(settings.runtime.seed)
    np.random.seed(settings.runtime.seed)  # anomalib's random projection draws from numpy's global generator
    log.info("%s: fitting on %d images", job.system, len(job.train))
    t0 = time.perf_counter()
    memory_bank = system.fit(fit_batches)
    fit_seconds = time.perf_counter() - t0
    del fit_batches

    log.info("%s: scoring %d images at batch sizes %s", job.system, len(test), list(job.batch_sizes))
    seconds, scores, maps = measure(system, test, job.batch_sizes)
    figures: dict[str, Any] = {
        "fit_s": fit_seconds,
        "memory_bank": memory_bank,
        "batch_seconds": seconds,
        "rss_before_fit_mb": rss_before_fit,
        "peak_rss_mb": peak_rss_mb(),
    }
    np.savez(
        job.out,
        scores=scores,
        maps=np.concatenate([m.ravel() for m in maps]),
        shapes=np.asarray([m.shape for m in maps]),
        figures=np.asarray(json.dumps(figures)),
    )


def read_results(path: Path) -> tuple[dict[str, Any], np.ndarray, list[np.ndarray]]:
    """What run_job wrote: figures, image scores and maps at each frame's size."""
    with np.load(path) as data:
        shapes = [tuple(int(v) for v in s) for s in data["shapes"]]
        flat = data["maps"]
        ends = np.cumsum([h * w for h, w in shapes])
        maps = [flat[e - h * w : e].reshape(h, w) for e, (h, w) in zip(ends, shapes)]
        return json.loads(str(data["figures"])), data["scores"], maps
