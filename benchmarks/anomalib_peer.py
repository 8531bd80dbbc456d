"""anomalib's PatchCore driven by a hand-written frame loop, on exactly stream_ad's backbone weights and taps.

What an anomalib user without anomalib's Engine writes: PreProcessor transform per frame, PatchcoreModel in training
mode over the good images (Patchcore.training_step), subsample_embedding (Patchcore.fit), then eval-mode forward.
Imported only inside the bench's peer child process: anomalib and timm are never runtime dependencies of stream_ad.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from benchmarks.timm_mobilenet import TIMM_NAME, WeightMappingError, check_logits, timm_from_torchvision, timm_tap
from stream_ad.backbones import load_backbone, resolve_normalisation
from stream_ad.data import MVTecCategory, Prepared, Preprocessor, read_image
from stream_ad.runtime.device import resolve_device
from stream_ad.scorers import scorer_params
from stream_ad.settings import Settings

log = logging.getLogger(__name__)

PROBE_IMAGES = 4  # real images the weight mapping is checked on
LOGITS_RTOL = 1e-3
TAPS_RTOL = 1e-3  # stream_ad folds batch norms into the convolutions, so its taps differ by rounding only


class AnomalibPatchCore:
    def __init__(self, settings: Settings) -> None:
        if settings.preprocess.mode != "resize":
            raise ValueError("the anomalib peer runs plain resizing only (preprocess.mode: resize)")
        if settings.backbone.name != "mobilenet_v2" or settings.backbone.weights_path is None:
            raise ValueError("the anomalib peer maps a torchvision mobilenet_v2 weights file (backbone.weights_path)")
        self.settings = settings
        self.device = resolve_device(settings.runtime.device)
        mean, std = resolve_normalisation(settings.backbone)
        size = settings.preprocess.image_size
        # Patchcore.configure_pre_processor would add ImageNet's mean/std; these weights want 0.5/0.5.
        self.pre_processor = PreProcessor(
            transform=Compose([Resize((size, size), antialias=True), Normalize(mean=list(mean), std=list(std))])
        )
        self.geometry = Preprocessor(settings.preprocess, mean, std)
        self.ratio = scorer_params(settings.scorer).coreset_ratio
        self.model = self._model_with_stream_ad_weights().to(self.device)

    def _model_with_stream_ad_weights(self) -> PatchcoreModel:
        """PatchcoreModel whose timm extractor holds the torchvision weights, checked twice on real images."""
        cfg = self.settings.backbone
        tv_state = torch.load(cfg.weights_path, map_location="cpu", weights_only=True)
        full = timm_from_torchvision(tv_state)
        train = MVTecCategory(self.settings.data.root).train()[:PROBE_IMAGES]
        probe = torch.cat([self.prepare(read_image(s.path)).inputs for s in train])
        err = check_logits(tv_state, full, probe, LOGITS_RTOL)
        log.info("timm %s logits match torchvision's within %.1e (relative) on %d images", TIMM_NAME, err, len(probe))

        model = PatchcoreModel(
            layers=[timm_tap(layer, full) for layer in cfg.layers],
            backbone=TIMM_NAME,
            pre_trained=False,  # weights come from the shared file below, never from the network
            num_neighbors=scorer_params(self.settings.scorer).num_neighbors,
        )
        extractor = model.feature_extractor.feature_extractor
        weights = full.state_dict()
        extractor.load_state_dict({key: weights[key] for key in extractor.state_dict()}, strict=True)
        self._check_taps(model, probe)
        return model

    @torch.inference_mode()
    def _check_taps(self, model: PatchcoreModel, probe: torch.Tensor) -> None:
        """anomalib's extractor must produce stream_ad's backbone taps, or the comparison measures two backbones."""
        theirs = list(model.feature_extractor(probe).values())
        ours = load_backbone(self.settings.backbone)(probe)
        for layer, a, b in zip(self.settings.backbone.layers, ours, theirs):
            err = float((a - b).abs().max() / a.abs().max()) if a.shape == b.shape else float("inf")
            if not err < TAPS_RTOL:
                raise WeightMappingError(
                    f"anomalib's feature extractor differs from stream_ad's {layer} by {err:.2e} "
                    f"(shapes {tuple(b.shape)} vs {tuple(a.shape)})"
                )

    def prepare(self, frame: np.ndarray) -> Prepared:
        """anomalib's transform on the frame; stream_ad's placements so maps return to the frame the same way."""
        image = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div_(255.0)
        # .transform is what anomalib's Lightning callbacks apply in fit/test; PreProcessor.forward would run the
        # export variant, which drops Resize's antialiasing.
        return replace(self.geometry([frame]), inputs=self.pre_processor.transform(image))

    def fit(self, batches: list[torch.Tensor]) -> int:
        self.model.train()
        for batch in batches:  # Patchcore.training_step: the forward stores the embeddings
            self.model(batch.to(self.device))
        self.model.subsample_embedding(self.ratio)  # Patchcore.fit
        self.model.eval()
        return int(self.model.memory_bank.shape[0])

    @torch.inference_mode()
    def score(self, inputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = self.model(inputs.to(self.device))
        return out.pred_score.cpu().numpy(), out.anomaly_map[:, 0].cpu().numpy()
