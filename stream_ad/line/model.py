"""A runtime artefact as a line PC serves it, without torch: frames -> preprocessing (OpenCV and numpy, the fitting
path's own geometry code) -> one OpenVINO call per batch -> one score and map per frame.

The interface mirrors stream_ad.model.AnomalyModel's serving half (predict, score_prepared, preprocessor, device), so
the infer stage runs either the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from stream_ad.geometry import FramePrediction, Prepared, frame_scores, normalise, place_frames, to_frames
from stream_ad.line.artefact import OUTPUTS, Preprocessing, RuntimeManifest, read_graph, read_runtime_manifest
from stream_ad.runtime.cpu import this_cpu_has_int8_dot_product
from stream_ad.runtime.openvino import Requests, compile_for_cpu

log = logging.getLogger(__name__)


class LinePreprocessor:
    """Frames -> normalised (N, 3, S, S) float32 inputs with their placements, as the runtime artefact records the
    preprocessing: the fitting path's geometry code and its float32 normalisation, so the same values."""

    on_device = None  # never on a GPU: the infer stage gets inputs from the preprocess stage

    def __init__(self, pre: Preprocessing) -> None:
        self.geometry = pre.geometry
        self.mean255, self.std255 = pre.arrays()
        self.map_score_fraction = pre.map_score_fraction

    @property
    def scores_need_maps(self) -> bool:
        """Whether a frame's score is taken from its map (preprocess.map_score_fraction)."""
        return self.map_score_fraction is not None

    def to_frames(
        self, prepared: Prepared, image_scores: np.ndarray, maps: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Per-input scores and (S, S) maps -> per-frame score and map at the frame's size (geometry.to_frames)."""
        return to_frames(prepared, image_scores, maps, self.map_score_fraction)

    @property
    def input_size(self) -> int:
        return self.geometry.input_size

    def __call__(self, frames: Sequence[np.ndarray]) -> Prepared:
        pixels, prepared = place_frames(self.geometry, frames)
        prepared.inputs = normalise(pixels, self.mean255, self.std255)
        return prepared


class LineModel:
    device = "cpu"  # OpenVINO's CPU plugin

    def __init__(self, directory: Path, threads: int, streams: int = 1) -> None:
        """The runtime artefact in `directory`, checked, compiled for the CPU with `threads` inference threads on
        `streams` requests side by side (compile_for_cpu)."""
        import openvino as ov

        self.directory = directory
        self.manifest: RuntimeManifest = read_runtime_manifest(directory)
        xml, weights = read_graph(directory, self.manifest)
        # Compiled from the checked bytes themselves: no second read of the files to change in between.
        graph = ov.Core().read_model(model=xml, weights=ov.Tensor(np.frombuffer(weights, dtype=np.uint8)))
        # A graph that takes one image a call is compiled for that static shape (compile_for_cpu says why).
        self.images_per_call = int(self.manifest.graph.get("images_per_call", 0))
        self.compiled = compile_for_cpu(graph, threads, streams, 1 if self.images_per_call == 1 else None)
        self.requests = Requests(self.compiled, streams)
        self.outputs = [self.compiled.output(name) for name in OUTPUTS]
        self.preprocessor = LinePreprocessor(self.manifest.pre)
        if self.manifest.graph.get("precision") == "int8" and this_cpu_has_int8_dot_product() is False:
            log.warning("%s is an INT8 graph on a CPU without VNNI, where INT8 ran slower than float32 (README, "
                        "\"A line PC without torch\"): export without --int8 for this line PC", directory)

    def scores(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised inputs (N, 3, S, S) -> image scores (N,) and maps (N, S, S), in calls of images_per_call."""
        image, maps = self.requests.run_batch(np.asarray(inputs, np.float32), self.outputs, self.images_per_call)
        return image, maps

    def score_prepared(self, prepared: Prepared) -> FramePrediction:
        image, maps = self.scores(prepared.inputs)
        scores, frame_maps = self.preprocessor.to_frames(prepared, image, maps)
        return FramePrediction(scores, frame_maps)

    def score_frames(self, prepared: Prepared) -> np.ndarray:
        """score_prepared's per-frame scores alone (AnomalyModel.score_frames)."""
        if self.preprocessor.scores_need_maps:
            return self.score_prepared(prepared).scores
        return frame_scores(prepared, self.scores(prepared.inputs)[0])

    def predict(self, frames: Sequence[np.ndarray]) -> FramePrediction:
        return self.score_prepared(self.preprocessor(frames))

    def parallel_calls(self) -> int:
        """Batches score_prepared() may score at once, from as many threads: one per request."""
        return self.requests.streams
