"""The peer's best CPU path: anomalib's OpenVINO export of the same PatchCore, served by its OpenVINOInferencer.

Fitted exactly as benchmarks.anomalib_peer fits it (stream_ad's MobileNetV2 weights mapped into timm, same taps,
coreset and images), then exported the way an anomalib user deploys it: the fitted torch model inside anomalib's
Lightning Patchcore (its PreProcessor in the graph, no post-processor, so scores stay raw like stream_ad's),
`to_openvino` (ONNX, then OpenVINO IR, fp32, batch 1), and `OpenVINOInferencer.predict` on 224 px frames in [0, 1]: the
in-graph resize (the identity at 224) and normalisation are inside its timing. Imported only in the bench's child.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from anomalib.deploy import OpenVINOInferencer
from anomalib.models import Patchcore

from benchmarks.anomalib_peer import AnomalibPatchCore
from benchmarks.timm_mobilenet import TIMM_NAME
from stream_ad.data import Prepared
from stream_ad.runtime.openvino import decline_openvino_telemetry
from stream_ad.scorers import scorer_params
from stream_ad.settings import Settings


class AnomalibOpenVino(AnomalibPatchCore):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.export_dir = Path(tempfile.mkdtemp(prefix="stream-ad-anomalib-ov-"))
        self.inferencer: OpenVINOInferencer | None = None

    def prepare(self, frame: np.ndarray) -> Prepared:
        """The frame resized to 224 px in [0, 1]: what the exported model takes (it normalises in its graph)."""
        image = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div_(255.0)
        resize = self.pre_processor.transform.transforms[0]  # the peer's own antialiased Resize
        return replace(self.geometry([frame]), inputs=resize(image))

    def fit(self, batches: list[torch.Tensor]) -> int:
        normalize = self.pre_processor.transform.transforms[1]
        bank = super().fit([normalize(b) for b in batches])
        lightning = Patchcore(
            backbone=TIMM_NAME, layers=self.model.layers, pre_trained=False, coreset_sampling_ratio=self.ratio,
            num_neighbors=scorer_params(self.settings.scorer).num_neighbors, pre_processor=self.pre_processor,
            post_processor=False, evaluator=False, visualizer=False,
        )
        lightning.model = self.model.cpu().eval()
        size = self.settings.preprocess.image_size
        decline_openvino_telemetry()  # as stream_ad's own path does: its forks would slow the timed calls
        # Batch 1, static: anomalib's default dynamic-batch export specialises to its example batch of 2 (a guard in
        # its PatchCore graph), so it cannot serve a camera's single frames; a static batch-1 model is how it deploys.
        xml = lightning.to_openvino(self.export_dir, input_size=(size, size), onnx_kwargs={"dynamic_shapes": None})
        threads = self.settings.runtime.threads or torch.get_num_threads()
        # OpenVINOInferencer writes ./openvino_cache: keep it out of the caller's working directory.
        with contextlib.chdir(self.export_dir):
            self.inferencer = OpenVINOInferencer(
                xml, device="CPU",
                config={"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                        "PERFORMANCE_HINT": "LATENCY"},
            )
        return bank

    def score(self, inputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """One inference per image (the static batch-1 model): a batch costs its images' calls in sequence."""
        assert self.inferencer is not None, "fit() first"
        outs = [self.inferencer.predict(image[None]) for image in inputs]
        scores = np.concatenate([np.asarray(o.pred_score).reshape(-1) for o in outs])
        maps = np.stack([np.asarray(o.anomaly_map).reshape(inputs.shape[-2:]) for o in outs])
        return scores, maps
