"""Score labelled test images and report image AUROC, pixel AUROC and PRO per defect type and overall (image AUROC
only where no masks were given)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stream_ad.data import LabelledImages, Sample, read_mask
from stream_ad.evaluation.accuracy import image_auroc, pixel_auroc, pro_auc
from stream_ad.model import AnomalyModel

OVERALL = "overall"
NO_MASKS = "no defect masks (eval --masks DIR, or ground_truth/ in the MVTec layout): image AUROC only"


@dataclass
class TestPredictions:
    samples: list[Sample]
    scores: np.ndarray
    maps: list[np.ndarray]  # each at its image's own size
    seconds: float = 0.0


@dataclass
class Report:
    category: str
    rows: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # what the table leaves out, and why

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "metrics": self.rows, "note": self.note, **self.extra}

    def table(self) -> str:
        lines = [f"{'defect type':<16}{'images':>8}{'image AUROC':>13}{'pixel AUROC':>13}{'PRO':>8}"]
        for name, r in self.rows.items():
            cells = [f"{r[k]:.4f}" if r[k] is not None else "-" for k in ("image_auroc", "pixel_auroc", "pro")]
            lines.append(f"{name:<16}{r['images']:>8}{cells[0]:>13}{cells[1]:>13}{cells[2]:>8}")
        return "\n".join(lines + ([self.note] if self.note else []))


def predict_test(model: AnomalyModel, samples: Sequence[Sample]) -> TestPredictions:
    scores, maps = [], []
    start = time.perf_counter()
    batches = (len(samples) + model.settings.runtime.batch_size - 1) // model.settings.runtime.batch_size
    for pred in tqdm(model.predict_files([s.path for s in samples]), total=batches, desc="test", unit="batch"):
        scores.append(pred.scores)
        maps.extend(pred.maps)
    return TestPredictions(list(samples), np.concatenate(scores), maps, time.perf_counter() - start)


def metrics_for(preds: TestPredictions, with_masks: bool) -> dict[str, dict[str, float | int | None]]:
    samples = preds.samples
    masks = [read_mask(s, m.shape) for s, m in zip(samples, preds.maps)] if with_masks else None
    defects = sorted({s.defect for s in samples if s.label})
    rows: dict[str, dict[str, float | int | None]] = {}
    for name in [*defects, OVERALL]:
        keep = [i for i, s in enumerate(samples) if s.label == 0 or name in (OVERALL, s.defect)]
        labels = [samples[i].label for i in keep]
        row: dict[str, float | int | None] = {
            "images": len(keep),
            "image_auroc": image_auroc(labels, preds.scores[keep]),
            "pixel_auroc": None,
            "pro": None,
        }
        if masks is not None:
            sub_masks = [masks[i] for i in keep]
            sub_maps = [preds.maps[i] for i in keep]
            if any(m.any() for m in sub_masks):  # a defect type whose masks are all empty has no pixel metrics
                row["pixel_auroc"] = pixel_auroc(sub_masks, sub_maps)
                row["pro"] = pro_auc(sub_masks, sub_maps)
        rows[name] = row
    return rows


def evaluate(model: AnomalyModel, images: LabelledImages, out_json: Path | None = None) -> Report:
    preds = predict_test(model, images.samples)
    report = Report(images.name, metrics_for(preds, images.has_masks), note=None if images.has_masks else NO_MASKS)
    report.extra["test_seconds"] = round(preds.seconds, 2)
    report.extra["test_images"] = len(preds.samples)
    if out_json is not None:
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report
